//! `create`: walk sources, chunk, deduplicate, seal and store their content, write the item
//! stream and the archive object, and commit the manifest.
//!
//! Pipeline: walk (one thread) -> chunk (reader) -> batch -> keyed BLAKE3 ids (rayon) -> dedup
//! against the in-memory set -> compress + pad + encrypt new chunks (rayon) -> pack writer. A batch
//! holds at most [`BATCH_BYTES`] of chunk data, so memory stays bounded whatever the file sizes.
//! Items wait in a queue until their chunks are processed, so the item stream keeps walk order.

pub mod source;

use crate::archive::item::{ChunkRef, Item, Kind};
use crate::archive::stream::ItemStreamWriter;
use crate::archive::{self, Archive, ArchiveStats};
use crate::blob::{self, SealedBlob};
use crate::chunker::Chunker;
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::id::{Id, ObjectType};
use crate::progress::Reporter;
use crate::repository::{lock, now_rfc3339, Repository, WriteStats};
use rayon::prelude::*;
use source::{Excludes, Names};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Instant;

/// Chunk bytes gathered before the parallel stage runs.
pub const BATCH_BYTES: usize = 32 * 1024 * 1024;

pub struct CreateOptions {
    pub name: String,
    pub paths: Vec<PathBuf>,
    pub excludes: Vec<String>,
    pub compression: Compression,
    pub command_line: Vec<String>,
    pub comment: String,
}

pub struct CreateOutcome {
    pub archive: Archive,
    pub id: Id,
    pub duration: std::time::Duration,
}

struct Pending {
    item: Item,
    /// All chunks read (the file is finished); chunk refs are filled as batches complete.
    done: bool,
}

struct Pipeline<'a> {
    compression: Compression,
    chunk_data: Vec<Vec<u8>>,
    chunk_owner: Vec<usize>,
    batch_bytes: usize,
    queue: VecDeque<Pending>,
    /// Index in `queue` of the first element (items before it were emitted).
    queue_base: usize,
    stream: ItemStreamWriter,
    stats: ArchiveStats,
    write: WriteStats,
    reporter: &'a dyn Reporter,
}

impl Pipeline<'_> {
    fn push_item(&mut self, repo: &mut Repository, item: Item, done: bool) -> Result<usize> {
        self.queue.push_back(Pending { item, done });
        let slot = self.queue_base + self.queue.len() - 1;
        if done {
            self.emit_ready(repo)?;
        }
        Ok(slot)
    }

    fn add_chunk(&mut self, repo: &mut Repository, owner: usize, data: Vec<u8>) -> Result<()> {
        self.batch_bytes += data.len();
        self.chunk_data.push(data);
        self.chunk_owner.push(owner);
        if self.batch_bytes >= BATCH_BYTES {
            self.process_batch(repo)?;
        }
        Ok(())
    }

    fn finish_file(&mut self, repo: &mut Repository, slot: usize) -> Result<()> {
        self.queue[slot - self.queue_base].done = true;
        self.emit_ready(repo)
    }

    /// Hash, dedup, seal and store the current batch; attach chunk refs to their items.
    fn process_batch(&mut self, repo: &mut Repository) -> Result<()> {
        if self.chunk_data.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.chunk_data);
        let owners = std::mem::take(&mut self.chunk_owner);
        self.batch_bytes = 0;
        let keys = repo.keys();
        let ids: Vec<Id> = data.par_iter().map(|c| keys.blob_id(c)).collect();
        let known = repo.known_blobs()?;
        let mut fresh: Vec<usize> = Vec::new();
        let mut seen = HashSet::new();
        for (i, id) in ids.iter().enumerate() {
            if !known.contains_key(id) && seen.insert(*id) {
                fresh.push(i);
            }
        }
        let keys = repo.keys();
        let compression = self.compression;
        let sealed: Vec<SealedBlob> = fresh
            .par_iter()
            .map(|&i| blob::seal(keys, ObjectType::Data, ids[i], &data[i], compression))
            .collect();
        for b in sealed {
            self.stats.deduplicated_size += b.envelope.len() as u64;
            repo.add_sealed(b, &mut self.write)?;
        }
        let known = repo.known_blobs()?;
        for ((id, owner), chunk) in ids.iter().zip(owners).zip(&data) {
            self.stats.compressed_size += known.get(id).copied().unwrap_or(0) as u64;
            self.stats.original_size += chunk.len() as u64;
            self.queue[owner - self.queue_base]
                .item
                .chunks
                .push(ChunkRef(*id, chunk.len() as u32));
        }
        self.emit_ready(repo)
    }

    /// Write finished items from the front of the queue into the item stream. An item with
    /// chunks still in the batch waits.
    fn emit_ready(&mut self, repo: &mut Repository) -> Result<()> {
        let pending_owner = self.chunk_owner.first().copied();
        while let Some(front) = self.queue.front() {
            if !front.done || pending_owner.is_some_and(|o| o <= self.queue_base) {
                break;
            }
            let p = self.queue.pop_front().expect("front exists");
            self.queue_base += 1;
            self.stats.nitems += 1;
            if matches!(p.item.kind, Kind::File) {
                self.stats.nfiles += 1;
            }
            self.stream.push(repo, &p.item, &mut self.write)?;
        }
        Ok(())
    }
}

/// Run a create. Per-file problems go to `reporter` as warnings; errors abort without committing.
pub fn run(
    repo: &mut Repository,
    opts: &CreateOptions,
    reporter: &dyn Reporter,
) -> Result<CreateOutcome> {
    archive::validate_name(&opts.name)?;
    if repo.manifest().find(&opts.name).is_some() {
        return Err(Error::ArchiveExists(opts.name.clone()));
    }
    for p in &opts.paths {
        if let Err(e) = std::fs::symlink_metadata(p) {
            return Err(Error::io(format!("source path {}", p.display()), e));
        }
    }
    let excludes = Excludes::new(&opts.excludes).map_err(Error::Usage)?;
    let started = Instant::now();
    let time_start = now_rfc3339();
    let mut pl = Pipeline {
        compression: opts.compression,
        chunk_data: vec![],
        chunk_owner: vec![],
        batch_bytes: 0,
        queue: VecDeque::new(),
        queue_base: 0,
        stream: ItemStreamWriter::new(repo),
        stats: ArchiveStats::default(),
        write: WriteStats::default(),
        reporter,
    };
    let mut names = Names::default();
    let mut hardlinks: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let seed = repo.keys().chunker_seed();
    let params = repo.config().chunker;

    for root in &opts.paths {
        let prefix = source::archive_root(root);
        let walker = walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        let walker = walker.filter_entry(|e| {
            let ap = source::join(&prefix, e.path().strip_prefix(root).unwrap_or(e.path()));
            let ex = !ap.is_empty() && excludes.is_excluded(&ap);
            if ex {
                reporter.item('x', &String::from_utf8_lossy(&ap));
            }
            !ex
        });
        for entry in walker {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = e
                        .path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    pl.reporter.warning(&format!(
                        "{path}: {}",
                        e.io_error()
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| e.to_string())
                    ));
                    pl.reporter.item('E', &path);
                    continue;
                }
            };
            let fs_path = entry.path();
            let ap = source::join(&prefix, fs_path.strip_prefix(root).unwrap_or(fs_path));
            if ap.is_empty() {
                continue; // the root of `create REPO::A /` itself
            }
            let md = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    pl.reporter.warning(&format!("{}: {e}", fs_path.display()));
                    continue;
                }
            };
            let Some(mut item) = source::item_from_metadata(ap.clone(), &md, &mut names) else {
                continue;
            };
            match source::read_xattrs(fs_path) {
                Ok(x) => item.xattrs = x,
                Err(e) => pl.reporter.warning(&format!(
                    "{}: reading extended attributes: {e}",
                    fs_path.display()
                )),
            }
            if item.kind != Kind::Dir && md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = hardlinks.get(&key) {
                    item.kind = Kind::Hardlink;
                    item.source = Some(first.clone());
                    item.size = md.size();
                    pl.reporter.item('h', &String::from_utf8_lossy(&ap));
                    pl.push_item(repo, item, true)?;
                    continue;
                }
                hardlinks.insert(key, ap.clone());
                item.hardlink_master = true;
            }
            match item.kind {
                Kind::Symlink => match std::fs::read_link(fs_path) {
                    Ok(t) => item.target = Some(t.as_os_str().as_bytes().to_vec()),
                    Err(e) => {
                        pl.reporter
                            .warning(&format!("{}: reading symlink: {e}", fs_path.display()));
                        pl.reporter.item('E', &String::from_utf8_lossy(&ap));
                        continue;
                    }
                },
                Kind::File => {
                    read_file(repo, &mut pl, fs_path, item, &md, seed, params)?;
                    continue;
                }
                _ => {}
            }
            pl.reporter.item('A', &String::from_utf8_lossy(&ap));
            pl.push_item(repo, item, true)?;
        }
    }
    pl.process_batch(repo)?;
    debug_assert!(pl.queue.is_empty());
    let (tree_ids, tree_added, tree_stored) =
        std::mem::replace(&mut pl.stream, ItemStreamWriter::new(repo))
            .finish(repo, &mut pl.write)?;
    pl.stats.deduplicated_size += tree_added;
    pl.stats.compressed_size += tree_stored;
    let archive = Archive {
        version: archive::ARCHIVE_VERSION,
        name: opts.name.clone(),
        hostname: lock::hostname(),
        username: uzers::get_current_username()
            .map(|u| u.to_string_lossy().into_owned())
            .unwrap_or_default(),
        time_start: time_start.clone(),
        time_end: now_rfc3339(),
        command_line: opts.command_line.clone(),
        items: tree_ids,
        stats: pl.stats,
        comment: opts.comment.clone(),
    };
    let mut write = pl.write;
    let id = archive.commit(repo, &mut write)?;
    Ok(CreateOutcome {
        archive,
        id,
        duration: started.elapsed(),
    })
}

fn read_file(
    repo: &mut Repository,
    pl: &mut Pipeline<'_>,
    fs_path: &std::path::Path,
    mut item: Item,
    md: &std::fs::Metadata,
    seed: u64,
    params: crate::chunker::ChunkerParams,
) -> Result<()> {
    let display = String::from_utf8_lossy(&item.path).into_owned();
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(fs_path)
    {
        Ok(f) => f,
        Err(e) => {
            pl.reporter.warning(&format!("{}: {e}", fs_path.display()));
            pl.reporter.item('E', &display);
            return Ok(());
        }
    };
    item.size = 0;
    let slot = pl.push_item(repo, item, false)?;
    let mut chunker = Chunker::new(
        CountingReader { inner: &file, n: 0 },
        params,
        seed,
        Some(md.size()),
    );
    loop {
        match chunker.next_chunk() {
            Ok(Some(c)) => {
                pl.queue[slot - pl.queue_base].item.size += c.len() as u64;
                pl.add_chunk(repo, slot, c)?;
            }
            Ok(None) => break,
            Err(e) => {
                pl.reporter.warning(&format!(
                    "{}: read error, archived the first bytes only: {e}",
                    fs_path.display()
                ));
                pl.queue[slot - pl.queue_base].item.changed = true;
                break;
            }
        }
    }
    let changed = match file.metadata() {
        Ok(now) => {
            now.size() != md.size()
                || now.mtime() != md.mtime()
                || now.mtime_nsec() != md.mtime_nsec()
                || now.ctime() != md.ctime()
        }
        Err(_) => true,
    };
    if changed {
        pl.reporter.warning(&format!(
            "{}: file changed while we read it",
            fs_path.display()
        ));
        pl.queue[slot - pl.queue_base].item.changed = true;
    }
    pl.reporter.item(if changed { 'E' } else { 'A' }, &display);
    pl.finish_file(repo, slot)
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}
