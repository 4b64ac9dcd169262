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

/// The most bytes one encoded item may take in the stream. A file has at most
/// [`crate::chunker::MAX_FILE_CHUNKS`] chunk references of at most 40 bytes each, twice over
/// when `check --repair` keeps its healthy list beside them; the rest is path and xattrs.
pub const MAX_ITEM_BYTES: u64 = 2 << 30;

/// An [`ItemReader`] that borrows the repository only while it reads: for a caller that writes
/// to the same repository between items (`recreate`).
pub struct ItemCursor {
    ids: std::vec::IntoIter<Id>,
    /// The tree chunk being decoded, consumed up to `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// [`MAX_ITEM_BYTES`], lower in tests.
    limit: u64,
    /// Bytes handed to the decoder so far: each byte of the stream once.
    read_total: u64,
}

impl ItemCursor {
    pub fn new(ids: Vec<Id>) -> Self {
        ItemCursor { ids: ids.into_iter(), buf: vec![], pos: 0, limit: MAX_ITEM_BYTES, read_total: 0 }
    }

    /// The next item, `None` at the end of the stream.
    pub fn next_item(&mut self, repo: &Repository) -> Result<Option<Item>> {
        self.next_with(&mut |id| repo.load_blob(ObjectType::Tree, id))
    }

    /// [`next_item`](Self::next_item) with tree chunks from `load`. Items may straddle chunk
    /// boundaries: the decoder pulls the next chunk when it needs more bytes, so an item spread
    /// over many chunks (a huge file's chunk list) costs one pass, and memory holds one chunk
    /// besides the item itself.
    fn next_with(&mut self, load: &mut dyn FnMut(&Id) -> Result<Vec<u8>>) -> Result<Option<Item>> {
        let mut feed = Feed { cursor: self, load, taken: 0, failed: None };
        if !feed.fill()? {
            return Ok(None);
        }
        match ciborium::from_reader::<Item, _>(&mut feed) {
            Ok(item) => Ok(Some(item)),
            Err(e) => Err(match (feed.failed.take(), e) {
                (Some(e), _) => e,
                (None, ciborium::de::Error::Io(_)) => Error::malformed("item stream", "ends inside an item"),
                (None, e) => Error::malformed("item stream", e.to_string()),
            }),
        }
    }
}

/// The stream's bytes from the cursor's position on, loading tree chunks as they are needed;
/// counts what one item takes and stops it at [`MAX_ITEM_BYTES`].
struct Feed<'c, 'l> {
    cursor: &'c mut ItemCursor,
    load: &'l mut dyn FnMut(&Id) -> Result<Vec<u8>>,
    taken: u64,
    /// Why the last read failed, for the caller (the decoder sees only an I/O error).
    failed: Option<Error>,
}

impl Feed<'_, '_> {
    /// Make sure unread bytes are buffered; false at the end of the stream.
    fn fill(&mut self) -> Result<bool> {
        while self.cursor.pos >= self.cursor.buf.len() {
            let Some(id) = self.cursor.ids.next() else { return Ok(false) };
            self.cursor.buf = (self.load)(&id)?;
            self.cursor.pos = 0;
        }
        Ok(true)
    }
}

impl std::io::Read for Feed<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let fail = |me: &mut Self, e: Error| {
            me.failed = Some(e);
            Err(std::io::Error::other("item stream"))
        };
        match self.fill() {
            Ok(true) => {}
            Ok(false) => return Ok(0),
            Err(e) => return fail(self, e),
        }
        let c = &mut *self.cursor;
        let n = out.len().min(c.buf.len() - c.pos);
        self.taken += n as u64;
        if self.taken > c.limit {
            let e = Error::malformed("item stream", format!("an item larger than {} bytes", c.limit));
            return fail(self, e);
        }
        out[..n].copy_from_slice(&c.buf[c.pos..c.pos + n]);
        c.pos += n;
        c.read_total += n as u64;
        Ok(n)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::item::{ChunkRef, Kind};
    use std::collections::HashMap;

    fn item(path: &str, chunks: u32) -> Item {
        let mut it = Item::new(path.as_bytes().to_vec(), Kind::File);
        it.chunks = (0..chunks).map(|i| ChunkRef(Id([(i % 251) as u8; 32]), i)).collect();
        it
    }

    /// The stream of `items` cut into pieces of `piece` bytes, as tree chunks under made-up ids.
    fn stored(items: &[Item], piece: usize) -> (Vec<Id>, HashMap<Id, Vec<u8>>, usize) {
        let mut bytes = vec![];
        for it in items {
            ciborium::into_writer(it, &mut bytes).unwrap();
        }
        let mut ids = vec![];
        let mut blobs = HashMap::new();
        for (n, p) in bytes.chunks(piece).enumerate() {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(n as u64).to_le_bytes());
            ids.push(Id(id));
            blobs.insert(Id(id), p.to_vec());
        }
        (ids, blobs, bytes.len())
    }

    fn read_all(cursor: &mut ItemCursor, blobs: &HashMap<Id, Vec<u8>>) -> Result<Vec<Item>> {
        let mut out = vec![];
        while let Some(it) = cursor.next_with(&mut |id| Ok(blobs[id].clone()))? {
            out.push(it);
        }
        Ok(out)
    }

    /// A file with hundreds of thousands of chunks is one item spread over thousands of tree
    /// chunks; it reads back exactly, and every byte of the stream is decoded once (reading a
    /// huge file's item used to start over at each chunk, and refused items over 64 MiB).
    #[test]
    fn items_straddling_many_chunks_are_decoded_in_one_pass() {
        let items = vec![item("a", 3), item("huge", 300_000), item("b", 0), item("c", 1)];
        let (ids, blobs, len) = stored(&items, 4093);
        assert!(ids.len() > 2000, "{}", ids.len());
        let mut cursor = ItemCursor::new(ids);
        assert_eq!(read_all(&mut cursor, &blobs).unwrap(), items);
        assert_eq!(cursor.read_total, len as u64);
    }

    #[test]
    fn tiny_chunks_and_the_end_of_the_stream() {
        let items = vec![item("x", 2), item("y", 5)];
        let (ids, blobs, _) = stored(&items, 1);
        assert_eq!(read_all(&mut ItemCursor::new(ids), &blobs).unwrap(), items);
        assert!(read_all(&mut ItemCursor::new(vec![]), &blobs).unwrap().is_empty());
    }

    #[test]
    fn truncated_oversized_and_unloadable_streams_are_errors() {
        let items = vec![item("x", 2), item("y", 50)];
        let (mut ids, blobs, _) = stored(&items, 100);
        let all = ids.clone();
        ids.pop();
        let e = read_all(&mut ItemCursor::new(ids), &blobs).unwrap_err();
        assert!(e.to_string().contains("ends inside an item"), "{e}");

        let mut small = ItemCursor::new(all.clone());
        small.limit = 1000;
        let e = read_all(&mut small, &blobs).unwrap_err();
        assert!(e.to_string().contains("an item larger than 1000 bytes"), "{e}");

        let mut cursor = ItemCursor::new(all);
        let mut calls = 0;
        let e = cursor
            .next_with(&mut |id| {
                calls += 1;
                if calls == 1 {
                    Ok(blobs[id].clone())
                } else {
                    Err(Error::MissingBlob(id.hex()))
                }
            })
            .and_then(|_| cursor.next_with(&mut |id| Err(Error::MissingBlob(id.hex()))))
            .unwrap_err();
        assert!(matches!(e, Error::MissingBlob(_)), "{e}");
    }
}
