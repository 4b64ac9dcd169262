//! Opened bundles kept for the reads that follow (repo-format.md section 8.1).
//!
//! Small files are stored together in bundles and are read together: an extract, a `cat` of
//! every file of a directory through a mount. Each read takes one file out of a bundle; without
//! this cache each would decrypt and decompress its whole bundle again. Entries are keyed by pack
//! name and offset: pack files never change (their name is the hash of their bytes), so an entry
//! can never go stale.

use crate::error::Result;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Bundles kept, the most recently used last: a bundle is at most 512 KiB as garret writes them,
/// and a few cover the threads of a parallel extract.
const KEPT: usize = 8;

/// A kept bundle: pack name, offset, content.
type Kept = (String, u64, Arc<Vec<u8>>);

#[derive(Default)]
pub struct BundleCache {
    kept: Mutex<VecDeque<Kept>>,
}

impl BundleCache {
    /// The content of the bundle at `offset` of pack `pack`, from the cache or from `open`.
    pub fn get_or_open(&self, pack: &str, offset: u64, open: impl FnOnce() -> Result<Vec<u8>>) -> Result<Arc<Vec<u8>>> {
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = kept.iter().position(|(p, o, _)| *o == offset && p == pack) {
                let hit = kept.remove(i).expect("found");
                let content = hit.2.clone();
                kept.push_back(hit);
                return Ok(content);
            }
        }
        // Opened outside the lock: other threads' reads go on meanwhile.
        let content = Arc::new(open()?);
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.push_back((pack.to_string(), offset, content.clone()));
        if kept.len() > KEPT {
            kept.pop_front();
        }
        Ok(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_opened_once_while_it_is_kept() {
        let cache = BundleCache::default();
        let opened = std::cell::Cell::new(0);
        let open = |n: u8| {
            opened.set(opened.get() + 1);
            Ok(vec![n])
        };
        assert_eq!(*cache.get_or_open("p", 0, || open(1)).unwrap(), vec![1]);
        assert_eq!(*cache.get_or_open("p", 0, || open(9)).unwrap(), vec![1]);
        assert_eq!(*cache.get_or_open("q", 0, || open(2)).unwrap(), vec![2]);
        assert_eq!(opened.get(), 2);
        // Past KEPT others, the first is opened again; an error is not kept.
        for i in 0..KEPT as u64 {
            cache.get_or_open("r", i, || open(3)).unwrap();
        }
        assert!(cache.get_or_open("s", 0, || Err(crate::error::Error::Command("x".into()))).is_err());
        assert_eq!(*cache.get_or_open("p", 0, || open(4)).unwrap(), vec![4]);
    }
}
