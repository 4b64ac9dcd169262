//! `garret prune`, `garret delete`, `garret rename`, `garret compact`: retention and space.

use super::common::{self, GlobalArgs};
use super::filter::{archive_glob, ArchiveFilter};
use super::{location, Outcome};
use anyhow::{bail, Result};
use garret::archive::Archive;
use garret::compact;
use garret::id::Id;
use garret::prune::{self, Policy};
use garret::repository::Repository;

fn archive_line(name: &str, time: &str, id: &garret::id::Id) -> String {
    format!("{:<36} {} [{}]", name, common::show_time(time), id.hex())
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Do not change the repository
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// List every archive with kept/pruned and the rule that kept it
    #[arg(long)]
    pub list: bool,
    /// Print what was deleted
    #[arg(short = 's', long)]
    pub stats: bool,
    /// JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Keep all archives within this interval (e.g. 2d, 3w, 6m, 1y; units H d w m y)
    #[arg(long, value_name = "INTERVAL", value_parser = prune::parse_interval)]
    pub keep_within: Option<u64>,
    /// Number of archives to keep (same as --keep-secondly)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_last: Option<i64>,
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_secondly: Option<i64>,
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_minutely: Option<i64>,
    #[arg(short = 'H', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_hourly: Option<i64>,
    #[arg(short = 'd', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_daily: Option<i64>,
    #[arg(short = 'w', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_weekly: Option<i64>,
    #[arg(short = 'm', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_monthly: Option<i64>,
    #[arg(short = 'y', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_yearly: Option<i64>,
    /// Only consider archive names starting with this prefix (attic/borg 1.x)
    #[arg(short = 'P', long)]
    pub prefix: Option<String>,
    /// Only consider archive names matching GLOB
    #[arg(short = 'a', long, value_name = "GLOB")]
    pub glob_archives: Option<String>,
    /// Run compact afterwards
    #[arg(long)]
    pub compact: bool,
    /// Accepted from borg command lines (garret's prune needs neither; pruning never reads an
    /// archive, so a damaged one is pruned as any other: borg's --force)
    #[arg(long, hide = true)]
    pub save_space: bool,
    #[arg(short = 'c', long, hide = true, value_name = "SECONDS")]
    pub checkpoint_interval: Option<u64>,
    #[arg(long, hide = true)]
    pub force: bool,
    /// Repository (or GARRET_REPO)
    pub repository: Option<String>,
}

pub fn run(g: &GlobalArgs, a: &PruneArgs) -> Result<Outcome> {
    let loc = location::parse_opt(a.repository.as_deref())?;
    loc.forbid_archive()?;
    if a.keep_last.is_some() && a.keep_secondly.is_some() {
        bail!("--keep-last and --keep-secondly are the same rule: give one");
    }
    let policy = Policy {
        within_hours: a.keep_within,
        keep: [
            a.keep_last.or(a.keep_secondly),
            a.keep_minutely,
            a.keep_hourly,
            a.keep_daily,
            a.keep_weekly,
            a.keep_monthly,
            a.keep_yearly,
        ],
    };
    if let Some(n) = policy.keep.iter().flatten().find(|n| **n < -1) {
        bail!("invalid keep count {n}: use a number >= 0, or -1 for unlimited");
    }
    if policy.is_empty() {
        bail!("at least one of --keep-within, --keep-last, --keep-secondly, --keep-minutely, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly or --keep-yearly must be given");
    }
    let glob = archive_glob(a.glob_archives.as_deref(), a.prefix.as_deref())?;
    let mut repo = common::open(g, &loc.repo, !a.dry_run)?;
    let cands = prune::candidates(&repo, glob.as_ref())?;
    let plain: Vec<_> = cands.iter().map(|c| c.1.clone()).collect();
    let decision = prune::select(&plain, &policy, chrono::Utc::now());
    // Report newest first, as borg does.
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|&x, &y| plain[y].time.cmp(&plain[x].time));
    let doomed: Vec<String> =
        order.iter().filter(|&&i| decision[i].is_none()).map(|&i| cands[i].0.name.clone()).collect();
    let mut json = vec![];
    let mut deleted = 0;
    for &i in &order {
        let (e, _) = &cands[i];
        let msg = match &decision[i] {
            Some(k) => format!("Keeping archive (rule: {} #{}):", k.rule, k.n),
            None if a.dry_run => "Would prune:".to_string(),
            None => {
                deleted += 1;
                format!("Pruning archive ({deleted}/{}):", doomed.len())
            }
        };
        if a.list {
            common::say(common::Level::Info, &format!("{msg:<40} {}", archive_line(&e.name, &e.time, &e.id)));
        }
        json.push(serde_json::json!({
            "name": e.name, "id": e.id.hex(), "time": e.time,
            "kept": decision[i].is_some(),
            "rule": decision[i].as_ref().map(|k| format!("{} #{}", k.rule, k.n)),
        }));
    }
    // For --stats: the objects of the archives about to go, read while they are listed.
    let stats = a.stats && !a.dry_run;
    let (gone, mut stats_warned) = if stats { loaded(&repo, &doomed)? } else { (vec![], false) };
    if !a.dry_run && !doomed.is_empty() {
        garret::archive::delete(&mut repo, &doomed)?;
    }
    if stats {
        stats_warned |= deleted_stats(&repo, &gone);
    }
    let (mut compacted, mut warned) = (None, false);
    if a.compact && !a.dry_run {
        let opened = repo.warnings.len();
        compacted = Some(compact::run(&mut repo, compact::CompactOptions::default())?);
        warned = repo.warnings.len() > opened;
        for w in &repo.warnings[opened..] {
            common::warn(w);
        }
    } else if (g.verbose || g.info || a.list || a.stats) && !doomed.is_empty() && !a.dry_run {
        common::say(
            common::Level::Info,
            &format!(
                "garret: {} archive(s) pruned; run `garret compact {}` to free their space",
                doomed.len(),
                loc.repo.display()
            ),
        );
    }
    if let (true, Some(c)) = (a.stats, &compacted) {
        common::info(compact_text(c).trim_end());
    }
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "archives": json, "dry_run": a.dry_run, "compact": compacted.map(compact_json) })
            )?
        )?;
    }
    Ok(if warned || stats_warned { Outcome::Warning } else { Outcome::Ok })
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// Do not change the repository
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// List the archives deleted
    #[arg(long)]
    pub list: bool,
    /// Print a summary
    #[arg(short = 's', long)]
    pub stats: bool,
    /// JSON on stdout: {"deleted": [{"name", "id", "time"}], "dry_run"}
    #[arg(long)]
    pub json: bool,
    /// Delete the archives these select (e.g. -a 'tmp-*', --first 3)
    #[command(flatten)]
    pub filter: ArchiveFilter,
    /// Accepted from borg command lines: deleting never reads an archive, so a damaged one
    /// is deleted as any other (borg's --force)
    #[arg(long, hide = true)]
    pub force: bool,
    #[arg(long, hide = true)]
    pub save_space: bool,
    /// With a whole repository, which garret does not delete: accepted from borg command lines
    #[arg(long, hide = true)]
    pub keep_security_info: bool,
    #[arg(short = 'c', long, hide = true, value_name = "SECONDS")]
    pub checkpoint_interval: Option<u64>,
    /// Delete only this machine's cache of the repository (the files cache; rebuilt by the next
    /// create, which then reads every file once)
    #[arg(long)]
    pub cache_only: bool,
    /// REPO::NAME, or REPO with --glob-archives/--prefix or further NAMEs
    pub location: Option<String>,
    /// More archive names
    pub names: Vec<String>,
}

pub fn delete(g: &GlobalArgs, a: &DeleteArgs) -> Result<Outcome> {
    let loc = location::parse_opt(a.location.as_deref())?;
    let f = &a.filter;
    let narrows = f.prefix.is_some() || f.glob_archives.is_some() || f.first.is_some() || f.last.is_some();
    let mut names: Vec<String> = loc.archive.iter().cloned().chain(a.names.iter().cloned()).collect();
    if a.cache_only {
        if !names.is_empty() || narrows {
            bail!("--cache-only deletes the cache of a whole repository: give REPO without archive names");
        }
        let repo = common::open(g, &loc.repo, false)?;
        let dir = common::cache_dir().join(&repo.config().id);
        let existed = dir.exists();
        if existed && !a.dry_run {
            std::fs::remove_dir_all(&dir).map_err(|e| anyhow::anyhow!("removing {}: {e}", dir.display()))?;
        }
        if a.json {
            outln!("{}", serde_json::json!({ "cache": dir, "existed": existed, "dry_run": a.dry_run }))?;
        }
        return Ok(Outcome::Ok);
    }
    if names.is_empty() && !narrows {
        bail!("name the archives to delete (REPO::NAME [NAME...], or REPO with --glob-archives GLOB, --prefix, --first N or --last N); to delete a whole repository, remove its directory");
    }
    let mut repo = common::open(g, &loc.repo, !a.dry_run)?;
    if narrows {
        names.extend(f.select(&repo.manifest().archives)?.iter().map(|e| e.name.clone()));
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    // A name not in the repository is borg's warning; the others are still deleted.
    let asked = names.len();
    let mut missing = false;
    let mut i = 0;
    names.retain(|n| {
        i += 1;
        let here = garret::archive::lookup(&repo, n).is_ok();
        if !here {
            common::warn(&format!("Archive {n} not found ({i}/{asked})."));
            missing = true;
        }
        here
    });
    let entries: Vec<_> = repo.manifest().archives.iter().filter(|e| names.contains(&e.name)).cloned().collect();
    if a.list || a.dry_run {
        for e in &entries {
            let msg = if a.dry_run { "Would delete:" } else { "Deleting archive:" };
            common::say(common::Level::Info, &format!("{msg:<20} {}", archive_line(&e.name, &e.time, &e.id)));
        }
    }
    let stats = a.stats && !a.dry_run;
    let (gone, mut warned) = if stats { loaded(&repo, &names)? } else { (vec![], false) };
    warned |= missing;
    if !a.dry_run {
        garret::archive::delete(&mut repo, &names)?;
    }
    if stats {
        warned |= deleted_stats(&repo, &gone);
    }
    if a.json {
        let deleted: Vec<_> =
            entries.iter().map(|e| serde_json::json!({ "name": e.name, "id": e.id.hex(), "time": e.time })).collect();
        outln!("{}", serde_json::json!({ "deleted": deleted, "dry_run": a.dry_run }))?;
    }
    Ok(if warned { Outcome::Warning } else { Outcome::Ok })
}

/// The archive objects named `names` (in the manifest), for [`garret::archive::freed_by`]. One
/// that cannot be read (damaged: often why it is deleted) is left out with a warning, and the
/// deletion goes on; the warning is `true`.
fn loaded(repo: &Repository, names: &[String]) -> Result<(Vec<(Id, Archive)>, bool)> {
    let (mut out, mut warned) = (vec![], false);
    for n in names {
        let e = garret::archive::lookup(repo, n)?;
        match Archive::load(repo, e) {
            Ok(a) => out.push((e.id, a)),
            Err(err) => {
                common::warn(&format!("--stats leaves out archive {n:?}, which cannot be read: {err}"));
                warned = true;
            }
        }
    }
    Ok((out, warned))
}

/// borg's `--stats` of delete and prune, on stderr: "Deleted data" (what `compact` will free),
/// then the repository's totals after the deletion. The archives are already deleted: should
/// the figures fail (a remaining archive that cannot be read), that is a warning, and `true`.
fn deleted_stats(repo: &Repository, gone: &[(Id, Archive)]) -> bool {
    let figures = garret::archive::freed_by(repo, gone).and_then(|f| Ok((f, garret::archive::totals(repo)?)));
    match figures {
        Ok((freed, totals)) => {
            let table = super::info::stats_table(Some(super::info::deleted_data(freed)), &totals);
            let dashes = super::info::DASHES;
            common::info(&format!("{dashes}\n{table}{dashes}"));
            false
        }
        Err(e) => {
            common::warn(&format!("--stats: the archives are deleted, but their figures are not known: {e}"));
            true
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct RenameArgs {
    /// REPO::OLDNAME
    pub archive: String,
    /// The new name
    pub new_name: String,
    /// JSON on stdout: {"old", "new"}
    #[arg(long)]
    pub json: bool,
}

pub fn rename(g: &GlobalArgs, a: &RenameArgs) -> Result<Outcome> {
    let loc = location::parse(&a.archive)?;
    let old = loc.require_archive()?.to_string();
    let new = location::expand_placeholders(&a.new_name)?;
    let mut repo = common::open(g, &loc.repo, true)?;
    garret::archive::rename(&mut repo, &old, &new)?;
    if a.json {
        outln!("{}", serde_json::json!({ "old": old, "new": new }))?;
    }
    Ok(Outcome::Ok)
}

#[derive(clap::Args, Debug)]
pub struct CompactArgs {
    /// Rewrite packs with more than PERCENT garbage (packs with none live are always deleted)
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    pub threshold: f64,
    /// Delete packs this compact rewrites only after this long, at a later compact (0: now).
    /// Until then an rsync copy of the repository taken meanwhile still finds every blob.
    /// Units S, M, H, d, w
    #[arg(long, value_name = "INTERVAL", default_value = "12H", value_parser = compact::parse_grace)]
    pub grace: std::time::Duration,
    /// Only report what would be freed
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print bytes freed and rewritten
    #[arg(short = 's', long)]
    pub stats: bool,
    /// JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Accepted from borg command lines: garret has no commit-only segments to clean up
    #[arg(long, hide = true)]
    pub cleanup_commits: bool,
    /// Repository (or GARRET_REPO)
    pub repository: Option<String>,
}

fn compact_text(c: &compact::CompactStats) -> String {
    let mut s = format!(
        "Packs: {} before, {} deleted, {} rewritten\nFreed: {}  Rewritten: {}  Garbage left below threshold: {}\n",
        c.packs_before,
        c.packs_deleted,
        c.packs_rewritten,
        common::size(c.bytes_freed),
        common::size(c.bytes_rewritten),
        common::size(c.garbage_kept)
    );
    if let Some(at) = c.next_deletion.and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0)) {
        s.push_str(&format!(
            "Condemned, awaiting deletion: {} pack(s), {} (rewritten; a compact from {} deletes them, or now with --grace 0)\n",
            c.packs_condemned,
            common::size(c.bytes_condemned),
            at.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S")
        ));
    }
    if c.archives_kept_for_readers > 0 {
        s.push_str(&format!(
            "Kept for readers: the data of {} archive(s) no longer in the repository that a mount, restore or check still reads (freed by a compact after it ends)\n",
            c.archives_kept_for_readers
        ));
    }
    s
}

fn compact_json(c: compact::CompactStats) -> serde_json::Value {
    serde_json::json!({
        "packs_before": c.packs_before, "packs_deleted": c.packs_deleted, "packs_rewritten": c.packs_rewritten,
        "bytes_freed": c.bytes_freed, "bytes_rewritten": c.bytes_rewritten,
        "garbage_kept": c.garbage_kept,
        "packs_condemned": c.packs_condemned, "bytes_condemned": c.bytes_condemned,
        "archives_kept_for_readers": c.archives_kept_for_readers,
        "next_deletion": c.next_deletion.and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0)).map(|t| t.to_rfc3339()),
    })
}

pub fn compact(g: &GlobalArgs, a: &CompactArgs) -> Result<Outcome> {
    let loc = location::parse_opt(a.repository.as_deref())?;
    loc.forbid_archive()?;
    if !(0.0..=100.0).contains(&a.threshold) {
        bail!("--threshold {} is out of range: use 0 to 100 (percent)", a.threshold);
    }
    let mut repo = common::open(g, &loc.repo, true)?;
    let opts = compact::CompactOptions { threshold_percent: a.threshold, grace: a.grace, dry_run: a.dry_run };
    let opened = repo.warnings.len();
    let st = compact::run(&mut repo, opts)?;
    let warnings = repo.warnings.split_off(opened);
    for w in &warnings {
        common::warn(w);
    }
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "dry_run": a.dry_run, "stats": compact_json(st) }))?
        )?;
    } else if a.stats || a.dry_run {
        if a.dry_run {
            common::info("Would free (dry run):");
        }
        common::info(compact_text(&st).trim_end());
    } else if g.verbose || g.info {
        // borg's line for `compact -v` (borgmatic's verbose runs show it): what was freed now;
        // rewritten packs are freed by a later compact, after the grace period.
        common::info(&format!("compaction freed about {} repository space.", common::size(st.bytes_freed)));
    }
    Ok(if warnings.is_empty() { Outcome::Ok } else { Outcome::Warning })
}
