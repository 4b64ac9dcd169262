//! `garret extract REPO::NAME [PATH...]` into the current directory.

use super::common::{self, GlobalArgs, StderrReporter};
use super::{location, Outcome};
use anyhow::Result;
use garret::archive::{self, Archive};
use garret::extract::{self, ExtractOptions};
use std::os::unix::ffi::OsStrExt;

#[derive(clap::Args, Debug)]
pub struct ExtractArgs {
    /// Print each extracted item
    #[arg(long)]
    pub list: bool,
    /// Do not write anything
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Use stored uid/gid, not user/group names (as root)
    #[arg(long, alias = "numeric-owner")]
    pub numeric_ids: bool,
    /// Do not restore extended attributes (ACLs included)
    #[arg(long)]
    pub noxattrs: bool,
    /// Do not restore ACLs (the system.posix_acl_* extended attributes)
    #[arg(long)]
    pub noacls: bool,
    /// Accepted from borg command lines: garret stores no BSD flags and makes no checkpoint
    /// archives
    #[arg(long, hide = true)]
    pub noflags: bool,
    #[arg(long, hide = true)]
    pub nobsdflags: bool,
    /// Remove N leading path components
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub strip_components: usize,
    /// Write runs of zeros as holes (the default)
    #[arg(long, overrides_with = "no_sparse")]
    pub sparse: bool,
    /// Write zeros as data
    #[arg(long)]
    pub no_sparse: bool,
    /// Write the selected files' content to standard output instead (e.g. a dump into psql)
    #[arg(long)]
    pub stdout: bool,
    /// Print a JSON summary on stdout: {"archive", "items", "bytes", "data_errors", "warnings", "duration"}
    #[arg(long, conflicts_with = "stdout")]
    pub json: bool,
    #[command(flatten)]
    pub select: super::select::SelectionArgs,
    /// Also restore device nodes, setuid/setgid bits and security./trusted. xattrs (as root)
    #[arg(long)]
    pub privileged: bool,
    /// REPO::NAME
    pub archive: String,
    /// Only extract these paths (and what is below them)
    pub paths: Vec<std::path::PathBuf>,
}

pub fn run(g: &GlobalArgs, a: &ExtractArgs) -> Result<Outcome> {
    let loc = location::parse(&a.archive)?;
    let name = loc.require_archive()?.to_string();
    let mut repo = common::open(g, &loc.repo, false)?;
    // A prune and compact running meanwhile keep this archive's data until it is read.
    let _mark = common::hold_one(&mut repo, &name)?;
    let entry = archive::lookup(&repo, &name)?.clone();
    let ar = Archive::load(&repo, &entry)?;
    let reporter = StderrReporter::new(a.list, None);
    let excludes = a.select.patterns()?;
    if a.stdout {
        let paths: Vec<Vec<u8>> = a
            .paths
            .iter()
            .map(|p| p.as_os_str().as_bytes().strip_prefix(b"/").unwrap_or(p.as_os_str().as_bytes()).to_vec())
            .collect();
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        extract::to_writer(&repo, &ar, &paths, &excludes, &mut out, &reporter)?;
        return Ok(if reporter.warned() { Outcome::Warning } else { Outcome::Ok });
    }
    let opts = ExtractOptions {
        excludes,
        privileged: a.privileged,
        target: std::env::current_dir()?,
        paths: a
            .paths
            .iter()
            .map(|p| p.as_os_str().as_bytes().strip_prefix(b"/").unwrap_or(p.as_os_str().as_bytes()).to_vec())
            .collect(),
        strip_components: a.strip_components,
        numeric_ids: a.numeric_ids,
        no_xattrs: a.noxattrs,
        no_acls: a.noacls,
        sparse: !a.no_sparse,
        dry_run: a.dry_run,
    };
    let reporter = reporter.with_progress(g.progress);
    let started = std::time::Instant::now();
    let stats = extract::run(&repo, &ar, &opts, &reporter);
    reporter.finish();
    let stats = stats?;
    if a.json {
        let summary = serde_json::json!({
            "archive": name,
            "items": stats.items,
            "bytes": stats.bytes,
            "data_errors": stats.data_errors,
            "warnings": reporter.warned(),
            "duration": started.elapsed().as_secs_f64(),
        });
        outln!("{summary}")?;
    }
    if stats.data_errors > 0 {
        common::say(
            common::Level::Error,
            &format!(
            "garret: error: {} item(s) could not be restored because repository data is damaged; run `garret check`",
            stats.data_errors
        ),
        );
        return Ok(Outcome::Error);
    }
    Ok(if reporter.warned() { Outcome::Warning } else { Outcome::Ok })
}
