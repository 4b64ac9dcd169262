//! A bounded, shared cache of decrypted data chunks for the FUSE view.
//!
//! Readers ask for the chunks a read needs ([`ChunkCache::get`]); chunks not cached are loaded
//! together in one parallel batch. Readahead claims the chunks after them and fills them in from
//! the background ([`ChunkCache::claim`], [`ChunkCache::fill`]). A chunk being loaded by one thread
//! is waited for by the others rather than loaded twice. Least recently used
//! chunks are dropped once the cache holds more than its byte capacity.

use crate::error::{Error, Result};
use crate::id::Id;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

pub type Chunk = Arc<Vec<u8>>;

#[derive(Default)]
struct Inner {
    map: HashMap<Id, (Chunk, u64)>,
    lru: BTreeMap<u64, Id>,
    tick: u64,
    bytes: u64,
    loading: HashSet<Id>,
}

impl Inner {
    fn touch(&mut self, id: &Id) -> Option<Chunk> {
        self.tick += 1;
        let tick = self.tick;
        let (chunk, old) = self.map.get_mut(id)?;
        self.lru.remove(old);
        *old = tick;
        self.lru.insert(tick, *id);
        Some(chunk.clone())
    }

    fn insert(&mut self, id: Id, chunk: Chunk, capacity: u64) {
        if self.map.contains_key(&id) {
            return;
        }
        self.tick += 1;
        self.bytes += chunk.len() as u64;
        self.map.insert(id, (chunk, self.tick));
        self.lru.insert(self.tick, id);
        while self.bytes > capacity && self.map.len() > 1 {
            let Some((_, old)) = self.lru.pop_first() else { break };
            if let Some((c, _)) = self.map.remove(&old) {
                self.bytes -= c.len() as u64;
            }
        }
    }
}

pub struct ChunkCache {
    inner: Mutex<Inner>,
    done: Condvar,
    capacity: u64,
}

impl ChunkCache {
    pub fn new(capacity: u64) -> ChunkCache {
        ChunkCache { inner: Mutex::default(), done: Condvar::new(), capacity }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mark the ids of `ids` that are neither cached nor being loaded as being loaded by the
    /// caller, who must then [`fill`](Self::fill) them (readahead in the background).
    pub fn claim(&self, ids: &[Id]) -> Vec<Id> {
        let mut g = self.lock();
        let mut mine = Vec::new();
        for id in ids {
            if !g.map.contains_key(id) && !g.loading.contains(id) && !mine.contains(id) {
                g.loading.insert(*id);
                mine.push(*id);
            }
        }
        mine
    }

    /// Store the results of loading claimed ids (failures are dropped: a reader that needs the
    /// chunk loads it again and reports the error).
    pub fn fill(&self, ids: &[Id], results: Vec<Result<Vec<u8>>>) {
        let mut g = self.lock();
        for (id, r) in ids.iter().zip(results) {
            g.loading.remove(id);
            if let Ok(data) = r {
                g.insert(*id, Arc::new(data), self.capacity);
            }
        }
        self.done.notify_all();
    }

    /// The chunks `need`, in order, loading whatever is missing with `load`, which returns one
    /// result per id in order.
    pub fn get(&self, need: &[Id], load: impl Fn(&[Id]) -> Vec<Result<Vec<u8>>>) -> Result<Vec<Chunk>> {
        let mut out: Vec<Option<Chunk>> = {
            let mut g = self.lock();
            need.iter().map(|id| g.touch(id)).collect()
        };
        let missing: Vec<Id> = need.iter().zip(&out).filter(|(_, c)| c.is_none()).map(|(id, _)| *id).collect();
        let mine = self.claim(&missing);
        let mut first_err: Option<Error> = None;
        if !mine.is_empty() {
            let results = load(&mine);
            let mut g = self.lock();
            for (id, r) in mine.iter().zip(results) {
                g.loading.remove(id);
                match r {
                    Ok(data) => {
                        let chunk = Arc::new(data);
                        for (slot, nid) in out.iter_mut().zip(need) {
                            if nid == id && slot.is_none() {
                                *slot = Some(chunk.clone());
                            }
                        }
                        g.insert(*id, chunk, self.capacity);
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            self.done.notify_all();
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        // Chunks another thread was loading: wait for it, or load them here if it failed.
        for (i, id) in need.iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            let mut g = self.lock();
            while g.loading.contains(id) {
                g = self.done.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            if let Some(c) = g.touch(id) {
                out[i] = Some(c);
                continue;
            }
            drop(g);
            let data = load(std::slice::from_ref(id)).pop().expect("one result per id")?;
            let chunk = Arc::new(data);
            self.lock().insert(*id, chunk.clone(), self.capacity);
            out[i] = Some(chunk);
        }
        Ok(out.into_iter().map(|c| c.expect("every needed chunk was filled")).collect())
    }

    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn caches_evicts_and_reports_errors() {
        let loads = AtomicUsize::new(0);
        let load = |ids: &[Id]| -> Vec<Result<Vec<u8>>> {
            loads.fetch_add(ids.len(), Ordering::SeqCst);
            ids.iter()
                .map(|id| if id.0[0] == 9 { Err(Error::MissingBlob("x".into())) } else { Ok(vec![id.0[0]; 100]) })
                .collect()
        };
        let c = ChunkCache::new(250);
        let (a, b, d) = (Id([1; 32]), Id([2; 32]), Id([3; 32]));
        let got = c.get(&[a], load).unwrap();
        assert_eq!(got[0][0], 1);
        // Readahead: claimed once, filled from elsewhere, then served from the cache.
        let claimed = c.claim(&[a, b]);
        assert_eq!(claimed, vec![b], "a cached chunk is not claimed again");
        assert!(c.claim(&[b]).is_empty(), "a chunk being loaded is not claimed twice");
        c.fill(&claimed, load(&claimed));
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        c.get(&[b, a], load).unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2, "both served from the cache");
        c.get(&[d], load).unwrap();
        assert_eq!(c.bytes(), 200, "least recently used chunk evicted at capacity");
        assert!(c.get(&[Id([9; 32])], load).is_err());
        // A failing readahead chunk is dropped; a later read loads it again and gets the error.
        let bad = c.claim(&[Id([9; 32])]);
        c.fill(&bad, load(&bad));
        assert!(c.get(&[Id([9; 32])], load).is_err());
    }
}
