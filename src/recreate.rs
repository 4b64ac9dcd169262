//! `recreate`: rewrite an archive without the items that selection rules now leave out (borg's
//! `recreate --exclude ...`, e.g. to drop an ISO image backed up by mistake from every archive).
//!
//! Only the item stream is rewritten: kept files keep their chunk references, nothing is read
//! from the source or re-chunked, and the space of dropped files comes back with `compact` once
//! no archive refers to it. A hardlink whose first name is dropped takes over its content. The
//! new archive replaces the old one in one manifest commit (or is added beside it, `target`).

use crate::archive::item::{Item, Kind};
use crate::archive::stream::ItemStreamWriter;
use crate::archive::{self, Archive, ArchiveStats};
use crate::error::{Error, Result};
use crate::extract::Wanted;
use crate::id::{Id, ObjectType};
use crate::patterns::Patterns;
use crate::progress::Reporter;
use crate::repository::{ArchiveEntry, Repository};
use std::collections::HashMap;

/// CACHEDIR.TAG's required first bytes (<https://bford.info/cachedir/>).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

pub struct RecreateOptions {
    /// Keep only these paths and what is below them (all when empty).
    pub paths: Vec<Vec<u8>>,
    pub excludes: Patterns,
    /// Drop directories holding a valid CACHEDIR.TAG.
    pub exclude_caches: bool,
    /// Drop directories holding an item of one of these names.
    pub exclude_if_present: Vec<String>,
    /// Keep a tagged directory itself and its tag files.
    pub keep_exclude_tags: bool,
    /// A new comment (the old one stays when `None`).
    pub comment: Option<String>,
    /// A new start time, RFC 3339 (`--timestamp`; the old one stays when `None`). The end time
    /// moves with it, so the archive keeps its duration.
    pub timestamp: Option<String>,
    /// Write the result under this name and keep the original.
    pub target: Option<String>,
    /// Recorded in the new archive object.
    pub command_line: Vec<String>,
    pub dry_run: bool,
}

/// What recreating one archive did (or, dry run, would do).
#[derive(Debug)]
pub struct Recreated {
    pub name: String,
    /// The archive written: `name`, or the target.
    pub target: String,
    pub kept: u64,
    pub dropped: u64,
    /// `None`: nothing to change (or a dry run); nothing was written.
    pub id: Option<Id>,
}

/// Which items stay.
struct Selection<'o> {
    opts: &'o RecreateOptions,
    wanted: Wanted<'o>,
    /// Directories carrying a tag, and the names of their tag files.
    tagged: HashMap<Vec<u8>, Vec<Vec<u8>>>,
}

fn parent(path: &[u8]) -> Option<&[u8]> {
    path.iter().rposition(|&b| b == b'/').map(|i| &path[..i])
}

impl Selection<'_> {
    fn keeps(&self, path: &[u8]) -> bool {
        if !self.wanted.selects(path) || self.opts.excludes.is_excluded(path) {
            return false;
        }
        if self.tagged.is_empty() {
            return true;
        }
        // The path itself, then each parent directory.
        let mut dir: Option<&[u8]> = Some(path);
        while let Some(d) = dir {
            if let Some(tags) = self.tagged.get(d) {
                let tag_file = parent(path) == Some(d) && tags.iter().any(|t| path.ends_with(t));
                return self.opts.keep_exclude_tags && (path == d || tag_file);
            }
            dir = parent(d);
        }
        true
    }
}

/// Rewrite the archive `entry` names as `opts` say.
pub fn recreate(
    repo: &mut Repository,
    entry: &ArchiveEntry,
    opts: &RecreateOptions,
    reporter: &dyn Reporter,
) -> Result<Recreated> {
    let target = opts.target.clone().unwrap_or_else(|| entry.name.clone());
    if opts.target.is_some() {
        archive::validate_name(&target)?;
        if repo.manifest().find(&target).is_some() {
            return Err(Error::ArchiveExists(target));
        }
    }
    let old = Archive::load(repo, entry)?;
    let sources = old.hardlink_sources(repo)?;
    let sel = Selection { opts, wanted: Wanted::new(&opts.paths), tagged: tagged_dirs(repo, &old, opts)? };

    // Plan: hardlinks whose first name goes but another name stays. The first kept name takes
    // the content (and the master role if more names stay); later names point at it.
    let mut dropped_masters: HashMap<Vec<u8>, Item> = HashMap::new();
    let mut kept_links: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    let (mut kept, mut dropped) = (0u64, 0u64);
    for it in old.items(repo) {
        let it = it?;
        let keep = sel.keeps(&it.path);
        if keep {
            kept += 1;
        } else {
            dropped += 1;
            reporter.item('x', &it.path);
        }
        if !keep && archive::is_master(&it, &sources) {
            dropped_masters.insert(it.path.clone(), it);
        } else if keep && it.kind == Kind::Hardlink {
            if let Some(src) = it.source.as_ref().filter(|s| dropped_masters.contains_key(*s)) {
                kept_links.entry(src.clone()).or_default().push(it.path.clone());
            }
        }
    }
    if !sel.wanted.unmatched().is_empty() {
        // Most likely a typo: keeping only the PATHs given would drop everything else.
        sel.wanted.warn_unmatched(reporter, &format!("so archive {} is left unchanged", entry.name));
        return Ok(Recreated { name: entry.name.clone(), target, kept, dropped, id: None });
    }
    let comment_changes = opts.comment.as_ref().is_some_and(|c| *c != old.comment);
    let time_changes = opts.timestamp.as_ref().is_some_and(|t| *t != old.time_start);
    if opts.dry_run || (dropped == 0 && !comment_changes && !time_changes && opts.target.is_none()) {
        return Ok(Recreated { name: entry.name.clone(), target, kept, dropped, id: None });
    }
    // First kept name -> (the dropped master's item, whether more names stay); old master path ->
    // the new one.
    let mut promote: HashMap<Vec<u8>, (Item, bool)> = HashMap::new();
    let mut moved: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for (master, links) in kept_links {
        let item = dropped_masters.remove(&master).expect("planned from dropped masters");
        moved.insert(master, links[0].clone());
        promote.insert(links[0].clone(), (item, links.len() > 1));
    }

    // The stored sizes, loaded apart from the repository's own dedup set (which the writer
    // below borrows): a sorted array, not a hash map of every blob.
    let known = repo.index().known_blobs()?;
    let mut stats = ArchiveStats::default();
    let mut w = ItemStreamWriter::new(repo);
    let mut cursor = crate::archive::stream::ItemCursor::new(old.items.clone());
    while let Some(mut it) = cursor.next_item(repo)? {
        if !sel.keeps(&it.path) {
            continue;
        }
        if let Some((master, more)) = promote.remove(&it.path) {
            let path = std::mem::take(&mut it.path);
            it = Item { path, hardlink_master: more, ..master };
        } else if let Some(to) = it.source.as_ref().and_then(|s| moved.get(s)) {
            it.source = Some(to.clone());
        }
        stats.nitems += 1;
        *stats.nchunks.get_or_insert(0) += it.chunks.len() as u64;
        if it.kind == Kind::File {
            stats.nfiles += 1;
            for c in &it.chunks {
                stats.original_size += c.1 as u64;
                stats.compressed_size += known.get(&c.0).copied().unwrap_or(0) as u64;
            }
        }
        w.push(repo, &it)?;
    }
    let (items, added, stored) = w.finish(repo)?;
    stats.deduplicated_size = added;
    stats.compressed_size += stored;
    *stats.nchunks.get_or_insert(0) += items.len() as u64;
    let (time_start, time_end) = match &opts.timestamp {
        Some(t) => (t.clone(), shifted_end(&old.time_start, &old.time_end, t)),
        None => (old.time_start.clone(), old.time_end.clone()),
    };
    let new = Archive {
        name: target.clone(),
        items,
        stats,
        comment: opts.comment.clone().unwrap_or_else(|| old.comment.clone()),
        recreated: opts.command_line.clone(),
        time_start,
        time_end,
        ..old
    };
    let id = if opts.target.is_some() {
        new.commit(repo)?
    } else {
        let (id, _) = new.save(repo)?;
        let archives: Vec<ArchiveEntry> = repo
            .manifest()
            .archives
            .iter()
            .map(|e| {
                if e.name == entry.name {
                    ArchiveEntry { id, time: new.time_start.clone(), ..e.clone() }
                } else {
                    e.clone()
                }
            })
            .collect();
        repo.commit(archives)?;
        id
    };
    Ok(Recreated { name: entry.name.clone(), target, kept, dropped, id: Some(id) })
}

/// The end time of an archive that ran from `start` to `end` and now starts at `new_start` (all
/// RFC 3339): the same duration later. `new_start` itself when either old time does not parse.
fn shifted_end(start: &str, end: &str, new_start: &str) -> String {
    let parse = chrono::DateTime::parse_from_rfc3339;
    match (parse(start), parse(end), parse(new_start)) {
        (Ok(s), Ok(e), Ok(n)) => (n + (e - s)).to_rfc3339(),
        _ => new_start.to_string(),
    }
}

/// The directories of `ar` that `--exclude-caches` or `--exclude-if-present` tag, with the names
/// of their tag files.
fn tagged_dirs(repo: &Repository, ar: &Archive, opts: &RecreateOptions) -> Result<HashMap<Vec<u8>, Vec<Vec<u8>>>> {
    let mut tagged: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    if !opts.exclude_caches && opts.exclude_if_present.is_empty() {
        return Ok(tagged);
    }
    for it in ar.items(repo) {
        let it = it?;
        let Some(dir) = parent(&it.path) else { continue };
        let name = &it.path[dir.len() + 1..];
        let is_tag = opts.exclude_if_present.iter().any(|n| n.as_bytes() == name)
            || (opts.exclude_caches && name == b"CACHEDIR.TAG" && it.kind == Kind::File && cachedir_tag(repo, &it)?);
        if is_tag {
            let mut slash_name = b"/".to_vec();
            slash_name.extend_from_slice(name);
            tagged.entry(dir.to_vec()).or_default().push(slash_name);
        }
    }
    Ok(tagged)
}

/// Whether a CACHEDIR.TAG item starts with the signature (read from its first chunk).
fn cachedir_tag(repo: &Repository, it: &Item) -> Result<bool> {
    let Some(first) = it.chunks.first() else { return Ok(false) };
    let data = repo.load_blob(ObjectType::Data, &first.0)?;
    Ok(data.starts_with(CACHEDIR_SIGNATURE))
}
