//! `garret recreate [REPO | REPO::NAME] [PATH...]`: rewrite archives without what the selection
//! flags leave out (borg's recreate, without recompression or re-chunking).

use super::common::{self, GlobalArgs, StderrReporter};
use super::filter::ArchiveFilter;
use super::{location, select, Outcome};
use anyhow::{bail, Result};
use garret::recreate::{self, RecreateOptions};
use std::os::unix::ffi::OsStrExt;

#[derive(clap::Args, Debug)]
pub struct RecreateArgs {
    #[command(flatten)]
    pub select: select::SelectionArgs,
    #[command(flatten)]
    pub tags: select::TagArgs,
    /// Write the result as a new archive NAME and keep the original (one archive only)
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Set the archive comment
    #[arg(long)]
    pub comment: Option<String>,
    /// Archive time to record instead of the original's: yyyy-mm-ddThh:mm:ss (UTC), RFC 3339, or a
    /// file whose modification time to use
    #[arg(long)]
    pub timestamp: Option<String>,
    /// Show what would be dropped; change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print each dropped item ("x PATH")
    #[arg(long)]
    pub list: bool,
    /// Only list items with these status letters (with --list; recreate lists only `x`)
    #[arg(long = "filter", value_name = "STATUSCHARS")]
    pub status_filter: Option<String>,
    /// Print a summary line per archive
    #[arg(short = 's', long)]
    pub stats: bool,
    /// JSON on stdout: {"archives": [{"name", "target", "kept", "dropped", "id"}], "dry_run"}
    #[arg(long)]
    pub json: bool,
    /// Which archives (all of the repository when none of these is given)
    #[command(flatten)]
    pub filter: ArchiveFilter,
    /// borg's recompression and re-chunking: refused (garret's recreate keeps file contents as
    /// they are stored)
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "if-different", value_name = "MODE")]
    pub recompress: Option<String>,
    #[arg(short = 'C', long, hide = true)]
    pub compression: Option<String>,
    #[arg(long, hide = true)]
    pub chunker_params: Option<String>,
    #[arg(short = 'c', long, hide = true, value_name = "SECONDS")]
    pub checkpoint_interval: Option<u64>,
    /// REPO or REPO::NAME
    pub location: Option<String>,
    /// Keep only these paths (and what is below them)
    pub paths: Vec<String>,
}

pub fn run(g: &GlobalArgs, a: &RecreateArgs) -> Result<Outcome> {
    if a.recompress.is_some() || a.compression.is_some() || a.chunker_params.is_some() {
        bail!(
            "recreate --recompress/--compression/--chunker-params: garret's recreate does not rewrite file \
             contents; new archives use the new settings, and `garret compact` frees the old data once no \
             archive refers to it"
        );
    }
    let loc = location::parse_opt(a.location.as_deref())?;
    let opts = RecreateOptions {
        paths: a
            .paths
            .iter()
            .map(|p| {
                let b = std::ffi::OsStr::new(p).as_bytes();
                b.strip_prefix(b"/").unwrap_or(b).to_vec()
            })
            .collect(),
        excludes: a.select.patterns()?,
        exclude_caches: a.tags.exclude_caches,
        exclude_if_present: a.tags.exclude_if_present.clone(),
        keep_exclude_tags: a.tags.keep_exclude_tags,
        comment: a.comment.as_deref().map(location::expand_placeholders).transpose()?,
        timestamp: a.timestamp.as_deref().map(super::create::parse_timestamp).transpose()?,
        target: a.target.as_deref().map(location::expand_placeholders).transpose()?,
        command_line: std::env::args().collect(),
        dry_run: a.dry_run,
    };
    let mut repo = common::open(g, &loc.repo, !a.dry_run)?;
    let entries: Vec<_> = match &loc.archive {
        Some(name) => vec![garret::archive::lookup(&repo, name)?.clone()],
        None => a.filter.select(&repo.manifest().archives)?.into_iter().cloned().collect(),
    };
    if opts.target.is_some() && entries.len() != 1 {
        bail!("--target names one new archive: give REPO::NAME (or a filter selecting one archive)");
    }
    let reporter = StderrReporter::new(a.list, a.status_filter.clone());
    let mut done = vec![];
    for e in &entries {
        let r = recreate::recreate(&mut repo, e, &opts, &reporter)?;
        if a.stats && !a.json {
            let name = if r.target == r.name { r.name.clone() } else { format!("{} as {}", r.name, r.target) };
            let what = match (&r.id, a.dry_run) {
                (_, true) => "Would recreate",
                (None, false) => "Unchanged",
                (Some(_), false) => "Recreated",
            };
            common::info(&format!("{what} {name}: {} items kept, {} dropped", r.kept, r.dropped));
        }
        done.push(r);
    }
    if a.json {
        let archives: Vec<_> = done
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name, "target": r.target, "kept": r.kept, "dropped": r.dropped,
                    "id": r.id.map(|i| i.hex()),
                })
            })
            .collect();
        outln!("{}", serde_json::json!({ "archives": archives, "dry_run": a.dry_run }))?;
    }
    Ok(if reporter.warned() { Outcome::Warning } else { Outcome::Ok })
}
