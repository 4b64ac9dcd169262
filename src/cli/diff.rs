//! `garret diff REPO::A B [PATH...]`.

use super::common::{self, GlobalArgs};
use super::{location, Outcome};
use anyhow::Result;
use garret::archive::{self, Archive};
use garret::diff::{self, Change};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// One JSON object per changed path
    #[arg(long)]
    pub json_lines: bool,
    /// Compare and show owners by uid and gid only, not by user and group names
    #[arg(long, alias = "numeric-owner")]
    pub numeric_ids: bool,
    /// Accepted from borg command lines: the output is always sorted by path
    #[arg(long, hide = true)]
    pub sort: bool,
    /// Only differences in content (added, removed, modified, link targets), no metadata
    #[arg(long)]
    pub content_only: bool,
    /// Accepted from borg command lines: garret compares chunk ids, and reads the content only of
    /// files whose chunks were cut elsewhere but add up to the same size
    #[arg(long, hide = true)]
    pub same_chunker_params: bool,
    #[command(flatten)]
    pub select: super::select::SelectionArgs,
    /// REPO::ARCHIVE1
    pub archive: String,
    /// ARCHIVE2 (in the same repository)
    pub other: String,
    /// Only compare these paths (and what is below them)
    pub paths: Vec<String>,
}

fn text(c: &Change) -> String {
    match c {
        Change::Added { size } => format!("added {:>13}", common::size(*size)),
        Change::Removed { size } => format!("removed {:>11}", common::size(*size)),
        Change::Modified { added, removed } => {
            format!("{:>9} {:>9}", format!("+{}", common::size(*added)), format!("-{}", common::size(*removed)))
        }
        Change::Mode { old_mode, new_mode } => format!("[{old_mode} -> {new_mode}]"),
        Change::Owner { old_user, old_group, new_user, new_group } => {
            format!("[{old_user}:{old_group} -> {new_user}:{new_group}]")
        }
        Change::Mtime { old_mtime, new_mtime } => {
            format!("[mtime: {} -> {}]", common::show_ns(*old_mtime), common::show_ns(*new_mtime))
        }
        Change::Target { old_target, new_target } => {
            format!("[link: {} -> {}]", common::escape(old_target), common::escape(new_target))
        }
    }
}

pub fn run(g: &GlobalArgs, a: &DiffArgs) -> Result<Outcome> {
    let loc = location::parse(&a.archive)?;
    let first = loc.require_archive()?.to_string();
    let repo = common::open(g, &loc.repo, false)?;
    let e1 = archive::lookup(&repo, &first)?.clone();
    let e2 = archive::lookup(&repo, &a.other)?.clone();
    let (a1, a2) = (Archive::load(&repo, &e1)?, Archive::load(&repo, &e2)?);
    let paths: Vec<Vec<u8>> =
        a.paths.iter().map(|p| p.trim_start_matches('/').trim_end_matches('/').as_bytes().to_vec()).collect();
    let mut changes = diff::run(&repo, &a1, &a2, &paths, a.numeric_ids)?;
    let excludes = a.select.patterns()?;
    changes.retain(|p, _| !excludes.is_excluded(p));
    if a.content_only {
        for cs in changes.values_mut() {
            cs.retain(|c| {
                matches!(
                    c,
                    Change::Added { .. } | Change::Removed { .. } | Change::Modified { .. } | Change::Target { .. }
                )
            });
        }
        changes.retain(|_, cs| !cs.is_empty());
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (path, cs) in &changes {
        let p = String::from_utf8_lossy(path);
        if a.json_lines {
            // Times as ISO 8601 strings, as borg gives them.
            let cs: Vec<serde_json::Value> = cs
                .iter()
                .map(|c| match c {
                    Change::Mtime { old_mtime, new_mtime } => serde_json::json!({
                        "type": "mtime", "old_mtime": common::iso_ns(*old_mtime), "new_mtime": common::iso_ns(*new_mtime),
                    }),
                    c => serde_json::json!(c),
                })
                .collect();
            writeln!(out, "{}", serde_json::json!({ "path": p, "changes": cs }))?;
        } else {
            let parts: Vec<String> = cs.iter().map(text).collect();
            writeln!(out, "{} {}", parts.join(" "), common::escape(&p))?;
        }
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
