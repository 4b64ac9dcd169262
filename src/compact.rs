//! `compact`: give back the space of blobs no archive references.
//!
//! Mark and sweep, no reference counters: the live set is computed from the current manifest's
//! archives (archive objects, their tree chunks, and every chunk their items name). Packs with no
//! live blob are deleted; packs whose garbage exceeds the threshold are rewritten (their live
//! envelopes copied as they are into new packs). Order, for crash safety: new packs are durable
//! and indexed (pointing the moved blobs at them) before any old pack is removed from the index,
//! and old pack files are deleted last. A crash at any point leaves every live blob readable.

use crate::archive::Archive;
use crate::error::{Error, Result};
use crate::faults;
use crate::id::Id;
use crate::known::Marks;
use crate::repository::{lock, Repository};
use std::collections::HashSet;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    pub packs_before: u64,
    pub packs_deleted: u64,
    pub packs_rewritten: u64,
    /// Bytes of pack files removed (deleted and rewritten originals).
    pub bytes_freed: u64,
    /// Live bytes copied into new packs.
    pub bytes_rewritten: u64,
    /// Bytes of garbage left in packs below the threshold.
    pub garbage_kept: u64,
}

/// Every blob of the repository that the current archives reference, marked.
pub fn live_set(repo: &Repository) -> Result<Marks> {
    let live = Marks::new(repo.index().known_blobs()?);
    for entry in &repo.manifest().archives {
        live.mark(&entry.id);
        let archive = Archive::load(repo, entry)?;
        for id in &archive.items {
            live.mark(id);
        }
        for item in archive.items(repo) {
            for c in item?.chunks {
                live.mark(&c.0);
            }
        }
    }
    Ok(live)
}

/// Compact with a rewrite threshold in percent of garbage per pack; `dry_run` only computes.
pub fn run(repo: &mut Repository, threshold_percent: f64, dry_run: bool) -> Result<CompactStats> {
    let readers = lock::live_readers(repo.path());
    if !readers.is_empty() && !dry_run {
        return Err(Error::Usage(format!(
            "the repository is mounted by {}: unmount it (`garret umount MOUNTPOINT`) before compacting; nothing was changed",
            readers.join(", ")
        )));
    }
    let live = live_set(repo)?;
    let packs = repo.index().pack_usage()?;
    let mut st = CompactStats { packs_before: packs.len() as u64, ..Default::default() };
    let mut delete: Vec<String> = vec![];
    let mut rewrite: Vec<String> = vec![];
    for (name, usage) in &packs {
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
        } else if garbage as f64 > usage.size as f64 * threshold_percent / 100.0 {
            rewrite.push(name.clone());
            st.packs_rewritten += 1;
            st.bytes_freed += usage.size;
            st.bytes_rewritten += live_bytes;
        } else {
            st.garbage_kept += garbage;
        }
    }
    if dry_run {
        return Ok(st);
    }
    // 1. Copy live blobs of packs to rewrite into new packs; wait until they are durable and
    //    indexed (moved blobs now point at the new packs).
    let mut moved: HashSet<Id> = HashSet::new();
    for name in &rewrite {
        for b in repo.pack_envelopes(name)? {
            if live.is_marked(&b.id) && moved.insert(b.id) {
                repo.add_moved(b)?;
            }
        }
    }
    repo.finish_writes()?;
    faults::crash_point("compact-rewritten");
    // 2. Unindex the old packs, then delete their files.
    repo.unindex_packs(&rewrite.iter().chain(&delete).collect::<Vec<_>>())?;
    faults::crash_point("compact-unindexed");
    for name in rewrite.iter().chain(&delete) {
        // A mount that started meanwhile may still read these packs: leave them (unindexed
        // garbage, which the next compact deletes).
        if !lock::live_readers(repo.path()).is_empty() {
            break;
        }
        repo.delete_pack(name)?;
        faults::crash_point("compact-deleted");
    }
    Ok(st)
}
