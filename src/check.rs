//! `check`: verify that the repository is whole and every archive restorable, and say exactly
//! what is damaged.
//!
//! Levels: the repository level decrypts every pack header and compares it with the index (each
//! indexed blob must sit where the index says, within a pack whose header lists it); the archive
//! level decodes every archive and item and checks every referenced chunk is indexed with the
//! right length; `verify_data` reads every pack whole and opens every blob (decrypt, decompress,
//! re-hash), spread over cores; a pack whose blobs leave bytes uncovered is also hashed against
//! its name (BLAKE3 of its bytes), the only check that reaches those bytes. `max_duration` stops the
//! data verification after that long and remembers where, so the next run resumes there.

use crate::archive::Archive;
use crate::backend::LocalBackend;
use crate::blob;
use crate::crypto::Keys;
use crate::error::Result;
use crate::faults;
use crate::id::{Id, ObjectType};
use crate::known::Marks;
use crate::pack;
use crate::repository::Repository;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What verifying one pack found.
struct PackVerdict {
    blobs: u64,
    bytes: u64,
    /// Blobs that failed to open, with why.
    failures: Vec<(Id, String)>,
    /// The pack's bytes hash to its name.
    name_ok: bool,
}

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    pub repository: bool,
    pub archives: bool,
    pub verify_data: bool,
    /// Only these archives (archive level); `None`: all of them.
    pub only: Option<Vec<String>>,
    pub max_duration: Option<Duration>,
    /// Where partial verification remembers its position.
    pub state_dir: Option<PathBuf>,
}

/// A damaged archive and what in it is affected.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DamagedArchive {
    pub name: String,
    /// Files (paths, lossily decoded) with missing or corrupt chunks.
    pub files: Vec<String>,
    /// Damage to the archive object or its item stream (nothing of it may be listable).
    pub metadata: Vec<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub packs_checked: u64,
    pub blobs_checked: u64,
    pub bytes_verified: u64,
    pub archives_checked: u64,
    /// Indexed blobs no archive references (left by interrupted runs or deletions; `compact`
    /// frees them). Not an error.
    pub unreferenced_blobs: u64,
    pub damaged_archives: Vec<DamagedArchive>,
    /// Blobs that failed verification or are missing.
    pub bad_blobs: Vec<String>,
    /// Pack files with damage: pack name -> its bad blobs (empty: the whole pack is unreadable).
    pub damaged_packs: std::collections::BTreeMap<String, Vec<String>>,
    /// False when `max_duration` stopped data verification early.
    pub complete: bool,
}

impl CheckReport {
    pub fn damaged(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// Check the repository; problems go into the report, `Err` only when checking itself failed.
pub fn run(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let mut rep = CheckReport { complete: true, ..Default::default() };
    let mut bad: HashSet<Id> = HashSet::new();
    if opts.repository {
        check_packs(repo, &mut rep, &mut bad)?;
    }
    if opts.verify_data {
        verify_data(repo, opts, &mut rep, &mut bad)?;
    }
    if opts.archives || !bad.is_empty() {
        check_archives(repo, opts, &mut rep, &bad)?;
    }
    let mut b: Vec<String> = bad.iter().map(|i| i.hex()).collect();
    b.sort();
    rep.bad_blobs = b;
    Ok(rep)
}

/// Every pack header decrypts and agrees with the index.
fn check_packs(repo: &Repository, rep: &mut CheckReport, bad: &mut HashSet<Id>) -> Result<()> {
    let usage = repo.index().pack_usage()?;
    faults::pause_point("check-indexed");
    let on_disk = repo.pack_files()?;
    // Headers are read and decrypted on all cores, a window of packs at a time (memory holds
    // that window's headers, not every one); findings are reported in index order.
    let window = 8 * rayon::current_num_threads().max(1);
    for packs in usage.chunks(window) {
        let headers: Vec<Option<Header>> =
            packs.par_iter().map(|(name, _)| on_disk.contains(name).then(|| repo.read_pack_header(name))).collect();
        // A pack that is gone and no longer indexed was removed by a compact running meanwhile
        // (it unindexes before it deletes): no finding. (Rare: only then are the packs copied.)
        if headers.iter().all(|h| matches!(h, Some(Ok(_)))) {
            check_headers(packs, headers, rep, bad);
            continue;
        }
        let (packs, headers): (Vec<_>, Vec<_>) = packs
            .iter()
            .cloned()
            .zip(headers)
            .filter(|((name, _), h)| matches!(h, Some(Ok(_))) || !compacted_away(repo, name))
            .unzip();
        check_headers(&packs, headers, rep, bad);
    }
    let indexed: HashSet<&str> = usage.iter().map(|(n, _)| n.as_str()).collect();
    // Condemned packs (section 13.1) are left out of the index on purpose. A pack that is not
    // in the index read above may have been written and indexed by a create or compact running
    // meanwhile, or condemned by that compact: the index and the records are read again.
    let mut unindexed: Vec<&String> = on_disk.iter().filter(|n| !indexed.contains(n.as_str())).collect();
    if !unindexed.is_empty() {
        let indexed_now = repo.index().pack_names()?;
        let condemned_now = repo.condemned_now()?;
        unindexed.retain(|n| !indexed_now.contains(*n) && !condemned_now.contains_key(*n));
    }
    unindexed.sort();
    for name in unindexed {
        rep.warnings
            .push(format!("pack {name} is not indexed (unreadable header?); `check --repair` rebuilds the index"));
    }
    Ok(())
}

/// Whether pack `name`, which the index listed, has since left both `data/` and the index: a
/// compact running beside this check removed it.
fn compacted_away(repo: &Repository, name: &str) -> bool {
    !repo.backend().exists(&Repository::pack_key(name)) && repo.index().pack_names().is_ok_and(|n| !n.contains(name))
}

/// A pack's header entries and file size, as read from the pack.
type Header = Result<(Vec<pack::PackEntry>, u64)>;

/// Compare what the index says of `packs` with their `headers` (`None`: the file is missing).
fn check_headers(
    packs: &[(String, crate::index::PackUsage)],
    headers: Vec<Option<Header>>,
    rep: &mut CheckReport,
    bad: &mut HashSet<Id>,
) {
    for ((name, u), header) in packs.iter().zip(headers) {
        rep.packs_checked += 1;
        let entries = match header {
            None => {
                rep.errors.push(format!("pack {name} is indexed but missing from data/"));
                bad.extend(u.blobs.iter().map(|b| b.0));
                continue;
            }
            Some(Ok((entries, size))) => {
                if size != u.size {
                    rep.errors.push(format!("pack {name} is {size} bytes, the index says {}", u.size));
                }
                entries
            }
            Some(Err(e)) => {
                rep.errors.push(format!("pack {name}: {e}"));
                bad.extend(u.blobs.iter().map(|b| b.0));
                rep.damaged_packs.entry(name.clone()).or_default();
                continue;
            }
        };
        // The index holds each blob's stored share (a bundle's envelope shared out).
        let shares = pack::stored_shares(&entries);
        let by_id: HashMap<Id, u32> = entries.iter().zip(shares).map(|(e, share)| (e.id, share)).collect();
        for (id, len) in &u.blobs {
            rep.blobs_checked += 1;
            match by_id.get(id) {
                Some(share) if share == len => {}
                Some(_) => {
                    rep.errors.push(format!(
                        "blob {} in pack {name}: index and pack header disagree on its length",
                        id.hex()
                    ));
                    bad.insert(*id);
                }
                None => {
                    rep.errors
                        .push(format!("blob {} is indexed in pack {name}, whose header does not list it", id.hex()));
                    bad.insert(*id);
                }
            }
        }
    }
}

fn progress_file(opts: &CheckOptions, repo: &Repository) -> Option<PathBuf> {
    opts.state_dir.as_ref().map(|d| d.join(&repo.config().id).join("check-position"))
}

/// Read every pack whole, verify its name and every blob in it.
fn verify_data(repo: &Repository, opts: &CheckOptions, rep: &mut CheckReport, bad: &mut HashSet<Id>) -> Result<()> {
    let started = Instant::now();
    // Only the names are held: what the index says of a pack's blobs is looked up when the
    // pack turns out damaged (rare), not kept for every blob of the repository.
    let mut names: Vec<String> = repo.index().pack_names()?.into_iter().collect();
    names.sort();
    faults::pause_point("check-verify-listed");
    let indexed_here =
        |id: &Id, name: &str| -> Result<bool> { Ok(repo.index().lookup(id)?.is_some_and(|loc| loc.pack == name)) };
    let pos_file = progress_file(opts, repo);
    if opts.max_duration.is_some() {
        if let Some(last) = pos_file.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            let last = last.trim().to_string();
            names.retain(|n| *n > last);
        }
    }
    // Packs in slices so that the time limit is checked between slices; each slice in parallel.
    // Without a limit, one slice: no barrier where a core would wait for the slowest pack.
    let slice_len = if opts.max_duration.is_some() { 8 } else { names.len().max(1) };
    // Packs that could not be read at all: every blob the index places in them is bad.
    let mut unreadable: HashSet<String> = HashSet::new();
    for (n, slice) in names.chunks(slice_len).enumerate() {
        if let Some(max) = opts.max_duration {
            // At least one slice per run, so that even a tiny limit makes progress.
            if n > 0 && started.elapsed() >= max {
                rep.complete = false;
                break;
            }
        }
        let (keys, backend) = (repo.keys(), repo.backend());
        let results: Vec<(String, Result<PackVerdict>)> =
            slice.par_iter().map(|name| (name.clone(), verify_pack(keys, backend, name))).collect();
        for (name, r) in results {
            match r {
                Ok(v) => {
                    rep.blobs_checked += v.blobs;
                    rep.bytes_verified += v.bytes;
                    let mut indexed_failures = 0;
                    for (id, why) in v.failures {
                        if indexed_here(&id, &name)? {
                            indexed_failures += 1;
                            rep.errors.push(format!("blob {} in pack {name}: {why}", id.hex()));
                            bad.insert(id);
                            rep.damaged_packs.entry(name.clone()).or_default().push(id.hex());
                        } else {
                            rep.warnings.push(format!(
                                "pack {name}: blob {} is corrupt but no longer indexed (dropped by a repair; compact removes it)",
                                id.hex()
                            ));
                        }
                    }
                    if !v.name_ok && indexed_failures == 0 {
                        rep.warnings.push(format!(
                            "pack {name}: contents do not hash to its name, but every indexed blob in it is intact"
                        ));
                    }
                }
                Err(_) if compacted_away(repo, &name) => {}
                Err(e) => {
                    rep.errors.push(format!("pack {name}: {e}"));
                    unreadable.insert(name.clone());
                    rep.damaged_packs.entry(name.clone()).or_default();
                }
            }
        }
        if let (Some(p), Some(last)) = (&pos_file, slice.last()) {
            if opts.max_duration.is_some() {
                let _ = std::fs::create_dir_all(p.parent().expect("has parent"));
                let _ = std::fs::write(p, last);
            }
        }
    }
    if !unreadable.is_empty() {
        for (name, u) in repo.index().pack_usage()? {
            if unreadable.contains(&name) {
                bad.extend(u.blobs.iter().map(|b| b.0));
            }
        }
    }
    if rep.complete {
        if let Some(p) = &pos_file {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(())
}

thread_local! {
    /// A pack and a plaintext buffer per verifying thread, reused from pack to pack: fresh 8 MiB
    /// buffers cost a page fault and a page clear per 4 KiB, about a tenth of verify-data's time.
    static VERIFY_BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Verify one pack: (blobs verified, bytes, failures).
fn verify_pack(keys: &Keys, backend: &LocalBackend, name: &str) -> Result<PackVerdict> {
    VERIFY_BUFFERS.with(|cell| {
        let (bytes, scratch) = &mut *cell.borrow_mut();
        backend.get_into(&Repository::pack_key(name), bytes)?;
        let entries = pack::parse_pack(keys, bytes, name)?;
        // Where the blobs tile the blob area, every byte of the pack is covered by an
        // authentication tag (blob envelopes, header envelope; the trailer locates the header),
        // so hashing the whole pack against its name would find nothing more. Only packs with
        // bytes outside every blob are hashed.
        let tail = bytes.len() - 4; // parse_pack checked the trailer
        let blob_area = tail - pack::header_length(&bytes[tail..], bytes.len() as u64, name)?;
        let name_ok = tiles_blob_area(&entries, blob_area as u64) || blake3::hash(bytes).to_hex().as_str() == name;
        let mut failures = vec![];
        // Members of a bundle share its envelope, which is decrypted in place once: in offset
        // order they come one after another, and the bundle opened for the first serves the rest.
        let mut order: Vec<&pack::PackEntry> = entries.iter().collect();
        order.sort_by_key(|e| (e.offset, e.within));
        let mut bundle: Option<((u64, u32), std::result::Result<(), String>)> = None;
        for e in order {
            // parse_pack checked that every entry lies within the pack.
            let env = &mut bytes[e.offset as usize..(e.offset + e.length as u64) as usize];
            let Some(start) = e.within else {
                let kind = ObjectType::from_u8(e.kind).unwrap_or(ObjectType::Data);
                match blob::verify_in_place(keys, kind, &e.id, env, scratch) {
                    Ok(n) if n as u32 == e.raw_length => {}
                    Ok(_) => failures.push((e.id, "plaintext length differs from the pack header".into())),
                    Err(err) => failures.push((e.id, err.to_string())),
                }
                continue;
            };
            if bundle.as_ref().map(|b| b.0) != Some(e.span()) {
                let opened = blob::open_bundle_in_place(keys, env, scratch).map_err(|err| err.to_string());
                bundle = Some((e.span(), opened));
            }
            match &bundle.as_ref().expect("just set").1 {
                Ok(()) => {
                    if let Err(err) = blob::member(keys, scratch, &e.id, start, e.raw_length) {
                        failures.push((e.id, err.to_string()));
                    }
                }
                Err(why) => failures.push((e.id, why.clone())),
            }
        }
        Ok(PackVerdict { blobs: entries.len() as u64, bytes: bytes.len() as u64, failures, name_ok })
    })
}

/// Whether `entries` cover the blob area (`0..blob_area`, before the header envelope) exactly:
/// contiguous from offset 0, no gap, no overlap (the entries of a bundle's members name the same
/// envelope).
fn tiles_blob_area(entries: &[pack::PackEntry], blob_area: u64) -> bool {
    let mut spans: Vec<(u64, u64)> = entries.iter().map(|e| (e.offset, e.length as u64)).collect();
    spans.sort_unstable();
    // The members of a bundle share one envelope.
    spans.dedup();
    let mut end = 0u64;
    for (offset, length) in spans {
        if offset != end {
            return false;
        }
        end = offset + length;
    }
    end == blob_area
}

/// Every archive decodes, and every chunk it references is indexed (and not known bad).
fn check_archives(repo: &Repository, opts: &CheckOptions, rep: &mut CheckReport, bad: &HashSet<Id>) -> Result<()> {
    let referenced = Marks::new(repo.index().known_blobs()?);
    // Whether the repository has `id` undamaged.
    let refer = |id: &Id| referenced.mark(id) && !bad.contains(id);
    let entries: Vec<_> = match &opts.only {
        Some(names) => names.iter().map(|n| crate::archive::lookup(repo, n).cloned()).collect::<Result<_>>()?,
        None => repo.manifest().archives.clone(),
    };
    // Archives are read a few at a time in parallel (each one's item stream in order); findings
    // are reported in archive order.
    for batch in entries.chunks(rayon::current_num_threads().max(1)) {
        let per_archive: Vec<DamagedArchive> = batch
            .par_iter()
            .map(|entry| {
                let mut dmg = DamagedArchive { name: entry.name.clone(), ..Default::default() };
                refer(&entry.id);
                match Archive::load(repo, entry) {
                    Err(e) => dmg.metadata.push(format!("archive object: {e}")),
                    Ok(a) => {
                        a.items.iter().for_each(|id| {
                            refer(id);
                        });
                        for item in a.items(repo) {
                            match item {
                                Err(e) => {
                                    dmg.metadata.push(format!("item stream: {e}"));
                                    break;
                                }
                                Ok(it) => {
                                    // Every chunk is marked, also after the first missing one.
                                    let mut whole = true;
                                    for c in &it.chunks {
                                        whole &= refer(&c.0);
                                    }
                                    if !whole {
                                        dmg.files.push(it.path_lossy());
                                    }
                                }
                            }
                        }
                    }
                }
                dmg
            })
            .collect();
        for dmg in per_archive {
            rep.archives_checked += 1;
            if !dmg.files.is_empty() || !dmg.metadata.is_empty() {
                for m in &dmg.metadata {
                    rep.errors.push(format!("archive {:?}: {m}", dmg.name));
                }
                if !dmg.files.is_empty() {
                    rep.errors.push(format!(
                        "archive {:?}: {} file(s) with missing or damaged data: {}",
                        dmg.name,
                        dmg.files.len(),
                        dmg.files.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                rep.damaged_archives.push(dmg);
            }
        }
    }
    if opts.only.is_none() {
        rep.unreferenced_blobs = referenced.unmarked();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(spans: &[(u64, u32)]) -> Vec<pack::PackEntry> {
        spans
            .iter()
            .enumerate()
            .map(|(i, &(offset, length))| pack::PackEntry {
                kind: 1,
                id: Id([i as u8; 32]),
                offset,
                length,
                raw_length: 0,
                within: None,
            })
            .collect()
    }

    #[test]
    fn a_pack_is_hashed_only_when_its_blobs_leave_bytes_uncovered() {
        // written in random order, still one tiling
        assert!(tiles_blob_area(&entries(&[(100, 50), (0, 100), (150, 30)]), 180));
        assert!(tiles_blob_area(&entries(&[]), 0));
        assert!(!tiles_blob_area(&entries(&[(0, 100), (110, 70)]), 180), "a gap");
        assert!(!tiles_blob_area(&entries(&[(0, 100), (90, 90)]), 180), "an overlap");
        assert!(!tiles_blob_area(&entries(&[(0, 100), (100, 50)]), 180), "bytes before the header");
        assert!(!tiles_blob_area(&entries(&[(10, 170)]), 180), "bytes at the start");
        assert!(!tiles_blob_area(&entries(&[]), 28), "no blob, some bytes");
        // the members of a bundle name one envelope
        assert!(tiles_blob_area(&entries(&[(0, 100), (100, 80), (0, 100), (0, 100)]), 180));
    }

    /// A pack of two blobs, with `gap` bytes between them; stored under its name.
    fn store_pack(keys: &Keys, backend: &LocalBackend, gap: usize, flip_at: Option<usize>) -> String {
        use crate::compress::Compression;
        let mut bytes = Vec::new();
        let mut listed = Vec::new();
        for (i, data) in [b"first blob".repeat(50), b"second blob".repeat(70)].iter().enumerate() {
            if i == 1 {
                bytes.resize(bytes.len() + gap, 0);
            }
            let b = blob::seal(keys, ObjectType::Data, keys.blob_id(data), data, Compression::Zstd(3));
            listed.push(pack::PackEntry {
                kind: 1,
                id: b.id,
                offset: bytes.len() as u64,
                length: b.envelope.len() as u32,
                raw_length: b.raw_len,
                within: None,
            });
            bytes.extend_from_slice(&b.envelope);
        }
        let gap_at = listed[0].length as usize;
        for part in pack::seal_header(keys, &listed) {
            bytes.extend_from_slice(&part);
        }
        let name = blake3::hash(&bytes).to_hex().to_string();
        if let Some(at) = flip_at {
            bytes[gap_at + at] ^= 1;
        }
        backend.put(&Repository::pack_key(&name), &bytes).unwrap();
        name
    }

    #[test]
    fn bytes_outside_every_blob_are_checked_against_the_pack_name() {
        let keys = Keys::derive(&crate::crypto::MasterKey::generate(), Id([1; 32]), 1);
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let verdict = |name: &str| verify_pack(&keys, &backend, name).unwrap();
        // tiled: intact, and a flipped bit in a blob is that blob's failure
        let v = verdict(&store_pack(&keys, &backend, 0, None));
        assert!(v.name_ok && v.failures.is_empty() && v.blobs == 2);
        let v = verdict(&store_pack(&keys, &backend, 0, Some(5)));
        assert_eq!(v.failures.len(), 1, "the second blob fails authentication");
        // a gap: intact, then a flipped bit in the gap (no blob fails) is caught by the name
        let v = verdict(&store_pack(&keys, &backend, 16, None));
        assert!(v.name_ok && v.failures.is_empty());
        let v = verdict(&store_pack(&keys, &backend, 16, Some(3)));
        assert!(!v.name_ok && v.failures.is_empty(), "corruption outside every blob is found");
    }
}
