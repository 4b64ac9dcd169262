//! `garret info REPO::NAME` (and the summary `create --stats/--json` prints).

use super::common::{self, GlobalArgs};
use super::filter::ArchiveFilter;
use super::{location, Outcome};
use anyhow::Result;
use garret::archive::{self, Archive, ArchiveStats, Totals};
use garret::id::Id;
use garret::repository::{Encryption, Repository};

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filter: ArchiveFilter,
    /// REPO::NAME, REPO with archive filters (e.g. --last 1), or REPO for a repository summary
    pub location: Option<String>,
}

fn duration_of(a: &Archive) -> f64 {
    let p = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (p(&a.time_start), p(&a.time_end)) {
        (Some(s), Some(e)) => (e - s).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    }
}

/// How long the archive took, as borg shows it ("1.23 seconds").
fn shown_duration(a: &Archive) -> String {
    common::duration(std::time::Duration::from_secs_f64(duration_of(a).max(0.0)))
}

/// borg's separator line.
pub(super) const DASHES: &str = "------------------------------------------------------------------------------";

/// A first row for [`stats_table`]: an archive's sizes as borg's "This archive" line.
pub fn this_archive(x: &ArchiveStats, deduplicated: u64) -> (&'static str, [String; 3]) {
    let size = common::size;
    ("This archive:", [size(x.original_size), size(x.compressed_size), size(deduplicated)])
}

/// A first row for [`stats_table`]: what a `delete` or `prune` took ([`archive::freed_by`]), as
/// borg's "Deleted data" line (negative sizes).
pub fn deleted_data((original, compressed, freed): (u64, u64, u64)) -> (&'static str, [String; 3]) {
    let minus = |n: u64| if n == 0 { common::size(0) } else { format!("-{}", common::size(n)) };
    ("Deleted data:", [minus(original), minus(compressed), minus(freed)])
}

/// borg's size table: a first row (when given: "This archive" or "Deleted data"), "All archives",
/// then the chunk counts; column for column as borg 1.2 prints it.
pub fn stats_table(first: Option<(&str, [String; 3])>, t: &Totals) -> String {
    let row = |label: &str, a: String, b: String, c: String| {
        format!("{label:<15} {a:>20} {b:>20}{}\n", if c.is_empty() { c } else { format!(" {c:>20}") })
    };
    let size = |n: u64| common::size(n);
    let mut s = String::from("                       Original size      Compressed size    Deduplicated size\n");
    if let Some((label, [a, b, c])) = first {
        s += &row(label, a, b, c);
    }
    s += &row("All archives:", size(t.total_size), size(t.total_csize), size(t.unique_csize));
    s += "\n                       Unique chunks         Total chunks\n";
    s += &row("Chunk index:", t.unique_chunks.to_string(), t.total_chunks.to_string(), String::new());
    s
}

/// `info REPO::NAME`'s text, as borg's (without its "Utilization of maximum supported archive
/// size" line: garret's item stream has no such limit).
pub fn archive_text(a: &Archive, id: &Id, totals: &Totals, deduplicated: u64) -> String {
    let recreated = if a.recreated.is_empty() {
        String::new()
    } else {
        format!("Recreated by: {}\n", common::escape(&a.recreated.join(" ")))
    };
    format!(
        "Archive name: {}\nArchive fingerprint: {}\nComment: {}\nHostname: {}\nUsername: {}\nTime (start): {}\nTime (end): {}\nDuration: {}\nNumber of files: {}\nCommand line: {}\n{}{DASHES}\n{}",
        a.name,
        id,
        common::escape(&a.comment),
        a.hostname,
        a.username,
        common::show_time(&a.time_start),
        common::show_time(&a.time_end),
        shown_duration(a),
        a.stats.nfiles,
        common::escape(&a.command_line.join(" ")),
        recreated,
        stats_table(Some(this_archive(&a.stats, deduplicated)), totals),
    )
}

/// `create --stats`' text, as borg's (on stderr, like borg's).
pub fn create_stats_text(repo: &Repository, a: &Archive, id: &Id, totals: &Totals) -> String {
    format!(
        "{DASHES}\nRepository: {}\nArchive name: {}\nArchive fingerprint: {}\nTime (start): {}\nTime (end):   {}\nDuration: {}\nNumber of files: {}\n{DASHES}\n{}{DASHES}\n",
        absolute_location(repo),
        a.name,
        id,
        common::show_time(&a.time_start),
        common::show_time(&a.time_end),
        shown_duration(a),
        a.stats.nfiles,
        stats_table(Some(this_archive(&a.stats, a.stats.deduplicated_size)), totals),
    )
}

/// Where the repository is, as an absolute path (as borg shows it).
fn absolute_location(repo: &Repository) -> String {
    std::path::absolute(repo.path()).unwrap_or_else(|_| repo.path().to_path_buf()).display().to_string()
}

/// The `repository` member of borg's JSON output: id, location and the time of the last commit.
pub fn repository_json(repo: &Repository) -> serde_json::Value {
    serde_json::json!({
        "id": repo.config().id,
        "location": absolute_location(repo),
        "last_modified": repo.manifest().time,
    })
}

/// The `encryption` member of borg's JSON output.
pub fn encryption_json(repo: &Repository) -> serde_json::Value {
    serde_json::json!({ "mode": repo.config().encryption })
}

/// borg's `cache` member: where this client keeps its cache of the repository, and sizes over
/// the whole repository ([`archive::totals`]).
pub fn cache_json(t: &Totals, repo: &Repository) -> serde_json::Value {
    serde_json::json!({
        "path": common::cache_dir().join(&repo.config().id).display().to_string(),
        "stats": {
            "total_chunks": t.total_chunks,
            "total_unique_chunks": t.unique_chunks,
            "unique_size": t.unique_size,
            "unique_csize": t.unique_csize,
            "total_size": t.total_size,
            "total_csize": t.total_csize,
        },
    })
}

pub fn archive_json(repo: &Repository, a: &Archive, id: &Id, deduplicated: u64) -> serde_json::Value {
    serde_json::json!({
        "repository": repository_json(repo),
        "encryption": encryption_json(repo),
        "archive": {
            "name": a.name,
            "id": id.hex(),
            "hostname": a.hostname,
            "username": a.username,
            "start": a.time_start,
            "end": a.time_end,
            "duration": duration_of(a),
            "comment": a.comment,
            "command_line": a.command_line,
            "recreate_command_line": a.recreated,
            "stats": {
                "original_size": a.stats.original_size,
                "compressed_size": a.stats.compressed_size,
                "deduplicated_size": deduplicated,
                "nfiles": a.stats.nfiles,
                "nitems": a.stats.nitems,
            }
        }
    })
}

/// The "This archive" deduplicated sizes of `info`: what only that archive references now
/// ([`archive::unique_to`]), as borg gives them. When some archive cannot be read, the size each
/// archive added when it was made, with a warning (exit 1).
struct Unique {
    sizes: Option<std::collections::HashMap<Id, u64>>,
}

impl Unique {
    fn of(repo: &Repository, ids: &[Id]) -> Unique {
        match archive::unique_to(repo, ids, Some(&common::cache_dir())) {
            Ok(sizes) => Unique { sizes: Some(sizes) },
            Err(e) => {
                common::warn(&format!(
                    "cannot tell what each archive alone references ({e}); showing as deduplicated size what \
                     it added when it was made. Run `garret check` to find the damage"
                ));
                Unique { sizes: None }
            }
        }
    }

    fn size(&self, id: &Id, a: &Archive) -> u64 {
        self.sizes.as_ref().and_then(|s| s.get(id).copied()).unwrap_or(a.stats.deduplicated_size)
    }
}

pub fn run(g: &GlobalArgs, a: &InfoArgs) -> Result<Outcome> {
    let loc = location::parse_opt(a.location.as_deref())?;
    if loc.archive.is_some() && a.filter.is_set() {
        anyhow::bail!(
            "--prefix, --glob-archives, --sort-by, --first and --last select archives: give REPO, not REPO::NAME"
        );
    }
    let repo = common::open(g, &loc.repo, false)?;
    let totals = archive::totals(&repo)?;
    let mut warned = false;
    match &loc.archive {
        None if a.filter.is_set() => {
            let mut shown = vec![];
            let entries = a.filter.select(&repo.manifest().archives)?;
            let unique = Unique::of(&repo, &entries.iter().map(|e| e.id).collect::<Vec<_>>());
            warned |= unique.sizes.is_none();
            for entry in entries {
                let ar = Archive::load(&repo, entry)?;
                let dedup = unique.size(&entry.id, &ar);
                shown.push(if a.json {
                    archive_json(&repo, &ar, &entry.id, dedup)["archive"].take()
                } else {
                    serde_json::Value::String(archive_text(&ar, &entry.id, &totals, dedup))
                });
            }
            if a.json {
                let v = serde_json::json!({
                    "archives": shown,
                    "repository": repository_json(&repo),
                    "encryption": encryption_json(&repo),
                    "cache": cache_json(&totals, &repo),
                });
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                let texts: Vec<&str> = shown.iter().filter_map(|v| v.as_str()).collect();
                out!("{}", texts.join("\n"))?;
            }
        }
        Some(name) => {
            let entry = archive::lookup(&repo, name)?.clone();
            let ar = Archive::load(&repo, &entry)?;
            let unique = Unique::of(&repo, &[entry.id]);
            warned |= unique.sizes.is_none();
            let dedup = unique.size(&entry.id, &ar);
            if a.json {
                // borg's shape (`.archives[0].stats` in monitoring scripts); `create --json` has
                // borg's `archive` instead.
                let mut v = archive_json(&repo, &ar, &entry.id, dedup);
                let v = serde_json::json!({
                    "archives": [v["archive"].take()],
                    "repository": v["repository"].take(),
                    "encryption": v["encryption"].take(),
                    "cache": cache_json(&totals, &repo),
                });
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                out!("{}", archive_text(&ar, &entry.id, &totals, dedup))?;
            }
        }
        None => {
            let size = dir_size(repo.path());
            let condemned = condemned_packs(&repo)?;
            // Mounts, restores and checks running now: compact keeps what they read.
            let readers = garret::repository::lock::readers(repo.path());
            let c = repo.config();
            if a.json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "repository": { "id": c.id, "location": absolute_location(&repo), "version": c.version, "last_modified": repo.manifest().time },
                        "encryption": { "mode": c.encryption },
                        "cache": cache_json(&totals, &repo),
                        "archives": repo.manifest().archives.len(),
                        "manifest_seq": repo.manifest().seq,
                        "blobs": repo.index().blob_count()?,
                        "size_on_disk": size,
                        "condemned": {
                            "packs": condemned.0, "bytes": condemned.1,
                            "oldest": condemned.2.map(|t| t.to_rfc3339()),
                        },
                        "readers": readers.iter().map(|r| serde_json::json!({
                            "who": r.who, "archives": r.archives.as_ref().map(Vec::len),
                        })).collect::<Vec<_>>(),
                    }))?
                )?;
            } else {
                // The first three lines as borg's, for scripts that read them.
                let encrypted = match c.encryption {
                    Encryption::Repokey => "Yes (repokey)",
                    Encryption::Keyfile => "Yes (key file)",
                    Encryption::None => "No",
                };
                outln!(
                    "Repository ID: {}\nLocation: {}\nEncrypted: {}\nCache: {}\nFormat version: {}\nArchives: {}\nManifest: #{}\nSize on disk: {}",
                    c.id,
                    absolute_location(&repo),
                    encrypted,
                    common::cache_dir().join(&c.id).display(),
                    c.version,
                    repo.manifest().archives.len(),
                    repo.manifest().seq,
                    common::size(size)
                )?;
                if let Some(oldest) = condemned.2 {
                    outln!(
                        "Condemned packs: {} ({}), rewritten by compact since {}; a compact after the grace period deletes them",
                        condemned.0,
                        common::size(condemned.1),
                        oldest.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S")
                    )?;
                }
                for r in &readers {
                    let what = match &r.archives {
                        Some(a) => format!("{} archive(s), whose data compact keeps meanwhile", a.len()),
                        None => "archives it does not name (an older garret): compact refuses meanwhile".into(),
                    };
                    outln!("Reader: {}, reading {what}", r.who)?;
                }
                out!("{DASHES}\n{}", stats_table(None, &totals))?;
            }
        }
    }
    Ok(if warned { Outcome::Warning } else { Outcome::Ok })
}

/// Packs `compact` rewrote and has not deleted yet (repo-format.md 13.1): how many, their bytes,
/// and when the oldest was condemned.
fn condemned_packs(repo: &Repository) -> Result<(u64, u64, Option<chrono::DateTime<chrono::Utc>>)> {
    let on_disk = repo.pack_files()?;
    let packs = &repo.condemned().packs;
    let here: Vec<(&String, &u64)> = packs.iter().filter(|(n, _)| on_disk.contains(*n)).collect();
    let bytes = here.iter().map(|(n, _)| repo.backend().size(&Repository::pack_key(n)).unwrap_or(0)).sum();
    let oldest = here.iter().map(|(_, &t)| t).min().and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0));
    Ok((here.len() as u64, bytes, oldest))
}

fn dir_size(p: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
