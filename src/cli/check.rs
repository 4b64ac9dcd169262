//! `garret check REPO[::NAME]`: verify repository and archives; exit 0 clean, 1 warnings,
//! 2 damage found.

use super::common::{self, GlobalArgs};
use super::filter::ArchiveFilter;
use super::{location, Outcome};
use anyhow::{bail, Result};
use garret::check::{self, CheckOptions};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Only check packs and the index
    #[arg(long, conflicts_with = "archives_only")]
    pub repository_only: bool,
    /// Only check archives and their items
    #[arg(long)]
    pub archives_only: bool,
    /// Also read, decrypt, decompress and re-hash every blob
    #[arg(long)]
    pub verify_data: bool,
    /// Stop data verification after SECONDS; the next run resumes where this one stopped
    #[arg(long, value_name = "SECONDS")]
    pub max_duration: Option<u64>,
    /// JSON report on stdout
    #[arg(long)]
    pub json: bool,
    /// Accepted from borg command lines (garret's check needs no extra space)
    #[arg(long, hide = true)]
    pub save_space: bool,
    /// Rebuild the index from the packs, drop corrupt blobs, zero-fill damaged files (they heal
    /// later when the data is stored again); never deletes a pack
    #[arg(long)]
    pub repair: bool,
    /// Which archives the archive level checks (borg's archive filters, e.g. --last 3)
    #[command(flatten)]
    pub filter: ArchiveFilter,
    /// REPO or REPO::NAME
    pub location: Option<String>,
}

fn repair(g: &GlobalArgs, a: &CheckArgs, repo_path: &std::path::Path) -> Result<Outcome> {
    let mut repo = common::open(g, repo_path, true)?;
    let rep = garret::repair::run(&mut repo, a.verify_data, Some(common::cache_dir()))?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&rep)?)?;
    } else {
        for e in &rep.check.errors {
            common::say(common::Level::Warning, &format!("garret: found: {}", common::one_line(e)));
        }
        if rep.unreadable_packs > 0 {
            common::warn(&format!(
                "{} pack(s) have unreadable headers; their blobs are lost (the files stay for inspection)",
                rep.unreadable_packs
            ));
        }
        for p in &rep.packs_quarantined {
            common::say(
                common::Level::Info,
                &format!("quarantined: pack {p} (damaged; moved to quarantine/, its readable blobs were copied)"),
            );
        }
        for (a, f) in &rep.zero_filled {
            common::say(
                common::Level::Info,
                &format!("repaired: {a}: {} (missing data replaced by zeros)", common::escape(f)),
            );
        }
        for (a, f) in &rep.healed {
            common::say(common::Level::Info, &format!("healed: {a}: {}", common::escape(f)));
        }
        for a in &rep.archives_removed {
            common::say(common::Level::Info, &format!("removed: archive {a:?} (its metadata is unreadable)"));
        }
        for a in &rep.archives_truncated {
            common::say(
                common::Level::Info,
                &format!("truncated: archive {a:?} (items after the damaged part of its item stream are lost)"),
            );
        }
        if g.verbose || g.info {
            common::say(
                common::Level::Info,
                &format!(
                    "index rebuilt from {} pack(s); {} corrupt blob(s) dropped",
                    rep.packs_indexed, rep.blobs_dropped
                ),
            );
        }
    }
    let touched = rep.blobs_dropped > 0
        || rep.unreadable_packs > 0
        || !rep.zero_filled.is_empty()
        || !rep.archives_removed.is_empty()
        || !rep.archives_truncated.is_empty();
    Ok(if touched { Outcome::Warning } else { Outcome::Ok })
}

pub fn run(g: &GlobalArgs, a: &CheckArgs) -> Result<Outcome> {
    let loc = location::parse_opt(a.location.as_deref())?;
    if a.filter.is_set() && (loc.archive.is_some() || a.repair || a.repository_only) {
        bail!("--prefix, --glob-archives, --sort-by, --first and --last select archives to check: give REPO, without --repair or --repository-only");
    }
    if a.repair {
        loc.forbid_archive()?;
        return repair(g, a, &loc.repo);
    }
    let mut repo = common::open(g, &loc.repo, false)?;
    // A prune and compact running meanwhile keep the data of the archives checked, so that
    // check reports no damage that is only their work.
    let mark = repo.hold()?;
    let only: Option<Vec<String>> = match (&loc.archive, a.filter.is_set()) {
        (Some(name), _) => Some(vec![name.clone()]),
        (None, true) => Some(a.filter.select(&repo.manifest().archives)?.iter().map(|e| e.name.clone()).collect()),
        (None, false) => None,
    };
    if let (Some(mark), Some(names)) = (&mark, &only) {
        let ids: Vec<_> = repo.manifest().archives.iter().filter(|e| names.contains(&e.name)).map(|e| e.id).collect();
        mark.set_archives(&ids)?;
    }
    let opts = CheckOptions {
        repository: !a.archives_only && loc.archive.is_none(),
        archives: !a.repository_only,
        verify_data: a.verify_data,
        only,
        max_duration: a.max_duration.map(std::time::Duration::from_secs),
        state_dir: Some(common::cache_dir()),
    };
    let rep = check::run(&repo, &opts)?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&rep)?)?;
    } else {
        for e in &rep.errors {
            common::say(common::Level::Error, &format!("garret: error: {}", common::one_line(e)));
        }
        for w in &rep.warnings {
            common::warn(w);
        }
        if g.verbose || g.info {
            common::say(
                common::Level::Info,
                &format!(
                    "checked {} packs, {} blobs ({} verified), {} archives; {} unreferenced blobs (freed by compact){}",
                    rep.packs_checked,
                    rep.blobs_checked,
                    common::size(rep.bytes_verified),
                    rep.archives_checked,
                    rep.unreferenced_blobs,
                    if rep.complete {
                        ""
                    } else {
                        "; data verification stopped at --max-duration, the next run resumes"
                    }
                ),
            );
        }
        if rep.damaged() {
            for d in &rep.damaged_archives {
                for f in &d.files {
                    common::say(common::Level::Warning, &format!("damaged: {}: {}", d.name, common::escape(f)));
                }
            }
        }
    }
    Ok(if rep.damaged() {
        Outcome::Error
    } else if !rep.warnings.is_empty() {
        Outcome::Warning
    } else {
        Outcome::Ok
    })
}
