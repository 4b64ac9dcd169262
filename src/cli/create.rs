//! `garret create REPO::NAME PATH...`, `create REPO::NAME -` (standard input) and
//! `create --content-from-command REPO::NAME -- COMMAND...`.

use super::common::{self, GlobalArgs, StderrReporter};
use super::{info, location, select, Outcome};
use anyhow::{bail, Context, Result};
use garret::chunker::ChunkerParams;
use garret::compress::Compression;
use garret::create::{self, files_cache, CreateOptions, StreamSource};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub select: select::SelectionArgs,
    #[command(flatten)]
    pub tags: select::TagArgs,
    /// Exclude files and directories flagged "no dump" (chattr +d)
    #[arg(long)]
    pub exclude_nodump: bool,
    /// Stay on the file system of each source path
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Compression: none, zstd, zstd,N (1..22), auto,zstd,N (store incompressible data raw);
    /// borg's lz4, zlib[,N] and lzma[,N] are read as zstd,1, zstd,3 and zstd,19
    #[arg(short = 'C', long, default_value = "zstd,3")]
    pub compression: Compression,
    /// Chunk sizes for this archive, in borg's syntax: MIN_EXP,MAX_EXP,AVG_EXP,WINDOW (e.g.
    /// 19,23,21,4095: 512 KiB min, 2 MiB average, 8 MiB max; the window is not used by
    /// garret's FastCDC), fixed,BLOCK (disk images), or default (the repository's: 256 KiB, 1 MiB,
    /// 4 MiB). Changed files dedup only against archives made with the same sizes
    #[arg(long, value_name = "PARAMS")]
    pub chunker_params: Option<String>,
    /// Which file attributes must be unchanged to skip reading a file: ctime,size,inode
    /// (default), mtime,size,inode, ..., or disabled
    #[arg(long, value_name = "MODE", default_value = "ctime,size,inode")]
    pub files_cache: String,
    /// Same as --files-cache=disabled (borg 1.0)
    #[arg(long, hide = true, conflicts_with = "files_cache")]
    pub no_files_cache: bool,
    /// Store only numeric user and group ids, not names
    #[arg(long, alias = "numeric-owner")]
    pub numeric_ids: bool,
    /// Read block and character devices and FIFOs (and symlinks to them) as regular files, e.g.
    /// an LVM snapshot
    #[arg(long)]
    pub read_special: bool,
    /// Do not store extended attributes (ACLs included)
    #[arg(long)]
    pub noxattrs: bool,
    /// Do not store ACLs (the system.posix_acl_* extended attributes)
    #[arg(long)]
    pub noacls: bool,
    /// Store access times too (as they were before the file was read); extract restores them
    #[arg(long, overrides_with = "noatime")]
    pub atime: bool,
    /// Accepted from borg command lines; what they turn off garret never stores (atime, ctime,
    /// birth time, BSD flags), does anyway (sparse files) or does not need (checkpoints: packs
    /// are durable as written, so a rerun after a crash stores only what is missing)
    #[arg(long, hide = true, overrides_with = "atime")]
    pub noatime: bool,
    #[arg(long, hide = true)]
    pub noctime: bool,
    #[arg(long, hide = true)]
    pub nobirthtime: bool,
    #[arg(long, hide = true)]
    pub noflags: bool,
    #[arg(long, hide = true)]
    pub nobsdflags: bool,
    #[arg(long, hide = true)]
    pub sparse: bool,
    #[arg(short = 'c', long, hide = true, value_name = "SECONDS")]
    pub checkpoint_interval: Option<u64>,
    /// borg's "do not synchronize the chunks cache": garret has none to synchronize
    #[arg(long, hide = true)]
    pub no_cache_sync: bool,
    /// Archive time to record instead of now: yyyy-mm-ddThh:mm:ss (UTC), RFC 3339, or a file
    /// whose modification time to use
    #[arg(long, value_name = "TIMESTAMP")]
    pub timestamp: Option<String>,
    /// Print sizes and counts at the end
    #[arg(short = 's', long)]
    pub stats: bool,
    /// Print one status line per item (A added, M modified, U unchanged, E error, x excluded)
    #[arg(long)]
    pub list: bool,
    /// Only list items with these status letters (with --list), e.g. AME
    #[arg(long, value_name = "STATUSCHARS")]
    pub filter: Option<String>,
    /// Print a JSON summary on stdout
    #[arg(long)]
    pub json: bool,
    /// Walk and list, but store nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Archive comment
    #[arg(long, default_value = "")]
    pub comment: String,
    /// File name for data read from standard input (PATH `-`)
    #[arg(long, default_value = "stdin")]
    pub stdin_name: String,
    /// Mode (octal) of the file made from standard input
    #[arg(long, default_value = "0660")]
    pub stdin_mode: String,
    /// Owner of the file made from standard input (default: the user running garret; its id is
    /// looked up here, 0 when unknown)
    #[arg(long, value_name = "USER")]
    pub stdin_user: Option<String>,
    /// Group of the file made from standard input (default: the running user's group)
    #[arg(long, value_name = "GROUP")]
    pub stdin_group: Option<String>,
    /// Run the command given after `--` and store its output as one file (--stdin-name)
    #[arg(long, conflicts_with_all = ["paths_from_stdin", "paths_from_command"])]
    pub content_from_command: bool,
    /// Back up exactly the paths read from standard input (one per line, or --paths-delimiter):
    /// directories without their contents, no exclusion rules
    #[arg(long, conflicts_with = "paths_from_command")]
    pub paths_from_stdin: bool,
    /// Run the command given after `--` and back up exactly the paths it prints, as
    /// --paths-from-stdin; if it fails, nothing is created
    #[arg(long)]
    pub paths_from_command: bool,
    /// What separates the paths of --paths-from-stdin/--paths-from-command (\n, \0 or \t
    /// escapes allowed; default: a newline)
    #[arg(long, value_name = "DELIM", default_value = "\\n")]
    pub paths_delimiter: String,
    /// REPO::NAME (placeholders like {now:%Y-%m-%d} and {hostname} are expanded)
    pub archive: String,
    /// Files and directories to back up (`-` for standard input), or the command
    pub paths: Vec<OsString>,
}

pub(super) fn parse_timestamp(s: &str) -> Result<String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_rfc3339());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc().with_timezone(&chrono::Local).to_rfc3339());
        }
    }
    if let Ok(md) = std::fs::metadata(s) {
        let t: chrono::DateTime<chrono::Local> = md.modified()?.into();
        return Ok(t.to_rfc3339());
    }
    bail!("invalid --timestamp {s:?}: use yyyy-mm-ddThh:mm:ss (UTC), an RFC 3339 time, or an existing file")
}

fn stream_source(a: &CreateArgs) -> Result<Option<StreamSource>> {
    let mode = u32::from_str_radix(a.stdin_mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .with_context(|| format!("invalid --stdin-mode {:?}: use an octal mode like 0640", a.stdin_mode))?;
    let path = a.stdin_name.trim_start_matches('/').as_bytes().to_vec();
    if garret::extract::components(&path).is_none() {
        bail!("invalid --stdin-name {:?}: use a relative path without '.' or '..' components", a.stdin_name);
    }
    if a.content_from_command {
        let Some((prog, args)) = a.paths.split_first() else {
            bail!("--content-from-command needs a command after `--`, e.g. -- pg_dump mydb");
        };
        let shown = a.paths.iter().map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" ");
        let mut child = std::process::Command::new(prog)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {shown:?}"))?;
        let stdout = child.stdout.take().expect("piped");
        return Ok(Some(StreamSource {
            path,
            mode,
            user: a.stdin_user.clone(),
            group: a.stdin_group.clone(),
            reader: Box::new(stdout),
            finish: Box::new(move || {
                let status = child.wait().map_err(|e| garret::Error::io(format!("waiting for {shown:?}"), e))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(garret::Error::Command(format!("{shown:?} failed ({status}); the archive was not created")))
                }
            }),
        }));
    }
    if a.paths.len() == 1 && a.paths[0] == "-" {
        return Ok(Some(StreamSource {
            path,
            mode,
            user: a.stdin_user.clone(),
            group: a.stdin_group.clone(),
            reader: Box::new(std::io::stdin()),
            finish: Box::new(|| Ok(())),
        }));
    }
    if a.paths.iter().any(|p| p == "-") {
        bail!("`-` (standard input) cannot be combined with other paths");
    }
    Ok(None)
}

/// `--paths-from-stdin` / `--paths-from-command`: the paths to archive, each as is.
fn listed_paths(a: &CreateArgs) -> Result<Option<Vec<PathBuf>>> {
    use std::io::Read;
    let data = if a.paths_from_stdin {
        if !a.paths.is_empty() {
            bail!("--paths-from-stdin reads the paths from standard input: give no PATH arguments");
        }
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data).context("reading paths from standard input")?;
        data
    } else if a.paths_from_command {
        let Some((prog, args)) = a.paths.split_first() else {
            bail!("--paths-from-command needs a command after `--`, e.g. -- find /srv -mtime -1");
        };
        let shown = a.paths.iter().map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" ");
        let out = std::process::Command::new(prog)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run {shown:?}"))?;
        if !out.status.success() {
            bail!("{shown:?} failed ({}); the archive was not created", out.status);
        }
        out.stdout
    } else {
        return Ok(None);
    };
    let delim = match a.paths_delimiter.as_str() {
        "\\n" => "\n".to_string(),
        "\\0" => "\0".to_string(),
        "\\t" => "\t".to_string(),
        "" => bail!("--paths-delimiter must not be empty"),
        d => d.to_string(),
    };
    let paths: Vec<PathBuf> = split_bytes(&data, delim.as_bytes())
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
        .collect();
    if paths.is_empty() {
        bail!("nothing to back up: no paths were given on standard input or by the command");
    }
    Ok(Some(paths))
}

fn split_bytes<'a>(data: &'a [u8], delim: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(delim.len()).position(|w| w == delim) {
            Some(i) => {
                rest = Some(&r[i + delim.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// borg's `--chunker-params` value: `None` for the repository's own sizes.
pub(super) fn chunker_params(s: &str) -> Result<Option<ChunkerParams>> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let num = |p: &str| p.parse::<u32>().with_context(|| format!("--chunker-params {s:?}: {p:?} is not a number"));
    let exps = match parts.as_slice() {
        ["default"] => return Ok(None),
        ["fixed", block] | ["fixed", block, "0"] => {
            return ChunkerParams::fixed(num(block)?)
                .map(Some)
                .with_context(|| format!("--chunker-params {s:?}: the block size must be 64 bytes to 16 MiB"));
        }
        ["fixed", _, _] => bail!("--chunker-params {s:?}: a header size is not supported; use fixed,BLOCK"),
        ["buzhash", e @ ..] | e @ [_, _, _, _] if e.len() == 4 => e,
        _ => bail!(
            "--chunker-params {s:?}: use MIN_EXP,MAX_EXP,AVG_EXP,WINDOW (e.g. 19,23,21,4095), fixed,BLOCK or default"
        ),
    };
    let exp = |p: &str| -> Result<u32> {
        let e = num(p)?;
        (e <= 30).then(|| 1u32 << e).with_context(|| format!("--chunker-params {s:?}: exponent {e} is too large"))
    };
    num(exps[3])?; // the window: buzhash's, not used by FastCDC
    let p = ChunkerParams { min: exp(exps[0])?, max: exp(exps[1])?, avg: exp(exps[2])? };
    if !p.is_valid() {
        bail!(
            "--chunker-params {s:?}: garret's chunker takes a minimum of 2^6..2^20, an average of 2^8..2^22 and \
             a maximum of 2^10..2^24 bytes, with minimum <= average <= maximum"
        );
    }
    Ok(Some(p))
}

pub fn run(g: &GlobalArgs, a: &CreateArgs) -> Result<Outcome> {
    let loc = location::parse(&a.archive)?;
    let name = loc.require_archive()?.to_string(); // placeholders expanded by parse
    garret::archive::validate_name(&name)?;
    let patterns = a.select.patterns()?;
    let chunker = a.chunker_params.as_deref().map(chunker_params).transpose()?.flatten();
    let files_cache =
        if a.no_files_cache { None } else { files_cache::parse_mode(&a.files_cache).map_err(anyhow::Error::msg)? };
    let timestamp = a.timestamp.as_deref().map(parse_timestamp).transpose()?;
    let listed = listed_paths(a)?;
    let mut paths: Vec<PathBuf> = patterns.roots.clone();
    let is_stream = a.content_from_command || a.paths.iter().any(|p| p == "-");
    if let Some(l) = &listed {
        paths = l.clone();
    } else if !is_stream {
        paths.extend(a.paths.iter().map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p.as_bytes()))));
        if paths.is_empty() {
            bail!("nothing to back up: give PATHs, `-` for standard input, or --content-from-command -- COMMAND");
        }
    }
    let mut repo = common::open(g, &loc.repo, !a.dry_run)?;
    let stream = if listed.is_some() { None } else { stream_source(a)? };
    let reporter = StderrReporter::new(a.list, a.filter.clone()).with_progress(g.progress);
    let opts = CreateOptions {
        name,
        paths,
        patterns,
        exclude_caches: a.tags.exclude_caches,
        exclude_if_present: a.tags.exclude_if_present.clone(),
        keep_exclude_tags: a.tags.keep_exclude_tags,
        one_file_system: a.one_file_system,
        metadata: create::walk::Metadata {
            numeric_ids: a.numeric_ids,
            no_xattrs: a.noxattrs,
            no_acls: a.noacls,
            atime: a.atime,
        },
        read_special: a.read_special,
        exclude_nodump: a.exclude_nodump,
        listed: listed.is_some(),
        compression: a.compression,
        chunker,
        command_line: std::env::args().collect(),
        comment: location::expand_placeholders(&a.comment)?,
        timestamp,
        files_cache,
        cache_dir: common::cache_dir(),
        dry_run: a.dry_run,
        stream,
        producer: None,
        unmarked_masters: false,
    };
    run_and_report(&mut repo, opts, &reporter, a.json, a.stats)?;
    Ok(if reporter.warned() { Outcome::Warning } else { Outcome::Ok })
}

/// Run a create (or import-tar) and print its summary as `--json` or `--stats` ask.
pub(super) fn run_and_report(
    repo: &mut garret::repository::Repository,
    opts: CreateOptions,
    reporter: &StderrReporter,
    json: bool,
    stats: bool,
) -> Result<()> {
    let out = create::run(repo, opts, reporter);
    reporter.finish();
    let out = out?;
    let id = out.id.unwrap_or_default();
    if json {
        let mut v = info::archive_json(repo, &out.archive, &id, out.archive.stats.deduplicated_size);
        v["cache"] = info::cache_json(&garret::archive::totals(repo)?, repo);
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else if stats && out.id.is_none() {
        // A dry run stores nothing to give figures for (borg's line, exit 0).
        common::say(common::Level::Warning, "Ignoring --stats. It is not supported when using --dry-run.");
    } else if stats {
        let totals = garret::archive::totals(repo)?;
        // On stderr as borg's (one JSON log line with --log-json).
        common::info(info::create_stats_text(repo, &out.archive, &id, &totals).trim_end());
    }
    Ok(())
}
