//! `check --repair`: make every archive restorable again, losing nothing that is readable.
//!
//! Steps: rebuild the index from the pack files alone; verify (with `verify_data`, every blob);
//! drop blobs found corrupt from the index (packs are never deleted: a pack holding one bad blob
//! still holds good ones); then rewrite each archive that references missing data: its damaged
//! files get zero-filled chunks of the right length in place of the missing ones and keep their
//! original chunk list (`chunks_healthy`), so the rest of the archive restores. Files marked so
//! are healed by a later repair once every original chunk is back (a later create that read the
//! same data stored it again). Archives whose own metadata is unreadable are removed from the
//! manifest, since nothing of them can be listed or restored. Runs unattended: every change is a
//! new immutable object plus a manifest commit. It refuses to start while a reader (a mount, a
//! restore, a check) holds a mark, since their lookups would fail while the index is rebuilt.

use crate::archive::item::{ChunkRef, Item};
use crate::archive::stream::ItemStreamWriter;
use crate::archive::Archive;
use crate::check::{self, CheckOptions, CheckReport};
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::id::{Id, ObjectType};
use crate::repository::{lock, ArchiveEntry, Repository};
use std::collections::{HashMap, HashSet};

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RepairReport {
    /// The check that found the damage (before repair).
    pub check: CheckReport,
    pub packs_indexed: usize,
    pub unreadable_packs: usize,
    pub blobs_dropped: usize,
    /// Readable blobs copied out of damaged packs.
    pub blobs_salvaged: usize,
    /// Damaged pack files moved to quarantine/.
    pub packs_quarantined: Vec<String>,
    /// (archive, file) pairs whose missing ranges are now zeros.
    pub zero_filled: Vec<(String, String)>,
    /// (archive, file) pairs healed: all original chunks were back.
    pub healed: Vec<(String, String)>,
    /// Archives removed because their metadata was unreadable.
    pub archives_removed: Vec<String>,
    /// Archives whose item stream ended early: items after the damage are lost.
    pub archives_truncated: Vec<String>,
}

pub fn run(repo: &mut Repository, verify_data: bool, state_dir: Option<std::path::PathBuf>) -> Result<RepairReport> {
    // The index is rebuilt from nothing: a mount, restore or check looking blobs up meanwhile
    // would find them missing until the rebuild reached their packs.
    let readers = lock::live_readers(repo.path());
    if !readers.is_empty() {
        return Err(Error::Usage(format!(
            "the repository is being read by {} (a mount, restore or check), whose reads would fail while \
             the index is rebuilt: unmount or wait for it (`garret break-lock` removes the marks of readers \
             that died on another host); nothing was changed",
            readers.join(", ")
        )));
    }
    let mut rep = RepairReport::default();
    let (indexed, unreadable) = repo.rebuild_index()?;
    rep.packs_indexed = indexed;
    rep.unreadable_packs = unreadable;
    let opts =
        CheckOptions { repository: true, archives: true, verify_data, only: None, max_duration: None, state_dir };
    rep.check = check::run(repo, &opts)?;
    let bad: Vec<Id> = rep.check.bad_blobs.iter().filter_map(|h| Id::from_hex(h)).collect();
    rep.blobs_dropped = bad.len();
    repo.unindex_blobs(&bad)?;
    // Salvage damaged packs: every blob that still opens is copied into a new pack, then the
    // damaged file is moved to quarantine/ (kept, never deleted, but no longer read or indexed:
    // a later index rebuild must not pick its corrupt copies).
    let bad_set: HashSet<Id> = bad.iter().copied().collect();
    for name in rep.check.damaged_packs.keys() {
        if let Ok(blobs) = repo.pack_envelopes(name) {
            for b in blobs {
                let stored = b.stored();
                if stored.iter().all(|s| !bad_set.contains(&s.0)) && crate::blob::opens(repo.keys(), &b) {
                    rep.blobs_salvaged += stored.len();
                    repo.add_moved(b)?;
                }
            }
        }
        repo.finish_writes()?;
        repo.unindex_pack(name)?;
        repo.quarantine_pack(name)?;
        rep.packs_quarantined.push(name.clone());
    }

    let mut zero_ids: HashMap<u32, Id> = HashMap::new();
    let mut new_entries: Vec<ArchiveEntry> = Vec::new();
    let mut changed_any = false;
    for entry in repo.manifest().archives.clone() {
        let archive = match Archive::load(repo, &entry) {
            Ok(a) => a,
            Err(_) => {
                rep.archives_removed.push(entry.name.clone());
                changed_any = true;
                continue;
            }
        };
        let mut items: Vec<Item> = Vec::new();
        let mut truncated = false;
        for it in archive.items(repo) {
            match it {
                Ok(i) => items.push(i),
                Err(_) => {
                    truncated = true;
                    break;
                }
            }
        }
        let known = repo.known_blobs()?.clone();
        let mut changed = truncated;
        for it in &mut items {
            // heal: every original chunk is back
            if !it.chunks_healthy.is_empty() && it.chunks_healthy.iter().all(|c| known.contains_key(&c.0)) {
                it.chunks = std::mem::take(&mut it.chunks_healthy);
                rep.healed.push((entry.name.clone(), it.path_lossy()));
                changed = true;
                continue;
            }
            if it.chunks.iter().any(|c| !known.contains_key(&c.0)) {
                if it.chunks_healthy.is_empty() {
                    it.chunks_healthy = it.chunks.clone();
                }
                let mut fixed = Vec::with_capacity(it.chunks.len());
                for c in &it.chunks {
                    if known.contains_key(&c.0) {
                        fixed.push(*c);
                    } else {
                        let zid = match zero_ids.get(&c.1) {
                            Some(z) => *z,
                            None => {
                                let (z, _) =
                                    repo.save_blob(ObjectType::Data, &vec![0u8; c.1 as usize], Compression::Zstd(3))?;
                                zero_ids.insert(c.1, z);
                                z
                            }
                        };
                        fixed.push(ChunkRef(zid, c.1));
                    }
                }
                it.chunks = fixed;
                rep.zero_filled.push((entry.name.clone(), it.path_lossy()));
                changed = true;
            }
        }
        if truncated {
            rep.archives_truncated.push(entry.name.clone());
        }
        if !changed {
            new_entries.push(entry);
            continue;
        }
        changed_any = true;
        let mut w = ItemStreamWriter::new(repo);
        for it in &items {
            w.push(repo, it)?;
        }
        let (tree, _, _) = w.finish(repo)?;
        let mut a = archive.clone();
        a.items = tree;
        let (id, _) = a.save(repo)?;
        new_entries.push(ArchiveEntry { id, ..entry });
    }
    if changed_any {
        repo.commit(new_entries)?;
    } else {
        repo.finish_writes()?;
    }
    Ok(rep)
}
