//! `garret export-tar REPO::NAME FILE|- [PATH...]` and `garret import-tar REPO::NAME FILE|-`,
//! with borg's `--tar-filter` (by default chosen from the file name: .tar.gz, .tgz, .tar.bz2,
//! .tar.xz, .tar.zst, .tar.lz4).

use super::common::{self, GlobalArgs, StderrReporter};
use super::{location, Outcome};
use anyhow::{bail, Context, Result};
use garret::archive::{self, Archive};
use garret::compress::Compression;
use garret::create::CreateOptions;
use garret::tarball::{export, import};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

#[derive(clap::Args, Debug)]
pub struct ExportTarArgs {
    /// Filter the tar stream through CMD (e.g. "gzip -9"); default: by FILE's extension
    #[arg(long, value_name = "CMD")]
    pub tar_filter: Option<String>,
    /// Tar format: PAX, the only one garret writes (GNU tar reads it; borg's GNU and BORG
    /// formats are refused)
    #[arg(long, value_name = "FORMAT", default_value = "PAX", value_parser = ["PAX"])]
    pub tar_format: String,
    /// Print each exported item
    #[arg(long)]
    pub list: bool,
    /// Remove N leading path components
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub strip_components: usize,
    #[command(flatten)]
    pub select: super::select::SelectionArgs,
    /// JSON summary on stdout: {"archive", "file", "items", "bytes", "warnings"} (needs a FILE)
    #[arg(long)]
    pub json: bool,
    /// REPO::NAME
    pub archive: String,
    /// Output file, or - for standard output
    pub file: PathBuf,
    /// Only export these paths (and what is below them)
    pub paths: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ImportTarArgs {
    /// Read the tar stream through CMD (e.g. "gzip -d"); default: by FILE's extension
    #[arg(long, value_name = "CMD")]
    pub tar_filter: Option<String>,
    /// Record this start time instead of now (yyyy-mm-ddThh:mm:ss, RFC 3339, or a file's mtime)
    #[arg(long, value_name = "TIMESTAMP")]
    pub timestamp: Option<String>,
    #[arg(long, default_value = "")]
    pub comment: String,
    /// Compression: none, zstd,N, auto,zstd,N
    #[arg(short = 'C', long, default_value = "zstd,3")]
    pub compression: Compression,
    /// Print statistics at the end
    #[arg(short = 's', long)]
    pub stats: bool,
    /// With --list, only items with these status letters (e.g. AE)
    #[arg(long, value_name = "STATUSCHARS")]
    pub filter: Option<String>,
    /// Read past zero blocks: a stream of tar files concatenated (as GNU tar's --ignore-zeros)
    #[arg(long)]
    pub ignore_zeros: bool,
    /// Chunk sizes for this archive, as create's --chunker-params
    #[arg(long, value_name = "PARAMS")]
    pub chunker_params: Option<String>,
    /// Print each imported item
    #[arg(long)]
    pub list: bool,
    /// Print the archive's details as JSON
    #[arg(long)]
    pub json: bool,
    /// Accepted from borg command lines: packs are durable as written, no checkpoints needed
    #[arg(short = 'c', long, hide = true, value_name = "SECONDS")]
    pub checkpoint_interval: Option<u64>,
    /// REPO::NAME
    pub archive: String,
    /// Input tar file, or - for standard input
    pub file: PathBuf,
}

/// The filter for `file` by extension (`decompress`: import direction).
fn auto_filter(file: &Path, decompress: bool) -> Option<String> {
    let name = file.file_name()?.to_string_lossy().to_lowercase();
    let prog = [
        (".tar.gz", "gzip"),
        (".tgz", "gzip"),
        (".tar.bz2", "bzip2"),
        (".tar.xz", "xz"),
        (".tar.zst", "zstd"),
        (".tar.zstd", "zstd"),
        (".tar.lz4", "lz4"),
    ]
    .iter()
    .find(|(ext, _)| name.ends_with(ext))?
    .1;
    Some(if decompress { format!("{prog} -d") } else { prog.to_string() })
}

fn filter_for(explicit: &Option<String>, file: &Path, decompress: bool) -> Option<String> {
    match explicit.as_deref() {
        Some("auto") | None => auto_filter(file, decompress),
        Some("") => None,
        Some(cmd) => Some(cmd.to_string()),
    }
}

fn shell(cmd: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd);
    c
}

fn check_filter(cmd: &str, mut child: Child) -> Result<()> {
    let status = child.wait().with_context(|| format!("waiting for tar filter {cmd:?}"))?;
    if !status.success() {
        bail!("tar filter {cmd:?} failed ({status})");
    }
    Ok(())
}

pub fn export_tar(g: &GlobalArgs, a: &ExportTarArgs) -> Result<Outcome> {
    let loc = location::parse(&a.archive)?;
    let name = loc.require_archive()?.to_string();
    let mut repo = common::open(g, &loc.repo, false)?;
    // A prune and compact running meanwhile keep this archive's data until it is read.
    let _mark = common::hold_one(&mut repo, &name)?;
    let entry = archive::lookup(&repo, &name)?.clone();
    let ar = Archive::load(&repo, &entry)?;
    let excludes = a.select.patterns()?;
    let opts = export::ExportOptions {
        paths: a
            .paths
            .iter()
            .map(|p| p.as_os_str().as_bytes().strip_prefix(b"/").unwrap_or(p.as_os_str().as_bytes()).to_vec())
            .collect(),
        excludes,
        strip_components: a.strip_components,
    };
    let reporter = StderrReporter::new(a.list, None);
    let to_stdout = a.file.as_os_str() == "-";
    if to_stdout && a.json {
        anyhow::bail!("--json needs an output FILE: with -, standard output carries the tar");
    }
    let filter = filter_for(&a.tar_filter, &a.file, false);
    let result = (|| -> Result<export::ExportStats> {
        match &filter {
            Some(cmd) => {
                let sink: Stdio = if to_stdout {
                    Stdio::inherit()
                } else {
                    std::fs::File::create(&a.file).with_context(|| format!("creating {}", a.file.display()))?.into()
                };
                let mut child = shell(cmd)
                    .stdin(Stdio::piped())
                    .stdout(sink)
                    .spawn()
                    .with_context(|| format!("starting tar filter {cmd:?}"))?;
                let mut stdin = std::io::BufWriter::with_capacity(1 << 20, child.stdin.take().expect("piped"));
                let r = export::export(&repo, &ar, &opts, &mut stdin, &reporter);
                drop(stdin);
                check_filter(cmd, child)?;
                Ok(r?)
            }
            None if to_stdout => {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
                Ok(export::export(&repo, &ar, &opts, &mut out, &reporter)?)
            }
            None => {
                let mut f = std::fs::File::create(&a.file).with_context(|| format!("creating {}", a.file.display()))?;
                let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut f);
                let stats = export::export(&repo, &ar, &opts, &mut out, &reporter)?;
                drop(out);
                f.sync_all().with_context(|| format!("writing {}", a.file.display()))?;
                Ok(stats)
            }
        }
    })();
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            // A half-written tar must not pass for a good export.
            if !to_stdout {
                let _ = std::fs::remove_file(&a.file);
            }
            return Err(e);
        }
    };
    if a.json {
        let summary = serde_json::json!({
            "archive": name,
            "file": a.file.display().to_string(),
            "items": stats.items,
            "bytes": stats.bytes,
            "warnings": reporter.warned(),
        });
        outln!("{summary}")?;
    }
    Ok(if reporter.warned() { Outcome::Warning } else { Outcome::Ok })
}

/// The tar input; when read through a filter, reaching its end checks the filter's exit status.
struct Input {
    inner: Box<dyn Read + Send>,
    filter: Option<(String, Child)>,
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some((cmd, mut child)) = self.filter.take() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let status = child.wait()?;
                if !status.success() {
                    let why = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
                    return Err(std::io::Error::other(format!("tar filter {cmd:?} failed ({status}): {why}")));
                }
            }
        }
        Ok(n)
    }
}

pub fn import_tar(g: &GlobalArgs, a: &ImportTarArgs) -> Result<Outcome> {
    let loc = location::parse(&a.archive)?;
    let name = loc.require_archive()?.to_string();
    archive::validate_name(&name)?;
    let timestamp = a.timestamp.as_deref().map(super::create::parse_timestamp).transpose()?;
    let from_stdin = a.file.as_os_str() == "-";
    let raw: Box<dyn Read + Send> = if from_stdin {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?)
    };
    let input = match filter_for(&a.tar_filter, &a.file, true) {
        Some(cmd) => {
            let stdin: Stdio = if from_stdin {
                Stdio::inherit()
            } else {
                std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?.into()
            };
            let mut child = shell(&cmd)
                .stdin(stdin)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting tar filter {cmd:?}"))?;
            let out: ChildStdout = child.stdout.take().expect("piped");
            Input { inner: Box::new(out), filter: Some((cmd, child)) }
        }
        None => Input { inner: raw, filter: None },
    };
    let mut repo = common::open(g, &loc.repo, true)?;
    let reporter = StderrReporter::new(a.list, a.filter.clone()).with_progress(g.progress);
    let opts = CreateOptions {
        name,
        paths: vec![],
        patterns: Default::default(),
        exclude_caches: false,
        exclude_if_present: vec![],
        keep_exclude_tags: false,
        one_file_system: false,
        metadata: Default::default(),
        read_special: false,
        exclude_nodump: false,
        chunker: a.chunker_params.as_deref().map(super::create::chunker_params).transpose()?.flatten(),
        listed: false,
        compression: a.compression,
        command_line: std::env::args().collect(),
        comment: a.comment.clone(),
        timestamp,
        files_cache: None,
        cache_dir: common::cache_dir(),
        dry_run: false,
        stream: None,
        producer: Some(import::producer(Box::new(input), a.ignore_zeros)),
        unmarked_masters: true,
    };
    super::create::run_and_report(&mut repo, opts, &reporter, a.json, a.stats)?;
    let _ = std::io::stdout().flush();
    Ok(if reporter.warned() { Outcome::Warning } else { Outcome::Ok })
}
