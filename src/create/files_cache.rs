//! The files cache: what each file looked like (size, mtime, ctime, inode) when it was last
//! archived, and its chunk list, so an unchanged file is not read again.
//!
//! It lives on the client (`$GARRET_CACHE_DIR/<repository id>/files`), is written only after a
//! successful commit, and can never cause a wrong backup: an entry is used only when every
//! selected attribute matches, and the caller checks that every chunk it names is still in the
//! repository. A missing, damaged or foreign cache is simply ignored (everything is read).
//!
//! File layout (client-local, not part of the repository format), little-endian:
//! `"GARRETFC"`, version u32, record count u64, chunk count u64; the records, sorted by key, each
//! [`RECORD_LEN`] bytes: 16-byte path key (BLAKE3 of the absolute path, so the cache holds no path
//! names), size u64, mtime i64, ctime i64 (ns), inode u64, age u8, flags u8 (bit 0: the file had
//! no extended attributes; 0 in caches written before 2026-11-26, meaning "not known"), 2 zero
//! bytes, first chunk u64,
//! chunk count u32, 4 zero bytes; then the chunks, each a 32-byte id and a u32 length; then the
//! BLAKE3 hash of everything before it. The file is loaded in one read and searched in place
//! (binary search; no map is built), so a million files cost their 64-byte records, not a hash
//! map's worth of allocations; it is written streaming, by merging this run's sorted entries
//! with the older ones.

// `struct stat` field types differ between architectures: casts that are no-ops on x86_64 are not
// no-ops everywhere.
#![allow(clippy::unnecessary_cast)]

use crate::archive::item::ChunkRef;
use crate::client_file;
use crate::error::Result;
use crate::id::Id;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Runs an entry survives without its file being seen (alternating jobs share one cache).
pub const MAX_AGE: u8 = 20;
const MAGIC: &[u8; 8] = b"GARRETFC";
const VERSION: u32 = 3;
const HEADER_LEN: usize = 8 + 4 + 8 + 8;
pub const RECORD_LEN: usize = 64;
/// Record flag: the file had no extended attributes when it was archived.
const FLAG_NO_XATTRS: u8 = 1;
const CHUNK_LEN: usize = 32 + 4;
const HASH_LEN: usize = 32;

/// Which attributes must match for a cache hit (`--files-cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    pub ctime: bool,
    pub mtime: bool,
    pub size: bool,
    pub inode: bool,
}

impl Mode {
    pub const DEFAULT: Mode = Mode { ctime: true, mtime: false, size: true, inode: true };
}

/// `ctime,size,inode` (default), `mtime,size`, ..., or `disabled` (None).
pub fn parse_mode(s: &str) -> std::result::Result<Option<Mode>, String> {
    if s == "disabled" {
        return Ok(None);
    }
    let mut m = Mode { ctime: false, mtime: false, size: false, inode: false };
    for part in s.split(',') {
        match part {
            "ctime" => m.ctime = true,
            "mtime" => m.mtime = true,
            "size" => m.size = true,
            "inode" => m.inode = true,
            _ => {
                return Err(format!(
                    "invalid --files-cache {s:?}: use a comma list of ctime, mtime, size, inode, or disabled"
                ))
            }
        }
    }
    if m.ctime && m.mtime {
        return Err("--files-cache: choose ctime or mtime, not both".into());
    }
    if !m.ctime && !m.mtime {
        return Err("--files-cache: include ctime or mtime".into());
    }
    Ok(Some(m))
}

/// What a file looked like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime: i64,
    pub ctime: i64,
    pub inode: u64,
}

impl Stamp {
    pub fn of(st: &rustix::fs::Stat) -> Stamp {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Stamp {
            size: st.st_size as u64,
            mtime: ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: ns(st.st_ctime as i64, st.st_ctime_nsec as i64),
            inode: st.st_ino as u64,
        }
    }

    fn matches(&self, other: &Stamp, m: Mode) -> bool {
        (!m.size || self.size == other.size)
            && (!m.inode || self.inode == other.inode)
            && (!m.ctime || self.ctime == other.ctime)
            && (!m.mtime || self.mtime == other.mtime)
    }
}

/// The cache key of a file's absolute path: 16 bytes of its BLAKE3 hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PathKey([u8; 16]);

impl PathKey {
    pub fn of(path: &[u8]) -> PathKey {
        Self::of_parts(&[path])
    }

    /// The key of the concatenation of `parts`, without building it.
    pub fn of_parts(parts: &[&[u8]]) -> PathKey {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(p);
        }
        let mut k = [0u8; 16];
        k.copy_from_slice(&h.finalize().as_bytes()[..16]);
        PathKey(k)
    }
}

/// What the cache knows about a path.
pub enum Lookup {
    /// Unchanged: these are its chunks. `no_xattrs`: it had no extended attributes then and its
    /// ctime is unchanged, so it has none now (setting or removing one changes the ctime), and
    /// they need not be listed again.
    Hit { chunks: Vec<ChunkRef>, no_xattrs: bool },
    /// Known, but it looks different now.
    Changed,
    /// Never archived (or forgotten).
    Absent,
}

/// A record of the loaded file, decoded.
struct Record {
    key: PathKey,
    stamp: Stamp,
    age: u8,
    no_xattrs: bool,
    first: u64,
    n: u32,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn decode_record(r: &[u8]) -> Record {
    Record {
        key: PathKey(r[..16].try_into().expect("16 bytes")),
        stamp: Stamp {
            size: u64_at(r, 16),
            mtime: u64_at(r, 24) as i64,
            ctime: u64_at(r, 32) as i64,
            inode: u64_at(r, 40),
        },
        age: r[48],
        no_xattrs: r[49] & FLAG_NO_XATTRS != 0,
        first: u64_at(r, 52),
        n: u32::from_le_bytes(r[60..64].try_into().expect("4 bytes")),
    }
}

fn encode_record(key: &PathKey, s: &Stamp, age: u8, no_xattrs: bool, first: u64, n: u32) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[..16].copy_from_slice(&key.0);
    r[16..24].copy_from_slice(&s.size.to_le_bytes());
    r[24..32].copy_from_slice(&s.mtime.to_le_bytes());
    r[32..40].copy_from_slice(&s.ctime.to_le_bytes());
    r[40..48].copy_from_slice(&s.inode.to_le_bytes());
    r[48] = age;
    if no_xattrs {
        r[49] = FLAG_NO_XATTRS;
    }
    r[52..60].copy_from_slice(&first.to_le_bytes());
    r[60..64].copy_from_slice(&n.to_le_bytes());
    r
}

fn decode_chunks(b: &[u8]) -> Vec<ChunkRef> {
    b.chunks_exact(CHUNK_LEN)
        .map(|c| {
            let id = Id(c[..32].try_into().expect("32 bytes"));
            ChunkRef(id, u32::from_le_bytes(c[32..].try_into().expect("4 bytes")))
        })
        .collect()
}

/// The loaded cache file, checked whole once: records sorted by key, chunk lists in bounds.
struct Loaded {
    buf: Vec<u8>,
    records: usize,
    chunks_at: usize,
}

impl Loaded {
    fn parse(buf: Vec<u8>) -> Option<Loaded> {
        let body = buf.len().checked_sub(HASH_LEN)?;
        if body < HEADER_LEN || blake3::hash(&buf[..body]).as_bytes() != &buf[body..] {
            return None;
        }
        if &buf[..8] != MAGIC || u32::from_le_bytes(buf[8..12].try_into().ok()?) != VERSION {
            return None;
        }
        let records = usize::try_from(u64_at(&buf, 12)).ok()?;
        let chunks = u64_at(&buf, 20);
        let chunks_at = records.checked_mul(RECORD_LEN)?.checked_add(HEADER_LEN)?;
        let end = usize::try_from(chunks).ok()?.checked_mul(CHUNK_LEN)?.checked_add(chunks_at)?;
        if end != body {
            return None;
        }
        let l = Loaded { buf, records, chunks_at };
        let mut prev: Option<PathKey> = None;
        for i in 0..records {
            let r = l.record(i);
            if prev.is_some_and(|p| p >= r.key) || r.first.checked_add(r.n as u64).is_none_or(|e| e > chunks) {
                return None;
            }
            prev = Some(r.key);
        }
        Some(l)
    }

    fn empty() -> Loaded {
        Loaded { buf: Vec::new(), records: 0, chunks_at: HEADER_LEN }
    }

    fn record(&self, i: usize) -> Record {
        decode_record(&self.buf[HEADER_LEN + i * RECORD_LEN..HEADER_LEN + (i + 1) * RECORD_LEN])
    }

    fn key(&self, i: usize) -> PathKey {
        let at = HEADER_LEN + i * RECORD_LEN;
        PathKey(self.buf[at..at + 16].try_into().expect("16 bytes"))
    }

    fn find(&self, key: &PathKey) -> Option<Record> {
        let (mut lo, mut hi) = (0, self.records);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.record(mid)),
            }
        }
        None
    }

    fn chunk_bytes(&self, r: &Record) -> &[u8] {
        let start = self.chunks_at + r.first as usize * CHUNK_LEN;
        &self.buf[start..start + r.n as usize * CHUNK_LEN]
    }
}

pub struct FilesCache {
    file: PathBuf,
    mode: Mode,
    loaded: Loaded,
}

impl FilesCache {
    pub fn load(cache_dir: &Path, repo_id: &str, mode: Mode) -> FilesCache {
        let file = cache_dir.join(repo_id).join("files");
        let loaded = std::fs::read(&file).ok().and_then(Loaded::parse).unwrap_or_else(Loaded::empty);
        FilesCache { file, mode, loaded }
    }

    pub fn len(&self) -> usize {
        self.loaded.records
    }

    pub fn is_empty(&self) -> bool {
        self.loaded.records == 0
    }

    /// Whether `key`'s file looks unchanged (and then its chunk list), changed, or is unknown.
    pub fn lookup(&self, key: &PathKey, stamp: &Stamp) -> Lookup {
        match self.loaded.find(key) {
            None => Lookup::Absent,
            Some(r) if r.stamp.matches(stamp, self.mode) => Lookup::Hit {
                chunks: decode_chunks(self.loaded.chunk_bytes(&r)),
                no_xattrs: r.no_xattrs && self.mode.ctime,
            },
            Some(_) => Lookup::Changed,
        }
    }

    /// Write the cache: this run's entries plus older ones not yet too old (unless that is what
    /// the file holds already). Not synced: a file torn by a crash fails its hash and is ignored
    /// next time.
    pub fn save(self, mut seen: Seen) -> Result<()> {
        seen.entries.sort_unstable_by_key(|e| e.0);
        seen.entries.dedup_by(|later, earlier| later.0 == earlier.0);
        // Same content as the file holds already (a nightly run over an unchanged tree)?
        let mut same = Compare { old: &self.loaded.buf, at: 0, same: true };
        self.write_merged(&seen, &mut same).expect("comparing in memory");
        if same.same && same.at + HASH_LEN == self.loaded.buf.len() {
            return Ok(());
        }
        let held = client_file::lock_dir(self.file.parent().expect("has parent"))?;
        client_file::replace_with(&held, &self.file, client_file::Durability::Cache, |f| {
            let mut w = Hashing { out: std::io::BufWriter::with_capacity(1 << 20, f), hash: blake3::Hasher::new() };
            self.write_merged(&seen, &mut w)?;
            let hash = w.hash.finalize();
            w.out.write_all(hash.as_bytes())?;
            w.out.flush()
        })
    }

    /// Everything before the trailing hash: the old records not seen this run (aged) merged in
    /// key order with this run's, then their chunks in the same order.
    fn write_merged(&self, seen: &Seen, w: &mut dyn Write) -> std::io::Result<()> {
        let old = &self.loaded;
        // Pass 1 decides which records survive (and so the counts for the header).
        let mut order: Vec<Source> = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < old.records || j < seen.entries.len() {
            let take_new = match (i < old.records, j < seen.entries.len()) {
                (true, true) => seen.entries[j].0 <= old.key(i),
                (false, true) => true,
                _ => false,
            };
            if take_new {
                if i < old.records && old.key(i) == seen.entries[j].0 {
                    i += 1; // replaced by this run's entry
                }
                order.push(Source::New(j));
                j += 1;
            } else {
                let r = old.record(i);
                if r.age < MAX_AGE {
                    order.push(Source::Old(i));
                }
                i += 1;
            }
        }
        let nchunks = |s: &Source| match s {
            Source::New(j) => seen.entries[*j].4 as u64,
            Source::Old(i) => old.record(*i).n as u64,
        };
        let total: u64 = order.iter().map(nchunks).sum();
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&(order.len() as u64).to_le_bytes())?;
        w.write_all(&total.to_le_bytes())?;
        let mut first = 0u64;
        for s in &order {
            let rec = match s {
                Source::New(j) => {
                    let (key, stamp, no_xattrs, _, n) = &seen.entries[*j];
                    encode_record(key, stamp, 0, *no_xattrs, first, *n)
                }
                Source::Old(i) => {
                    let r = old.record(*i);
                    encode_record(&r.key, &r.stamp, r.age + 1, r.no_xattrs, first, r.n)
                }
            };
            w.write_all(&rec)?;
            first += nchunks(s);
        }
        for s in &order {
            match s {
                Source::New(j) => {
                    let (_, _, _, start, n) = seen.entries[*j];
                    for c in &seen.chunks[start as usize..start as usize + n as usize] {
                        w.write_all(&c.0 .0)?;
                        w.write_all(&c.1.to_le_bytes())?;
                    }
                }
                Source::Old(i) => w.write_all(old.chunk_bytes(&old.record(*i)))?,
            }
        }
        Ok(())
    }
}

enum Source {
    Old(usize),
    New(usize),
}

/// The files archived in this run, gathered by the pipeline for [`FilesCache::save`]: one
/// compact entry per file and all chunk lists in one vector.
#[derive(Default)]
pub struct Seen {
    /// (key, stamp, no extended attributes, first chunk in `chunks`, chunk count)
    entries: Vec<(PathKey, Stamp, bool, u64, u32)>,
    chunks: Vec<ChunkRef>,
    /// Files whose ctime/mtime is this recent are not remembered: a change within the
    /// filesystem's timestamp granularity right after we read them would go unnoticed.
    not_after_ns: i64,
}

impl Seen {
    pub fn new() -> Seen {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        Seen { entries: Vec::new(), chunks: Vec::new(), not_after_ns: now - 1_000_000_000 }
    }

    /// Record what was archived for the file with `key` in this run.
    /// `no_xattrs`: the file was seen to have no extended attributes (false when not known).
    pub fn remember(&mut self, key: PathKey, stamp: Stamp, no_xattrs: bool, chunks: &[ChunkRef]) {
        if stamp.ctime >= self.not_after_ns || stamp.mtime >= self.not_after_ns {
            return;
        }
        self.entries.push((key, stamp, no_xattrs, self.chunks.len() as u64, chunks.len() as u32));
        self.chunks.extend_from_slice(chunks);
    }
}

/// A writer that only compares what it is given with `old` at the same offsets.
struct Compare<'a> {
    old: &'a [u8],
    at: usize,
    same: bool,
}

impl Write for Compare<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.same {
            self.same = self.old.get(self.at..self.at + b.len()) == Some(b);
        }
        self.at += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes what it writes.
struct Hashing<W: Write> {
    out: W,
    hash: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(b)?;
        self.hash.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("ctime,size,inode").unwrap(), Some(Mode::DEFAULT));
        assert_eq!(parse_mode("disabled").unwrap(), None);
        assert!(parse_mode("size").is_err());
        assert!(parse_mode("ctime,bogus").is_err());
    }

    fn hit(l: Lookup) -> Option<Vec<ChunkRef>> {
        match l {
            Lookup::Hit { chunks, .. } => Some(chunks),
            _ => None,
        }
    }

    fn k(p: &str) -> PathKey {
        PathKey::of(p.as_bytes())
    }

    const S1: Stamp = Stamp { size: 1, mtime: 1, ctime: 1, inode: 1 };

    /// Save a cache under `dir` holding these paths (all with stamp [`S1`]) and chunk lists.
    fn save_entries(dir: &Path, entries: &[(&str, &[ChunkRef])]) {
        let mut seen = Seen::new();
        for (p, chunks) in entries {
            seen.remember(k(p), S1, false, chunks);
        }
        FilesCache::load(dir, "r", Mode::DEFAULT).save(seen).unwrap();
    }

    #[test]
    fn hit_only_when_stamp_matches_and_old_enough() {
        let d = tempfile::tempdir().unwrap();
        let c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
        let s = Stamp { size: 5, mtime: 1_000, ctime: 2_000, inode: 7 };
        let recent = Stamp { ctime: i64::MAX - 1, ..s };
        let chunks = vec![ChunkRef(Id([1; 32]), 3), ChunkRef(Id([2; 32]), 2)];
        let mut seen = Seen::new();
        seen.remember(k("/a"), s, false, &chunks);
        seen.remember(k("/b"), recent, false, &[]);
        c.save(seen).unwrap();
        let c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
        assert_eq!(hit(c.lookup(&k("/a"), &s)), Some(chunks));
        assert!(matches!(c.lookup(&k("/a"), &Stamp { inode: 8, ..s }), Lookup::Changed));
        assert!(hit(c.lookup(&k("/a"), &Stamp { mtime: 9, ..s })).is_some(), "mtime is not part of the default mode");
        assert!(matches!(c.lookup(&k("/b"), &recent), Lookup::Absent), "too recent to trust");
        assert!(matches!(c.lookup(&k("/c"), &s), Lookup::Absent));
    }

    #[test]
    fn no_xattrs_is_kept_across_saves_and_vouched_for_only_when_ctime_is_compared() {
        let d = tempfile::tempdir().unwrap();
        let s = Stamp { size: 5, mtime: 1_000, ctime: 2_000, inode: 7 };
        let mut seen = Seen::new();
        seen.remember(k("/none"), s, true, &[]);
        seen.remember(k("/some"), s, false, &[]);
        FilesCache::load(d.path(), "r", Mode::DEFAULT).save(seen).unwrap();
        let flag = |mode: Mode, p: &str| match FilesCache::load(d.path(), "r", mode).lookup(&k(p), &s) {
            Lookup::Hit { no_xattrs, .. } => no_xattrs,
            _ => panic!("{p}: no hit"),
        };
        assert!(flag(Mode::DEFAULT, "/none"));
        assert!(!flag(Mode::DEFAULT, "/some"));
        // Without ctime, an attribute set since (which changes only the ctime) would go unseen.
        let mtime_size = Mode { ctime: false, mtime: true, size: true, inode: false };
        assert!(!flag(mtime_size, "/none"));
        // A run that does not see the file carries its record over, flag included.
        FilesCache::load(d.path(), "r", Mode::DEFAULT).save(Seen::new()).unwrap();
        assert!(flag(Mode::DEFAULT, "/none"));
        assert!(!flag(Mode::DEFAULT, "/some"));
    }

    #[test]
    fn many_entries_merge_in_key_order_with_their_own_chunks() {
        let d = tempfile::tempdir().unwrap();
        let st = |i: u64| Stamp { size: i, mtime: 1, ctime: 1, inode: i };
        let chunks = |i: u64| (0..i % 4).map(|j| ChunkRef(Id([(i + j) as u8; 32]), j as u32)).collect::<Vec<_>>();
        let mut seen = Seen::new();
        for i in 0..500u64 {
            seen.remember(k(&format!("/f{i}")), st(i), false, &chunks(i));
        }
        FilesCache::load(d.path(), "r", Mode::DEFAULT).save(seen).unwrap();
        // second run: half of the files seen again (one changed), new ones added
        let c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
        assert_eq!(c.len(), 500);
        let mut seen = Seen::new();
        for i in (0..500u64).step_by(2).chain(500..600) {
            let s = if i == 10 { Stamp { size: 999, ..st(i) } } else { st(i) };
            seen.remember(k(&format!("/f{i}")), s, false, &chunks(i + (i == 10) as u64));
        }
        c.save(seen).unwrap();
        let c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
        assert_eq!(c.len(), 600);
        for i in 0..600u64 {
            let s = if i == 10 { Stamp { size: 999, ..st(i) } } else { st(i) };
            let want = chunks(i + (i == 10) as u64);
            assert_eq!(hit(c.lookup(&k(&format!("/f{i}")), &s)), Some(want), "entry {i}");
        }
        assert!(matches!(c.lookup(&k("/f10"), &st(10)), Lookup::Changed));
    }

    #[test]
    fn unchanged_cache_is_not_rewritten() {
        let d = tempfile::tempdir().unwrap();
        save_entries(d.path(), &[("/a", &[ChunkRef(Id([7; 32]), 1)])]);
        let f = d.path().join("r").join("files");
        let before = std::fs::metadata(&f).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        save_entries(d.path(), &[("/a", &[ChunkRef(Id([7; 32]), 1)])]);
        assert_eq!(std::fs::metadata(&f).unwrap().modified().unwrap(), before);
    }

    #[test]
    fn unseen_entries_age_out_and_seen_ones_are_renewed() {
        let d = tempfile::tempdir().unwrap();
        let s = S1;
        save_entries(d.path(), &[("/old", &[ChunkRef(Id([7; 32]), 1)]), ("/kept", &[])]);
        // Like borg's BORG_FILES_CACHE_TTL: dropped by the save of the MAX_AGE+1-th run without it.
        for run in 1..=MAX_AGE as usize + 2 {
            let c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
            assert_eq!(hit(c.lookup(&k("/old"), &s)).is_some(), run <= MAX_AGE as usize + 1, "run {run}");
            let mut seen = Seen::new();
            seen.remember(k("/kept"), s, false, &[]);
            c.save(seen).unwrap();
        }
        let c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
        assert_eq!(c.len(), 1);
        assert!(hit(c.lookup(&k("/kept"), &s)).is_some());
    }

    #[test]
    fn damaged_or_foreign_file_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        save_entries(d.path(), &[("/a", &[ChunkRef(Id([7; 32]), 1)]), ("/b", &[])]);
        let f = d.path().join("r").join("files");
        let good = std::fs::read(&f).unwrap();
        assert_eq!(FilesCache::load(d.path(), "r", Mode::DEFAULT).len(), 2);
        let mut flipped = good.clone();
        flipped[30] ^= 1;
        let cases = [flipped, good[..good.len() - 1].to_vec(), b"not a cache".to_vec(), vec![]];
        for bad in cases {
            std::fs::write(&f, &bad).unwrap();
            assert!(FilesCache::load(d.path(), "r", Mode::DEFAULT).is_empty());
        }
        // Valid hashes over lying contents are refused by the structure checks, not trusted.
        let rehash = |mut body: Vec<u8>| {
            let h = blake3::hash(&body);
            body.extend_from_slice(h.as_bytes());
            body
        };
        let body = good[..good.len() - HASH_LEN].to_vec();
        let mut count = body.clone();
        count[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut unsorted = body.clone();
        let (r0, r1) = (HEADER_LEN, HEADER_LEN + RECORD_LEN);
        let first: Vec<u8> = unsorted[r0..r1].to_vec();
        let second: Vec<u8> = unsorted[r1..r1 + RECORD_LEN].to_vec();
        unsorted[r0..r1].copy_from_slice(&second);
        unsorted[r1..r1 + RECORD_LEN].copy_from_slice(&first);
        let mut chunk_range = body.clone();
        chunk_range[r0 + 60..r0 + 64].copy_from_slice(&1000u32.to_le_bytes());
        for lie in [count, unsorted, chunk_range] {
            std::fs::write(&f, rehash(lie)).unwrap();
            assert!(FilesCache::load(d.path(), "r", Mode::DEFAULT).is_empty());
        }
    }
}
