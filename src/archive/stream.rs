//! The item metadata stream: items encoded as a sequence of CBOR maps, cut into content-defined
//! chunks and stored as deduplicated `tree` blobs (repo-format.md, "Item stream").

use super::item::Item;
use crate::chunker::ChunkerParams;
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::id::{Id, ObjectType};
use crate::repository::Repository;

/// Collects encoded items and stores them as tree chunks; memory holds at most about twice the
/// largest tree chunk.
pub struct ItemStreamWriter {
    buf: Vec<u8>,
    params: ChunkerParams,
    seed: u64,
    pub chunk_ids: Vec<Id>,
    /// Stored bytes this stream added to the repository.
    pub added: u64,
    pub stored_total: u64,
}

impl ItemStreamWriter {
    pub fn new(repo: &Repository) -> Self {
        ItemStreamWriter {
            buf: Vec::new(),
            params: repo.config().tree_chunker,
            seed: repo.keys().chunker_seed(),
            chunk_ids: vec![],
            added: 0,
            stored_total: 0,
        }
    }

    pub fn push(&mut self, repo: &mut Repository, item: &Item) -> Result<()> {
        ciborium::into_writer(item, &mut self.buf).expect("serializing to memory");
        while self.buf.len() >= 2 * self.params.max as usize {
            self.cut(repo, false)?;
        }
        Ok(())
    }

    fn cut(&mut self, repo: &mut Repository, last: bool) -> Result<()> {
        let n = if last { self.buf.len() } else { self.params.first_cut(&self.buf, self.seed) };
        let chunk: Vec<u8> = self.buf.drain(..n).collect();
        let (id, added) = repo.save_blob(ObjectType::Tree, &chunk, Compression::Zstd(3))?;
        self.added += added;
        self.stored_total += repo.known_blobs()?.get(&id).copied().unwrap_or(0) as u64;
        self.chunk_ids.push(id);
        Ok(())
    }

    /// Store everything still buffered; returns the tree chunk ids.
    pub fn finish(mut self, repo: &mut Repository) -> Result<(Vec<Id>, u64, u64)> {
        while self.buf.len() > self.params.max as usize {
            self.cut(repo, false)?;
        }
        while !self.buf.is_empty() {
            let last = self.buf.len() <= self.params.max as usize;
            self.cut(repo, last)?;
        }
        Ok((self.chunk_ids, self.added, self.stored_total))
    }
}

/// Reads items back, loading one tree chunk at a time.
pub struct ItemReader<'r> {
    repo: &'r Repository,
    cursor: ItemCursor,
}

impl<'r> ItemReader<'r> {
    pub fn new(repo: &'r Repository, ids: Vec<Id>) -> Self {
        ItemReader { repo, cursor: ItemCursor::new(ids) }
    }
}

/// An [`ItemReader`] that borrows the repository only while it reads: for a caller that writes
/// to the same repository between items (`recreate`).
pub struct ItemCursor {
    ids: std::vec::IntoIter<Id>,
    buf: Vec<u8>,
    pos: usize,
}

impl ItemCursor {
    pub fn new(ids: Vec<Id>) -> Self {
        ItemCursor { ids: ids.into_iter(), buf: vec![], pos: 0 }
    }

    /// The next item, `None` at the end of the stream.
    pub fn next_item(&mut self, repo: &Repository) -> Result<Option<Item>> {
        loop {
            if self.pos < self.buf.len() {
                // Items may straddle chunk boundaries: on a short read, append the next chunk.
                let mut slice = &self.buf[self.pos..];
                let before = slice.len();
                match ciborium::from_reader::<Item, _>(&mut slice) {
                    Ok(item) => {
                        self.pos += before - slice.len();
                        return Ok(Some(item));
                    }
                    Err(ciborium::de::Error::Io(_)) => {}
                    Err(e) => return Err(Error::malformed("item stream", e.to_string())),
                }
            }
            let Some(id) = self.ids.next() else {
                if self.pos < self.buf.len() {
                    return Err(Error::malformed("item stream", "ends inside an item"));
                }
                return Ok(None);
            };
            let chunk = repo.load_blob(ObjectType::Tree, &id)?;
            self.buf.drain(..self.pos);
            self.pos = 0;
            if self.buf.len() > 64 * 1024 * 1024 {
                return Err(Error::malformed("item stream", "an item larger than 64 MiB"));
            }
            self.buf.extend_from_slice(&chunk);
        }
    }
}

impl Iterator for ItemReader<'_> {
    type Item = Result<Item>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.cursor.next_item(self.repo) {
            Ok(Some(i)) => Some(Ok(i)),
            Ok(None) => None,
            Err(e) => {
                self.cursor = ItemCursor::new(vec![]);
                Some(Err(e))
            }
        }
    }
}
