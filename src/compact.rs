//! `compact`: give back the space of blobs no archive references.
//!
//! Mark and sweep, no reference counters: the live set is computed from the current manifest's
//! archives and those readers read (archive objects, their tree chunks, and every chunk their
//! items name). Packs with no live blob are deleted; packs whose garbage exceeds the threshold are
//! rewritten (their live envelopes copied as they are into new packs, and bundles holding dead
//! blobs sealed again with their live ones only). Order, for crash safety:
//! new packs are durable and indexed (pointing the moved blobs at them) before any old pack is
//! removed from the index, and old pack files are deleted last. A crash at any point leaves every live blob readable.
//!
//! A rewritten pack is not deleted at once but condemned (repo-format.md section 13.1): it stays
//! in `data/` until a compact at least the grace period later, so that an rsync copy or a mount
//! that began before its replacement existed still finds every blob. Before deleting a condemned
//! pack, compact checks that every blob of it that may still be needed is indexed in another pack.
//!
//! A reader mark (a mount, a restore, a check) names the archives its reader reads; their data
//! is live too, so a compact beside a reader (say, a nightly `prune --compact` while someone
//! browses a mount) frees everything else and never what the reader may still read. Blobs it
//! moves, the reader finds again through the shared index.

use crate::archive::Archive;
use crate::blob::{self, SealedBlob};
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::faults;
use crate::id::{Id, ObjectType};
use crate::known::Marks;
use crate::repository::{lock, Repository};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// How long a rewritten pack stays before a later compact deletes it, unless `--grace` says
/// otherwise: longer than an offsite rsync of the repository, shorter than a day, so that a
/// nightly compact deletes the packs the previous night's condemned.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(12 * 3600);

/// Parse `--grace`: `0`, or a positive integer and a unit S (seconds), M (minutes), H (hours),
/// d (days) or w (weeks), the units of borg 2's intervals.
pub fn parse_grace(s: &str) -> std::result::Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || format!("invalid grace period {s:?}: use 0 or a number and a unit S, M, H, d or w (e.g. 12H, 2d)");
    let unit = s.chars().last().ok_or_else(bad)?;
    let secs = match unit {
        'S' => 1,
        'M' => 60,
        'H' => 3600,
        'd' => 86400,
        'w' => 7 * 86400,
        _ => return Err(bad()),
    };
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(bad)
}

/// What to compact, and how.
#[derive(Clone, Copy, Debug)]
pub struct CompactOptions {
    /// Rewrite packs with more than this percentage of garbage.
    pub threshold_percent: f64,
    /// How long rewritten packs stay condemned; zero deletes them in the same run.
    pub grace: Duration,
    /// Only compute what would be done.
    pub dry_run: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions { threshold_percent: 10.0, grace: DEFAULT_GRACE, dry_run: false }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Indexed packs when compact began (condemned ones not counted).
    pub packs_before: u64,
    /// Pack files deleted by this run (or that would be, in a dry run).
    pub packs_deleted: u64,
    pub packs_rewritten: u64,
    /// Bytes of the pack files deleted by this run.
    pub bytes_freed: u64,
    /// Live bytes copied into new packs.
    pub bytes_rewritten: u64,
    /// Bytes of garbage left in packs below the threshold.
    pub garbage_kept: u64,
    /// Condemned packs left in `data/` after this run, awaiting a later compact.
    pub packs_condemned: u64,
    pub bytes_condemned: u64,
    /// Unix time from which the first of them may be deleted.
    pub next_deletion: Option<u64>,
    /// Archives no longer in the manifest whose data stays because a reader (a mount, a
    /// restore, a check) still reads them.
    pub archives_kept_for_readers: u64,
}

/// Every blob of the repository that the current archives, and the archives `shown` by readers
/// (mounts, restores, checks), reference, marked; and the referenced ids the index does not know
/// (none in a healthy repository).
pub fn live_set(repo: &Repository, shown: &[Id]) -> Result<(Marks, HashSet<Id>)> {
    let live = Marks::new(repo.index().known_blobs()?);
    let mut unknown = HashSet::new();
    let mut mark = |id: &Id| {
        if !live.mark(id) {
            unknown.insert(*id);
        }
    };
    let mark_archive = |archive: Archive, mark: &mut dyn FnMut(&Id)| -> Result<()> {
        for id in &archive.items {
            mark(id);
        }
        for item in archive.items(repo) {
            for c in item?.chunks {
                mark(&c.0);
            }
        }
        Ok(())
    };
    for entry in &repo.manifest().archives {
        mark(&entry.id);
        mark_archive(Archive::load(repo, entry)?, &mut mark)?;
    }
    let current: HashSet<Id> = repo.manifest().archives.iter().map(|e| e.id).collect();
    for id in shown.iter().filter(|id| !current.contains(id)) {
        // Loaded only if indexed: an archive object the index lacks is `unknown`.
        mark(id);
        if live.is_marked(id) {
            let what = format!("archive {} read by a mount, restore or check", id.short());
            mark_archive(Archive::load_object(repo, id, &what)?, &mut mark)?;
        }
    }
    Ok((live, unknown))
}

/// The archives the live readers (mounts, restores, checks) of the repository read, or an
/// error naming a reader that does not say which (a mount of an older garret).
fn shown_by_readers(readers: &[lock::Reader]) -> Result<Vec<Id>> {
    let mut shown = Vec::new();
    for r in readers {
        match &r.archives {
            Some(ids) => shown.extend(ids.iter().copied()),
            None => {
                return Err(Error::Usage(format!(
                    "the repository is mounted by {}, which does not say which archives it shows (an older garret): \
                     unmount it (`garret umount MOUNTPOINT`) before compacting; nothing was changed",
                    r.who
                )))
            }
        }
    }
    shown.sort();
    shown.dedup();
    Ok(shown)
}

/// Whether every live reader reads only archives in `covered` (whose data this compact keeps).
fn readers_covered(repo: &Repository, covered: &HashSet<Id>) -> bool {
    lock::readers(repo.path())
        .iter()
        .all(|r| r.archives.as_ref().is_some_and(|a| a.iter().all(|id| covered.contains(id))))
}

/// Whether pack `name` holds nothing that is not stored elsewhere: every blob of its header that
/// archives may reference is indexed in another pack. False when its header cannot be read.
fn stored_elsewhere(repo: &Repository, live: &Marks, unknown: &HashSet<Id>, name: &str) -> Result<bool> {
    let Ok((entries, _)) = repo.read_pack_header(name) else { return Ok(false) };
    let ids: Vec<Id> = entries.iter().map(|e| e.id).collect();
    let locations = repo.index().lookup_many(&ids)?;
    Ok(entries.iter().zip(locations).all(|(e, at)| match at {
        Some(at) if at.pack != name => true,
        // Indexed only here, or nowhere: it must be garbage.
        _ => !live.is_marked(&e.id) && !unknown.contains(&e.id),
    }))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Compact: rewrite packs with more than `opts.threshold_percent` garbage, delete packs with
/// none live, and delete packs condemned at least `opts.grace` ago.
pub fn run(repo: &mut Repository, opts: CompactOptions) -> Result<CompactStats> {
    // Readers: the archives they read stay live, even those no longer in the manifest.
    let shown = match shown_by_readers(&lock::readers(repo.path())) {
        Ok(shown) => shown,
        Err(e) if !opts.dry_run => return Err(e),
        Err(_) => vec![], // a dry run changes nothing: its figures leave such a mount out
    };
    let now = unix_now();
    let (live, unknown) = live_set(repo, &shown)?;
    let mut covered: HashSet<Id> = repo.manifest().archives.iter().map(|e| e.id).collect();
    let kept_for_readers = shown.iter().filter(|id| !covered.contains(id)).count() as u64;
    covered.extend(shown);
    let on_disk = repo.pack_files()?;
    let mut condemned: BTreeMap<String, u64> = repo.condemned().packs.clone();
    condemned.retain(|name, _| on_disk.contains(name));
    let packs = repo.index().pack_usage()?;
    let mut st = CompactStats {
        packs_before: packs.len() as u64,
        archives_kept_for_readers: kept_for_readers,
        ..Default::default()
    };
    let mut delete: Vec<String> = vec![];
    let mut rewrite: Vec<String> = vec![];
    // Condemned packs found in the index (a crash before they were unindexed, an index rebuilt
    // by `check --repair` or written by an older garret): unindexed once nothing in them is
    // indexed only there; otherwise they hold the one indexed copy of something and become
    // ordinary packs again.
    let mut unindex: Vec<String> = vec![];
    for (name, usage) in &packs {
        if condemned.contains_key(name) {
            if stored_elsewhere(repo, &live, &unknown, name)? {
                unindex.push(name.clone());
                continue;
            }
            condemned.remove(name);
        }
        // Garbage is the envelopes of dead blobs. The header and padding are not: counting
        // them would rewrite packs of small blobs at every run with nothing to free.
        let (mut live_bytes, mut garbage) = (0u64, 0u64);
        for (id, len) in &usage.blobs {
            *(if live.is_marked(id) { &mut live_bytes } else { &mut garbage }) += *len as u64;
        }
        if live_bytes == 0 {
            delete.push(name.clone());
            st.packs_deleted += 1;
            st.bytes_freed += usage.size;
        } else if garbage as f64 > usage.size as f64 * opts.threshold_percent / 100.0 {
            rewrite.push(name.clone());
            st.packs_rewritten += 1;
            st.bytes_rewritten += live_bytes;
            if opts.grace.is_zero() {
                st.packs_deleted += 1;
                st.bytes_freed += usage.size;
            } else {
                condemned.insert(name.clone(), now);
            }
        } else {
            st.garbage_kept += garbage;
        }
    }
    // Condemned long enough: deleted below, once checked.
    let due: Vec<String> = condemned
        .iter()
        .filter(|(name, &since)| since.saturating_add(opts.grace.as_secs()) <= now && !rewrite.contains(name))
        .map(|(name, _)| name.clone())
        .collect();
    if opts.dry_run {
        for name in &due {
            st.packs_deleted += 1;
            st.bytes_freed += repo.backend().size(&Repository::pack_key(name)).unwrap_or(0);
        }
        for name in &due {
            condemned.remove(name);
        }
        waiting(repo, &condemned, opts.grace, &mut st);
        return Ok(st);
    }
    // 1. Record the packs about to be rewritten as condemned, before anything moves: a crash
    //    from here on leaves them condemned, and a later compact deletes them only once all
    //    their blobs are indexed elsewhere.
    if condemned != repo.condemned().packs {
        repo.set_condemned(&condemned)?;
    }
    faults::crash_point("compact-condemned");
    // 2. Copy live blobs of packs to rewrite into new packs; wait until they are durable and
    //    indexed (moved blobs now point at the new packs).
    let mut moved: HashSet<Id> = HashSet::new();
    for name in &rewrite {
        for b in repo.pack_envelopes(name)? {
            if !b.is_bundle() {
                if live.is_marked(&b.id) && moved.insert(b.id) {
                    repo.add_moved(b)?;
                }
                continue;
            }
            let keep: Vec<blob::Member> =
                b.members.iter().filter(|m| live.is_marked(&m.id) && !moved.contains(&m.id)).copied().collect();
            moved.extend(keep.iter().map(|m| m.id));
            if keep.len() == b.members.len() {
                repo.add_moved(b)?;
            } else if !keep.is_empty() {
                repo.add_moved(rebundle(repo, b, &keep))?;
            }
        }
    }
    repo.finish_writes()?;
    faults::crash_point("compact-rewritten");
    // 3. Unindex the old packs, then delete the files of those not kept condemned. Only while
    //    the lock is still this compact's: after a `break-lock`, a create may be counting on them.
    faults::pause_point("compact-rewritten");
    repo.check_lock()?;
    repo.unindex_packs(&rewrite.iter().chain(&delete).chain(&unindex).collect::<Vec<_>>())?;
    faults::crash_point("compact-unindexed");
    let mut doomed: Vec<String> = delete;
    if opts.grace.is_zero() {
        doomed.extend(rewrite.iter().cloned());
    }
    for name in due {
        if stored_elsewhere(repo, &live, &unknown, &name)? {
            doomed.push(name);
        } else {
            // Its blobs' other copies are gone: it is the copy now, and reconciliation
            // indexes it again once it is no longer condemned.
            repo.warnings
                .push(format!("condemned pack {name} holds blobs stored nowhere else; it is kept and indexed again"));
            condemned.remove(&name);
        }
    }
    for name in &doomed {
        // A reader that started meanwhile may read an archive whose data this compact does not
        // keep: leave the rest (unindexed garbage, which the next compact deletes).
        if !readers_covered(repo, &covered) {
            break;
        }
        repo.check_lock()?;
        let size = repo.backend().size(&Repository::pack_key(name)).unwrap_or(0);
        repo.delete_pack(name)?;
        if condemned.remove(name).is_some() {
            st.packs_deleted += 1;
            st.bytes_freed += size;
        }
        faults::crash_point("compact-deleted");
    }
    // 4. The packs of this run were condemned when their copies became durable, now.
    for name in &rewrite {
        if let Some(since) = condemned.get_mut(name) {
            *since = unix_now();
        }
    }
    if condemned != repo.condemned().packs {
        repo.set_condemned(&condemned)?;
    }
    waiting(repo, &condemned, opts.grace, &mut st);
    Ok(st)
}

/// Bundle `b` sealed again with only its members `keep`, so that the space of the others is
/// freed and their data is gone. Should the bundle not open (damage that `check` reports), it is
/// copied as it is: its live members are no worse off than before.
fn rebundle(repo: &Repository, b: SealedBlob, keep: &[blob::Member]) -> SealedBlob {
    let keys = repo.keys();
    let taken: Option<Vec<(Id, Vec<u8>)>> = blob::open_bundle(keys, b.envelope.clone()).ok().and_then(|content| {
        keep.iter()
            .map(|m| blob::member(keys, &content, &m.id, m.start, m.len).ok().map(|d| (m.id, d.to_vec())))
            .collect()
    });
    match taken {
        Some(mut chunks) if chunks.len() == 1 => {
            let (id, data) = chunks.pop().expect("one");
            blob::seal(keys, ObjectType::Data, id, &data, Compression::default())
        }
        Some(chunks) => blob::seal_bundle(keys, chunks, Compression::default()),
        None => b,
    }
}

/// Fill in what stays condemned after this run.
fn waiting(repo: &Repository, condemned: &BTreeMap<String, u64>, grace: Duration, st: &mut CompactStats) {
    st.packs_condemned = condemned.len() as u64;
    st.bytes_condemned =
        condemned.keys().map(|n| repo.backend().size(&Repository::pack_key(n)).unwrap_or(0)).sum::<u64>();
    st.next_deletion = condemned.values().min().map(|s| s.saturating_add(grace.as_secs()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods_parse_with_borg_units() {
        assert_eq!(parse_grace("0"), Ok(Duration::ZERO));
        assert_eq!(parse_grace("90S"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_grace("30M"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_grace("12H"), Ok(DEFAULT_GRACE));
        assert_eq!(parse_grace("2d"), Ok(Duration::from_secs(2 * 86400)));
        assert_eq!(parse_grace("1w"), Ok(Duration::from_secs(7 * 86400)));
        for bad in ["", "12", "12h", "-1H", "H", "99999999999999999999w"] {
            assert!(parse_grace(bad).is_err(), "{bad:?}");
        }
    }
}
