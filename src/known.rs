//! The in-memory dedup set: every blob the repository holds, with its stored (envelope) length.
//!
//! Loaded once per run from the index cache, whose `blobs` table hands the ids over in sorted
//! order (it is keyed by id). They stay in that sorted array, 36 bytes per blob, found through a
//! directory of their leading bits; blobs a run adds go to a small hash map beside it. Against a
//! hash map of all blobs this halves the memory (a repository of two million blobs: 72 against
//! about 150 MiB) and skips two million inserts at every start.

use crate::id::{Id, IdMap};

#[derive(Clone, Default)]
pub struct KnownBlobs {
    /// Sorted by id, no duplicates.
    base: Vec<(Id, u32)>,
    /// `dir[p]` is the first index of `base` whose id's leading `bits` bits are at least `p`.
    dir: Vec<u32>,
    bits: u32,
    /// Blobs added since loading, none of them in `base`.
    added: IdMap<u32>,
}

/// The leading 64 bits of an id, as a number (ids sort as these do, then by the rest).
fn prefix(id: &Id) -> u64 {
    u64::from_be_bytes(id.0[..8].try_into().expect("8 bytes"))
}

/// The directory slot of an id: its leading `bits` bits.
fn slot(id: &Id, bits: u32) -> u64 {
    prefix(id).checked_shr(64 - bits).unwrap_or(0)
}

impl KnownBlobs {
    /// The set of `rows`; sorted and deduplicated here unless they come sorted already.
    pub fn from_rows(mut base: Vec<(Id, u32)>) -> KnownBlobs {
        if !base.windows(2).all(|w| w[0].0 < w[1].0) {
            base.sort_unstable_by_key(|e| e.0);
            base.dedup_by(|a, b| a.0 == b.0);
        }
        // About eight blobs per directory slot: the search within one touches a cache line or two.
        let bits = (base.len() / 8).max(1).ilog2().min(24);
        let mut dir = Vec::with_capacity((1 << bits) + 1);
        let mut i = 0usize;
        for p in 0..(1u64 << bits) {
            while i < base.len() && slot(&base[i].0, bits) < p {
                i += 1;
            }
            dir.push(i as u32);
        }
        dir.push(base.len() as u32);
        KnownBlobs { base, dir, bits, added: IdMap::default() }
    }

    fn base_index(&self, id: &Id) -> Option<usize> {
        let p = slot(id, self.bits) as usize;
        let (lo, hi) = (self.dir[p] as usize, self.dir[p + 1] as usize);
        self.base[lo..hi].binary_search_by(|e| e.0.cmp(id)).ok().map(|k| lo + k)
    }

    /// The stored length of blob `id`, if the repository has it.
    pub fn get(&self, id: &Id) -> Option<&u32> {
        match self.base_index(id) {
            Some(k) => Some(&self.base[k].1),
            None => self.added.get(id),
        }
    }

    pub fn contains_key(&self, id: &Id) -> bool {
        self.get(id).is_some()
    }

    /// Record blob `id` with stored length `len` (replacing the length if it was known).
    pub fn insert(&mut self, id: Id, len: u32) {
        match self.base_index(&id) {
            Some(k) => self.base[k].1 = len,
            None => {
                self.added.insert(id, len);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.base.len() + self.added.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn keys(&self) -> impl Iterator<Item = &Id> {
        self.iter().map(|(id, _)| id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Id, &u32)> {
        self.base.iter().map(|(id, n)| (id, n)).chain(self.added.iter())
    }
}

/// A mark on each blob of a [`KnownBlobs`] as loaded, one bit each, settable from many threads:
/// the blobs archives refer to, for `check` and `compact`. Two million blobs take 256 KiB, where
/// a set of their ids took over 100 MiB.
pub struct Marks {
    known: KnownBlobs,
    bits: Vec<std::sync::atomic::AtomicU64>,
}

impl Marks {
    /// No blob marked. Blobs added to `known` after loading cannot be marked.
    pub fn new(known: KnownBlobs) -> Marks {
        let bits = (0..known.base.len().div_ceil(64)).map(|_| Default::default()).collect();
        Marks { known, bits }
    }

    /// Mark `id`; false if the repository does not have it.
    pub fn mark(&self, id: &Id) -> bool {
        let Some(k) = self.known.base_index(id) else { return false };
        self.bits[k / 64].fetch_or(1 << (k % 64), std::sync::atomic::Ordering::Relaxed);
        true
    }

    pub fn is_marked(&self, id: &Id) -> bool {
        self.known
            .base_index(id)
            .is_some_and(|k| self.bits[k / 64].load(std::sync::atomic::Ordering::Relaxed) & (1 << (k % 64)) != 0)
    }

    /// How many blobs are not marked.
    pub fn unmarked(&self) -> u64 {
        let marked: u64 =
            self.bits.iter().map(|w| w.load(std::sync::atomic::Ordering::Relaxed).count_ones() as u64).sum();
        self.known.len() as u64 - marked
    }

    pub fn known(&self) -> &KnownBlobs {
        &self.known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Id {
        // Spread over the whole id space, as keyed hashes are.
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        b[8..16].copy_from_slice(&n.to_le_bytes());
        Id(b)
    }

    #[test]
    fn marks_each_loaded_blob_once_and_count_the_rest() {
        for n in [0u64, 1, 63, 64, 65, 1000] {
            let marks = Marks::new(KnownBlobs::from_rows((0..n).map(|i| (id(i), 1)).collect()));
            assert_eq!(marks.unmarked(), n);
            for i in (0..n).step_by(3) {
                assert!(marks.mark(&id(i)));
                assert!(marks.mark(&id(i)), "marking twice");
            }
            assert!(!marks.mark(&id(n + 1)), "a blob the repository lacks");
            for i in 0..n + 2 {
                assert_eq!(marks.is_marked(&id(i)), i < n && i % 3 == 0, "n = {n}, i = {i}");
            }
            assert_eq!(marks.unmarked(), n - n.div_ceil(3), "n = {n}");
        }
    }

    /// Lookups agree with a plain hash map, for sets of every size around the directory's steps,
    /// for ids loaded, added later, and absent; unsorted input with duplicates is put in order.
    #[test]
    fn agrees_with_a_hash_map() {
        for n in [0u64, 1, 2, 7, 8, 9, 16, 17, 100, 1000, 65_537] {
            let mut rows: Vec<(Id, u32)> = (0..n).map(|i| (id(i), i as u32)).collect();
            if n > 2 {
                rows.push((id(1), 1));
                rows.swap(0, n as usize - 1);
            }
            let mut k = KnownBlobs::from_rows(rows);
            let mut want: IdMap<u32> = (0..n).map(|i| (id(i), i as u32)).collect();
            for i in n..n + 50 {
                k.insert(id(i), 7);
                want.insert(id(i), 7);
            }
            k.insert(id(0), 99);
            want.insert(id(0), 99);
            assert_eq!(k.len(), want.len(), "n = {n}");
            for i in 0..n + 100 {
                assert_eq!(k.get(&id(i)), want.get(&id(i)), "n = {n}, id {i}");
            }
            let mut low = [0u8; 32];
            low[31] = 1;
            assert!(!k.contains_key(&Id([0xff; 32])) && !k.contains_key(&Id(low)));
            let mut all: Vec<_> = k.iter().map(|(i, l)| (*i, *l)).collect();
            all.sort();
            let mut w: Vec<_> = want.into_iter().collect();
            w.sort();
            assert_eq!(all, w, "n = {n}");
        }
    }

    /// Ids sharing long prefixes (not what keyed hashes give, but nothing may break on them).
    #[test]
    fn clustered_ids_are_found() {
        let rows: Vec<(Id, u32)> = (0..5000u32)
            .map(|i| {
                let mut b = [0u8; 32];
                b[31] = i as u8;
                b[30] = (i >> 8) as u8;
                (Id(b), i)
            })
            .collect();
        let k = KnownBlobs::from_rows(rows.clone());
        for (id, n) in &rows {
            assert_eq!(k.get(id), Some(n));
        }
    }
}
