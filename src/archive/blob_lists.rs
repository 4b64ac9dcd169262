//! The blobs each archive references, remembered on the client: one file per archive in the cache
//! dir (`<cache>/<repository id>/archive-blobs/<archive id>`), so that `info` learns what each
//! archive alone references without decoding every archive's item stream on every call.
//!
//! Archives never change (an archive id names its content), so a list is never stale; the lists
//! of archives gone from the manifest are deleted. A list holds the leading 64 bits of each blob
//! id, sorted: two of a repository's blobs sharing them is as unlikely as a 64-bit collision, and
//! would only blur a size `info` shows. A file that is missing, damaged or of another format is
//! ignored (and written again); failing to write one only costs the next call the decoding.
//!
//! File: `GARRETAB`, the count as u64 (little-endian), the sorted prefixes as u64 each, then the
//! BLAKE3 hash of everything before it.

use crate::client_file::{self, Durability};
use crate::id::Id;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"GARRETAB";
const HASH_LEN: usize = 32;

/// The leading 64 bits of a blob id, as the lists hold them.
pub fn prefix(id: &Id) -> u64 {
    u64::from_be_bytes(id.0[..8].try_into().expect("8 bytes"))
}

/// The sorted, distinct prefixes of `ids`.
pub fn prefixes(ids: &[Id]) -> Vec<u64> {
    let mut p: Vec<u64> = ids.iter().map(prefix).collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// The lists of one repository, or none at all when there is no cache dir.
pub struct BlobLists {
    dir: Option<PathBuf>,
}

impl BlobLists {
    pub fn new(cache_dir: Option<&Path>, repo_id: &str) -> BlobLists {
        BlobLists { dir: cache_dir.map(|c| c.join(repo_id).join("archive-blobs")) }
    }

    fn file(&self, archive: &Id) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(archive.hex()))
    }

    /// The list of `archive`, if a whole one is there.
    pub fn get(&self, archive: &Id) -> Option<Vec<u64>> {
        let b = std::fs::read(self.file(archive)?).ok()?;
        let body = b.len().checked_sub(HASH_LEN)?;
        if body < 16 || &b[..8] != MAGIC || blake3::hash(&b[..body]).as_bytes() != &b[body..] {
            return None;
        }
        let count = u64::from_le_bytes(b[8..16].try_into().ok()?);
        if count.checked_mul(8)? != (body - 16) as u64 {
            return None;
        }
        Some(b[16..body].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
    }

    /// Remember `prefixes` (sorted) as the list of `archive`; a failure only loses the cache.
    pub fn put(&self, archive: &Id, prefixes: &[u64]) {
        let Some(file) = self.file(archive) else { return };
        let mut b = Vec::with_capacity(16 + 8 * prefixes.len() + HASH_LEN);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&(prefixes.len() as u64).to_le_bytes());
        for p in prefixes {
            b.extend_from_slice(&p.to_le_bytes());
        }
        let hash = blake3::hash(&b);
        b.extend_from_slice(hash.as_bytes());
        let _ = client_file::replace(&file, &b, Durability::Cache);
    }

    /// Delete the lists of archives not in `live`.
    pub fn retain(&self, live: &std::collections::HashSet<Id>) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(Id::from_hex) else { continue };
            if !live.contains(&id) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_comes_back_as_written_and_a_damaged_one_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let lists = BlobLists::new(Some(d.path()), "r");
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        let ids: Vec<Id> = (0..1000u32).map(|i| Id(*blake3::hash(&i.to_le_bytes()).as_bytes())).collect();
        let p = prefixes(&[ids.clone(), ids.clone()].concat());
        assert_eq!(p.len(), 1000);
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(lists.get(&a), None);
        lists.put(&a, &p);
        lists.put(&b, &[]);
        assert_eq!(lists.get(&a), Some(p.clone()));
        assert_eq!(lists.get(&b), Some(vec![]));
        // a flipped bit, a truncation, another format: ignored
        let file = d.path().join("r").join("archive-blobs").join(a.hex());
        let good = std::fs::read(&file).unwrap();
        for bad in [
            {
                let mut v = good.clone();
                v[100] ^= 1;
                v
            },
            good[..good.len() - 1].to_vec(),
            b"GARRETAB".to_vec(),
            vec![],
        ] {
            std::fs::write(&file, &bad).unwrap();
            assert_eq!(lists.get(&a), None);
        }
        lists.put(&a, &p);
        lists.retain(&[a].into_iter().collect());
        assert_eq!(lists.get(&a), Some(p));
        assert_eq!(lists.get(&b), None, "b is gone from the manifest");
        assert!(BlobLists::new(None, "r").get(&a).is_none());
    }
}
