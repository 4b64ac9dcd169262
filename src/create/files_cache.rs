//! The files cache: what each file looked like (size, mtime, ctime, inode) when it was last
//! archived, and its chunk list, so an unchanged file is not read again.
//!
//! It lives on the client (`$GARRET_CACHE_DIR/<repository id>/files`), is written only after a
//! successful commit, and can never cause a wrong backup: an entry is used only when every
//! selected attribute matches, and the caller checks that every chunk it names is still in the
//! repository. A missing, damaged or foreign cache is simply ignored (everything is read).
//!
//! File layout (client-local, not part of the repository format), little-endian:
//! `"GARRETFC"`, version u32, entry count u64, the entries, then the BLAKE3 hash of everything
//! before it. An entry: 16-byte path key (BLAKE3 of the absolute path, so the cache holds no
//! path names), size u64, mtime i64, ctime i64 (ns), inode u64, age u8, chunk count u32, and per
//! chunk its 32-byte id and u32 length. The file is loaded in one read and its entries are
//! decoded only when looked up; a file that fails the hash or the bounds checks is ignored.

use crate::archive::item::ChunkRef;
use crate::error::{IoContext, Result};
use crate::id::{Id, PassThrough};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};

/// Runs an entry survives without its file being seen (alternating jobs share one cache).
pub const MAX_AGE: u8 = 20;
const MAGIC: &[u8; 8] = b"GARRETFC";
const VERSION: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 8;
const ENTRY_FIXED: usize = 16 + 8 * 4 + 1 + 4;
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

/// The cache key of a file's absolute path: 16 bytes of its BLAKE3 hash (the map uses the first
/// 8 bytes as they are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

impl std::hash::Hash for PathKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes")));
    }
}

type KeyMap<V> = HashMap<PathKey, V, BuildHasherDefault<PassThrough>>;

/// An entry of the loaded file: its stamp, age and where its chunk list sits in the buffer.
struct Stored {
    stamp: Stamp,
    age: u8,
    chunks: std::ops::Range<usize>,
}

/// What the cache knows about a path.
pub enum Lookup {
    /// Unchanged: these are its chunks.
    Hit(Vec<ChunkRef>),
    /// Known, but it looks different now.
    Changed,
    /// Never archived (or forgotten).
    Absent,
}

pub struct FilesCache {
    file: PathBuf,
    mode: Mode,
    buf: Vec<u8>,
    entries: KeyMap<Stored>,
    /// Paths seen in this run (their entries are renewed or replaced).
    seen: KeyMap<(Stamp, Vec<ChunkRef>)>,
    /// Files whose ctime/mtime is this recent are not remembered: a change within the
    /// filesystem's timestamp granularity right after we read them would go unnoticed.
    not_after_ns: i64,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len())?;
        let s = &self.b[self.at..end];
        self.at = end;
        Some(s)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// Index the entries of a cache file; `None` if it is not a complete, intact cache file.
fn parse(buf: &[u8]) -> Option<KeyMap<Stored>> {
    let body_len = buf.len().checked_sub(HASH_LEN)?;
    if blake3::hash(&buf[..body_len]).as_bytes() != &buf[body_len..] {
        return None;
    }
    let mut r = Reader { b: &buf[..body_len], at: 0 };
    if r.take(8)? != MAGIC || r.u32()? != VERSION {
        return None;
    }
    let count = r.u64()?;
    // Every entry takes at least ENTRY_FIXED bytes: a count beyond that is a lie.
    if count > (body_len / ENTRY_FIXED) as u64 {
        return None;
    }
    let mut map = KeyMap::with_capacity_and_hasher(count as usize, Default::default());
    for _ in 0..count {
        let key = PathKey(r.take(16)?.try_into().ok()?);
        let size = r.u64()?;
        let mtime = r.u64()? as i64;
        let ctime = r.u64()? as i64;
        let inode = r.u64()?;
        let age = r.take(1)?[0];
        let n = r.u32()? as usize;
        let start = r.at;
        r.take(n.checked_mul(CHUNK_LEN)?)?;
        map.insert(key, Stored { stamp: Stamp { size, mtime, ctime, inode }, age, chunks: start..r.at });
    }
    (r.at == body_len).then_some(map)
}

fn decode_chunks(b: &[u8]) -> Vec<ChunkRef> {
    b.chunks_exact(CHUNK_LEN)
        .map(|c| {
            let id = Id(c[..32].try_into().expect("32 bytes"));
            ChunkRef(id, u32::from_le_bytes(c[32..].try_into().expect("4 bytes")))
        })
        .collect()
}

fn put_entry(out: &mut Vec<u8>, key: &PathKey, s: &Stamp, age: u8, nchunks: usize) {
    out.extend_from_slice(&key.0);
    out.extend_from_slice(&s.size.to_le_bytes());
    out.extend_from_slice(&s.mtime.to_le_bytes());
    out.extend_from_slice(&s.ctime.to_le_bytes());
    out.extend_from_slice(&s.inode.to_le_bytes());
    out.push(age);
    out.extend_from_slice(&(nchunks as u32).to_le_bytes());
}

impl FilesCache {
    pub fn load(cache_dir: &Path, repo_id: &str, mode: Mode) -> FilesCache {
        let file = cache_dir.join(repo_id).join("files");
        let mut buf = std::fs::read(&file).unwrap_or_default();
        let entries = parse(&buf).unwrap_or_else(|| {
            buf = Vec::new();
            KeyMap::default()
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        FilesCache { file, mode, buf, entries, seen: KeyMap::default(), not_after_ns: now - 1_000_000_000 }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `path` looks unchanged (and then its chunk list), changed, or is unknown.
    pub fn lookup(&self, key: &PathKey, stamp: &Stamp) -> Lookup {
        match self.entries.get(key) {
            None => Lookup::Absent,
            Some(e) if e.stamp.matches(stamp, self.mode) => Lookup::Hit(decode_chunks(&self.buf[e.chunks.clone()])),
            Some(_) => Lookup::Changed,
        }
    }

    /// Record what was archived for `path` in this run.
    pub fn remember(&mut self, key: PathKey, stamp: Stamp, chunks: Vec<ChunkRef>) {
        if stamp.ctime >= self.not_after_ns || stamp.mtime >= self.not_after_ns {
            self.seen.remove(&key);
            return;
        }
        self.seen.insert(key, (stamp, chunks));
    }

    /// Write the cache: this run's entries plus older ones not yet too old (unless that is what
    /// the file holds already). Not synced: a file torn by a crash fails its hash and is ignored
    /// next time.
    pub fn save(self) -> Result<()> {
        let mut out = Vec::with_capacity(self.buf.len().max(HEADER_LEN + self.seen.len() * (ENTRY_FIXED + CHUNK_LEN)));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        let mut count = 0u64;
        for (key, e) in &self.entries {
            if self.seen.contains_key(key) || e.age >= MAX_AGE {
                continue;
            }
            let raw = &self.buf[e.chunks.clone()];
            put_entry(&mut out, key, &e.stamp, e.age + 1, raw.len() / CHUNK_LEN);
            out.extend_from_slice(raw);
            count += 1;
        }
        for (key, (stamp, chunks)) in &self.seen {
            put_entry(&mut out, key, stamp, 0, chunks.len());
            for c in chunks {
                out.extend_from_slice(&c.0 .0);
                out.extend_from_slice(&c.1.to_le_bytes());
            }
            count += 1;
        }
        out[12..20].copy_from_slice(&count.to_le_bytes());
        let hash = blake3::hash(&out);
        out.extend_from_slice(hash.as_bytes());
        if out == self.buf {
            return Ok(()); // nothing changed (a nightly run over an unchanged tree)
        }
        let dir = self.file.parent().expect("has parent");
        std::fs::create_dir_all(dir).ctx(|| format!("creating cache directory {}", dir.display()))?;
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, &out).ctx(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.file).ctx(|| format!("renaming {}", tmp.display()))
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
            Lookup::Hit(c) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn hit_only_when_stamp_matches_and_old_enough() {
        let d = tempfile::tempdir().unwrap();
        let mut c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
        let s = Stamp { size: 5, mtime: 1_000, ctime: 2_000, inode: 7 };
        let recent = Stamp { ctime: i64::MAX - 1, ..s };
        let chunks = vec![ChunkRef(Id([1; 32]), 3), ChunkRef(Id([2; 32]), 2)];
        c.remember(PathKey::of(b"/a"), s, chunks.clone());
        c.remember(PathKey::of(b"/b"), recent, vec![]);
        c.save().unwrap();
        let c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
        assert_eq!(hit(c.lookup(&PathKey::of(b"/a"), &s)), Some(chunks));
        assert!(matches!(c.lookup(&PathKey::of(b"/a"), &Stamp { inode: 8, ..s }), Lookup::Changed));
        assert!(
            hit(c.lookup(&PathKey::of(b"/a"), &Stamp { mtime: 9, ..s })).is_some(),
            "mtime is not part of the default mode"
        );
        assert!(matches!(c.lookup(&PathKey::of(b"/b"), &recent), Lookup::Absent), "too recent to trust");
        assert!(matches!(c.lookup(&PathKey::of(b"/c"), &s), Lookup::Absent));
    }

    #[test]
    fn unseen_entries_age_out_and_seen_ones_are_renewed() {
        let d = tempfile::tempdir().unwrap();
        let s = Stamp { size: 1, mtime: 1, ctime: 1, inode: 1 };
        let mut c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
        c.remember(PathKey::of(b"/old"), s, vec![ChunkRef(Id([7; 32]), 1)]);
        c.remember(PathKey::of(b"/kept"), s, vec![]);
        c.save().unwrap();
        // Like borg's BORG_FILES_CACHE_TTL: dropped by the save of the MAX_AGE+1-th run without it.
        for run in 1..=MAX_AGE as usize + 2 {
            let mut c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
            assert_eq!(hit(c.lookup(&PathKey::of(b"/old"), &s)).is_some(), run <= MAX_AGE as usize + 1, "run {run}");
            c.remember(PathKey::of(b"/kept"), s, vec![]);
            c.save().unwrap();
        }
        let c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
        assert_eq!(c.len(), 1);
        assert!(hit(c.lookup(&PathKey::of(b"/kept"), &s)).is_some());
    }

    #[test]
    fn damaged_or_foreign_file_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let s = Stamp { size: 1, mtime: 1, ctime: 1, inode: 1 };
        let mut c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
        c.remember(PathKey::of(b"/a"), s, vec![ChunkRef(Id([7; 32]), 1)]);
        c.save().unwrap();
        let f = d.path().join("r").join("files");
        let good = std::fs::read(&f).unwrap();
        assert_eq!(FilesCache::load(d.path(), "r", Mode::DEFAULT).len(), 1);
        let mut flipped = good.clone();
        flipped[30] ^= 1;
        let cases = [flipped, good[..good.len() - 1].to_vec(), b"not a cache".to_vec(), vec![]];
        for bad in cases {
            std::fs::write(&f, &bad).unwrap();
            assert!(FilesCache::load(d.path(), "r", Mode::DEFAULT).is_empty());
        }
        // A valid hash over a lying entry count is refused by the bounds checks, not trusted.
        let mut lying = good[..good.len() - HASH_LEN].to_vec();
        lying[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        let h = blake3::hash(&lying);
        lying.extend_from_slice(h.as_bytes());
        std::fs::write(&f, &lying).unwrap();
        assert!(FilesCache::load(d.path(), "r", Mode::DEFAULT).is_empty());
    }
}
