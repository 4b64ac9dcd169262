//! The files cache: what each file looked like (size, mtime, ctime, inode) when it was last
//! archived, and its chunk list, so an unchanged file is not read again.
//!
//! It lives on the client (`$GARRET_CACHE_DIR/<repository id>/files`), is written only after a
//! successful commit, and can never cause a wrong backup: an entry is used only when every
//! selected attribute matches, and the caller checks that every chunk it names is still in the
//! repository. A missing, damaged or foreign cache is simply ignored (everything is read).

use crate::archive::item::ChunkRef;
use crate::error::{IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Runs an entry survives without its file being seen (alternating jobs share one cache).
pub const MAX_AGE: u8 = 20;
const VERSION: u32 = 1;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub size: u64,
    pub mtime: i64,
    pub ctime: i64,
    pub inode: u64,
}

impl Stamp {
    pub fn of(md: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            size: md.size(),
            mtime: md.mtime().saturating_mul(1_000_000_000).saturating_add(md.mtime_nsec()),
            ctime: md.ctime().saturating_mul(1_000_000_000).saturating_add(md.ctime_nsec()),
            inode: md.ino(),
        }
    }

    fn matches(&self, other: &Stamp, m: Mode) -> bool {
        (!m.size || self.size == other.size)
            && (!m.inode || self.inode == other.inode)
            && (!m.ctime || self.ctime == other.ctime)
            && (!m.mtime || self.mtime == other.mtime)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    #[serde(with = "serde_bytes")]
    path: Vec<u8>,
    stamp: Stamp,
    age: u8,
    chunks: Vec<ChunkRef>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    entries: Vec<Entry>,
}

pub struct FilesCache {
    file: PathBuf,
    mode: Mode,
    entries: HashMap<Vec<u8>, Entry>,
    /// Paths seen in this run (their entries are renewed or replaced).
    seen: HashMap<Vec<u8>, Entry>,
    /// Files whose ctime/mtime is this recent are not remembered: a change within the
    /// filesystem's timestamp granularity right after we read them would go unnoticed.
    not_after_ns: i64,
}

impl FilesCache {
    pub fn load(cache_dir: &Path, repo_id: &str, mode: Mode) -> FilesCache {
        let file = cache_dir.join(repo_id).join("files");
        let entries = std::fs::read(&file)
            .ok()
            .and_then(|b| ciborium::from_reader::<Stored, _>(&b[..]).ok())
            .filter(|s| s.version == VERSION)
            .map(|s| s.entries.into_iter().map(|e| (e.path.clone(), e)).collect())
            .unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        FilesCache { file, mode, entries, seen: HashMap::new(), not_after_ns: now - 1_000_000_000 }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The chunk list of `path` if it looks unchanged.
    pub fn lookup(&self, path: &[u8], stamp: &Stamp) -> Option<&[ChunkRef]> {
        let e = self.entries.get(path)?;
        e.stamp.matches(stamp, self.mode).then_some(&e.chunks[..])
    }

    /// Whether the cache has any entry for `path` (a miss on it means "modified").
    pub fn lookup_any(&self, path: &[u8]) -> bool {
        self.entries.contains_key(path)
    }

    /// Record what was archived for `path` in this run.
    pub fn remember(&mut self, path: Vec<u8>, stamp: Stamp, chunks: Vec<ChunkRef>) {
        if stamp.ctime >= self.not_after_ns || stamp.mtime >= self.not_after_ns {
            self.seen.remove(&path);
            return;
        }
        self.seen.insert(path.clone(), Entry { path, stamp, age: 0, chunks });
    }

    /// Write the cache: this run's entries plus older ones not yet too old.
    pub fn save(mut self) -> Result<()> {
        let mut out: Vec<Entry> = Vec::with_capacity(self.seen.len() + self.entries.len());
        for (p, mut e) in self.entries.drain() {
            if self.seen.contains_key(&p) {
                continue;
            }
            e.age = e.age.saturating_add(1);
            if e.age <= MAX_AGE {
                out.push(e);
            }
        }
        out.extend(self.seen.into_values());
        let dir = self.file.parent().expect("has parent");
        std::fs::create_dir_all(dir).ctx(|| format!("creating cache directory {}", dir.display()))?;
        let mut buf = Vec::new();
        ciborium::into_writer(&Stored { version: VERSION, entries: out }, &mut buf).expect("serializing to memory");
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, &buf).ctx(|| format!("writing {}", tmp.display()))?;
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

    #[test]
    fn hit_only_when_stamp_matches_and_old_enough() {
        let d = tempfile::tempdir().unwrap();
        let mut c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
        let s = Stamp { size: 5, mtime: 1_000, ctime: 2_000, inode: 7 };
        let recent = Stamp { ctime: i64::MAX - 1, ..s };
        c.remember(b"a".to_vec(), s, vec![]);
        c.remember(b"b".to_vec(), recent, vec![]);
        c.save().unwrap();
        let c = FilesCache::load(d.path(), "r", Mode::DEFAULT);
        assert!(c.lookup(b"a", &s).is_some());
        assert!(c.lookup(b"a", &Stamp { inode: 8, ..s }).is_none());
        assert!(c.lookup(b"a", &Stamp { mtime: 9, ..s }).is_some(), "mtime is not part of the default mode");
        assert!(c.lookup(b"b", &recent).is_none(), "too recent to trust");
    }
}
