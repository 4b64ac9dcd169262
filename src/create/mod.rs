//! `create`: walk sources, chunk, deduplicate, seal and store their content, write the item
//! stream and the archive object, and commit the manifest.
//!
//! Pipeline: a reader thread ([`walk`]) walks, consults the files cache, reads and chunks files and
//! sends events over a bounded channel; this thread gathers chunks into batches, computes keyed
//! ids, deduplicates against the in-memory set plus the chunks already on their way, and hands each
//! batch's new chunks to the thread pool (rayon) as independent sealing jobs, which compress, pad
//! and encrypt them while this thread gathers the next batches. Sealed jobs are stored as they
//! finish, in any order, into the repository's pack writer, which writes packs on a thread of its
//! own. A batch holds at least [`BATCH_BYTES`] of chunk data plus at most one chunk, at most
//! [`SEALING_BATCHES`] batches' worth of chunk bytes are being sealed, and the channel holds a few
//! messages of bounded size, so memory stays bounded whatever the file sizes. Items wait in a queue
//! until their chunks have ids (computed here, not by the jobs), so the item stream keeps walk
//! order; nothing is committed before every sealing job is stored.

pub mod files_cache;
pub mod source;
pub mod walk;

use crate::archive::item::{ChunkRef, Item, Kind};
use crate::archive::stream::ItemStreamWriter;
use crate::archive::{self, Archive, ArchiveStats};
use crate::blob::{self, SealedBlob};
use crate::chunker::ChunkerParams;
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::id::{Id, IdMap, ObjectType};
use crate::patterns::Patterns;
use crate::progress::{Progress, Reporter};
use crate::repository::{lock, now_rfc3339, Repository};
use files_cache::{FilesCache, Seen};
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;
use walk::{CacheKey, Event, Hangup, WalkConfig};

/// Chunk bytes gathered before they are handed to the thread pool. Small batches, several in
/// flight (cold create 6.7 -> 5.5 s against one 8 MiB batch at a time, at the same peak RSS).
pub const BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Chunk bytes handed to the thread pool and not yet sealed, in batches. With batches sealed as
/// one task each and stored oldest first, several had to be out (one: 6.2 s, two: 5.6 s, three
/// or four: 5.4 to 5.6 s). With independent jobs stored as they finish, two (4 MiB) keep both
/// cores as busy as three, at 3 to 4 MiB less peak RSS (nineteenth session, 16 alternating
/// pairs: wall within 1 %).
const SEALING_BATCHES: usize = 2;
/// Items queued behind the current batch at most: past this, the batch is processed however
/// small it is. One changed file ahead of a million unchanged ones held them all (a 312 MiB queue).
const QUEUE_ITEMS: usize = 4096;
/// Messages in flight between the reader thread and the pipeline (each at most
/// [`walk::SINK_BYTES`] of chunks plus one chunk). With batches queued on the pool the reader
/// need not run far ahead: 1, 2 or 4 took the same time, and fewer bound memory tighter.
const CHANNEL_EVENTS: usize = 2;
/// Chunk bytes one sealing job gathers from small chunks (a larger chunk is a job of its own).
/// Such a run of chunks is stored as one bundle (repo-format.md section 8.1), compressed as one:
/// the bench tree's source files seal on one core at 211 MB/s each alone and at 222 to 248 MB/s
/// in 512 KiB bundles, 23 % smaller (`benches/stages.rs`, tools/README.md, twenty-second
/// session). 1 MiB bundles were no faster beyond the noise and 6 % smaller still, but a reader
/// of one small file decompresses its whole bundle.
const JOB_BYTES: usize = 512 * 1024;
/// Chunks up to this size go into bundles. Larger ones gain little from company (the speed and
/// size gains are the small files'), and alone their damage stays their own.
const BUNDLE_MEMBER_MAX: usize = 128 * 1024;

/// A stream to archive as one file (`create REPO::NAME -` or `--content-from-command`).
pub struct StreamSource {
    pub path: Vec<u8>,
    pub mode: u32,
    /// Owner names to record (`--stdin-user`, `--stdin-group`); `None`: the running user's.
    pub user: Option<String>,
    pub group: Option<String>,
    pub reader: Box<dyn Read + Send>,
    /// Called after the stream ended and before the commit; an error aborts the create (the dump
    /// command failed: a half dump must never look like a good backup).
    pub finish: Box<dyn FnOnce() -> Result<()> + Send>,
}

/// Items and content from somewhere other than the file system (import-tar): run on the reader
/// thread with the sink to send [`Event`]s to, the chunker parameters, the chunker seed and the
/// reporter for per-item warnings.
pub type Producer =
    Box<dyn FnOnce(&mut walk::EventSink, ChunkerParams, u64, &dyn Reporter) -> std::result::Result<(), Hangup> + Send>;

pub struct CreateOptions {
    pub name: String,
    pub paths: Vec<PathBuf>,
    pub patterns: Patterns,
    pub exclude_caches: bool,
    pub exclude_if_present: Vec<String>,
    pub keep_exclude_tags: bool,
    pub one_file_system: bool,
    pub metadata: walk::Metadata,
    /// Read devices and FIFOs as regular files (`--read-special`).
    pub read_special: bool,
    /// Leave out what carries the "no dump" flag (`--exclude-nodump`).
    pub exclude_nodump: bool,
    /// Archive exactly `paths`, each as one entry (`--paths-from-stdin`).
    pub listed: bool,
    pub compression: Compression,
    /// Chunk sizes for this archive instead of the repository's (`--chunker-params`).
    pub chunker: Option<ChunkerParams>,
    pub command_line: Vec<String>,
    pub comment: String,
    /// Archive start time to record instead of now (RFC 3339), `--timestamp`.
    pub timestamp: Option<String>,
    /// `None`: files cache disabled.
    pub files_cache: Option<files_cache::Mode>,
    /// Client cache directory (files cache lives below it).
    pub cache_dir: PathBuf,
    pub dry_run: bool,
    pub stream: Option<StreamSource>,
    /// Replaces the file system walk (`paths` is then empty).
    pub producer: Option<Producer>,
    /// The producer stores first names of hardlinked files without `hardlink_master`
    /// (recorded in the archive as `unmarked_masters`).
    pub unmarked_masters: bool,
}

pub struct CreateOutcome {
    pub archive: Archive,
    /// `None` for a dry run.
    pub id: Option<Id>,
    pub duration: std::time::Duration,
}

struct Pending {
    item: Item,
    /// All chunks read (the file is finished); chunk refs are filled as batches complete.
    done: bool,
    key: Option<CacheKey>,
}

struct Pipeline<'a> {
    compression: Compression,
    chunk_data: Vec<Vec<u8>>,
    chunk_owner: Vec<usize>,
    batch_bytes: usize,
    queue: VecDeque<Pending>,
    /// Slot number of the queue's front element.
    queue_base: usize,
    stream: ItemStreamWriter,
    stats: ArchiveStats,
    /// Files archived in this run, for the files cache.
    seen: Seen,
    reporter: &'a dyn Reporter,
    progress: Progress,
    /// Ids of all-zero chunks by length.
    zero_ids: HashMap<usize, Id>,
    /// New chunks handed to the sealer and not yet stored, with the number of references to
    /// each so far (for the archive's compressed size).
    in_flight: IdMap<u64>,
    /// Sealing jobs handed to the thread pool whose blobs have not been stored yet.
    sealing_jobs: usize,
    /// Chunk bytes in those jobs.
    sealing_bytes: usize,
    /// Where the pool sends each job's chunk bytes and sealed blobs when it is done (`None`: a
    /// worker panicked).
    sealed_tx: std::sync::mpsc::Sender<(usize, Option<Vec<SealedBlob>>)>,
    sealed_rx: std::sync::mpsc::Receiver<(usize, Option<Vec<SealedBlob>>)>,
}

impl Pipeline<'_> {
    fn push_item(&mut self, repo: &mut Repository, item: Item, done: bool, key: Option<CacheKey>) -> Result<usize> {
        self.queue.push_back(Pending { item, done, key });
        let slot = self.queue_base + self.queue.len() - 1;
        if self.queue.len() >= QUEUE_ITEMS && !self.chunk_data.is_empty() {
            // Items behind one with chunks in the batch wait for it, and unchanged files add no
            // chunks to fill it: hand over the batch as it is.
            self.process_batch(repo)?;
        } else if done {
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

    fn finish_file(&mut self, repo: &mut Repository, slot: usize, changed: bool) -> Result<()> {
        let p = &mut self.queue[slot - self.queue_base];
        p.done = true;
        if changed {
            p.item.changed = true;
            p.key = None;
        }
        self.emit_ready(repo)
    }

    /// Hash and deduplicate the current batch, attach chunk refs to their items, and hand its new
    /// chunks to the thread pool to be sealed. The main thread does not wait for them: it stores
    /// whatever jobs have finished, waits for one more only while [`SEALING_BATCHES`] batches'
    /// worth of bytes are unsealed, and goes on gathering the next batch while the jobs are
    /// compressed, so the cores do not idle between batches.
    ///
    /// Jobs finish in any order and are stored in that order. Stored strictly oldest first (as
    /// until the nineteenth session), a batch whose last large chunk still kept one core busy
    /// held up every later batch, and the other core idled meanwhile: 4.5 % of a cold create's
    /// samples had one sealing thread running and everything else waiting (tools/README.md).
    fn process_batch(&mut self, repo: &mut Repository) -> Result<()> {
        if self.chunk_data.is_empty() {
            return Ok(());
        }
        let mut data = std::mem::take(&mut self.chunk_data);
        let owners = std::mem::take(&mut self.chunk_owner);
        self.batch_bytes = 0;
        // Hashed here rather than on the pool, where it would queue behind the sealing.
        let keys = repo.keys();
        let ids: Vec<Id> = data
            .iter()
            .map(|c| {
                if crate::chunker::is_zero(c) {
                    // All-zero chunks (holes of sparse files) repeat: hash each length once.
                    *self.zero_ids.entry(c.len()).or_insert_with(|| keys.blob_id(c))
                } else {
                    keys.blob_id(c)
                }
            })
            .collect();
        let known = repo.known_blobs()?;
        let mut fresh: Vec<(Id, Vec<u8>)> = Vec::new();
        for ((id, owner), chunk) in ids.iter().zip(owners).zip(data.iter_mut()) {
            let len = chunk.len();
            match known.get(id) {
                Some(&stored) => self.stats.compressed_size += stored as u64,
                None => {
                    let refs = self.in_flight.entry(*id).or_insert(0);
                    if *refs == 0 {
                        fresh.push((*id, std::mem::take(chunk)));
                    }
                    *refs += 1;
                }
            }
            self.stats.original_size += len as u64;
            let p = &mut self.queue[owner - self.queue_base];
            p.item.chunks.push(ChunkRef(*id, len as u32));
            p.item.size += len as u64;
        }
        drop(data);
        // Sealed jobs are stored at once, whichever finished first, and new ones are handed out
        // while less than SEALING_BATCHES batches' worth of chunk bytes is unsealed.
        self.store_sealed(repo, false)?;
        while self.sealing_bytes >= SEALING_BATCHES * BATCH_BYTES {
            self.store_sealed(repo, true)?;
        }
        let mut fresh = fresh.into_iter().peekable();
        while fresh.peek().is_some() {
            // One job per large chunk, or per run of small ones up to JOB_BYTES. Jobs seal their
            // chunks one after another and never wait on each other, so a worker that is done
            // always finds the next job queued.
            let mut job = Vec::new();
            let mut bytes = 0;
            while let Some(c) = fresh.next_if(|c| job.is_empty() || bytes + c.1.len() <= JOB_BYTES) {
                bytes += c.1.len();
                job.push(c);
            }
            let tx = self.sealed_tx.clone();
            let (keys, compression) = (repo.shared_keys(), self.compression);
            let bundles = repo.writes_bundles();
            rayon::spawn(move || {
                crate::faults::pause_point("seal-job");
                let sealed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let (small, large): (Vec<_>, Vec<_>) =
                        job.into_iter().partition(|c| bundles && c.1.len() <= BUNDLE_MEMBER_MAX);
                    let mut sealed = Vec::with_capacity(large.len() + 1);
                    let mut alone = large;
                    if small.len() > 1 {
                        sealed.push(blob::seal_bundle(&keys, small, compression));
                    } else {
                        alone.extend(small);
                    }
                    // Consumed: each chunk's memory is freed as soon as it is sealed.
                    sealed.extend(
                        alone.into_iter().map(|(id, c)| blob::seal(&keys, ObjectType::Data, id, &c, compression)),
                    );
                    sealed
                }));
                // The receiver is gone only when the create failed already.
                let _ = tx.send((bytes, sealed.ok()));
            });
            self.sealing_jobs += 1;
            self.sealing_bytes += bytes;
        }
        self.emit_ready(repo)
    }

    /// Queue the blobs of every job the pool has finished sealing for the pack writer, in the
    /// order they finished; with `wait`, first wait until at least one has finished (if any is
    /// being sealed).
    fn store_sealed(&mut self, repo: &mut Repository, wait: bool) -> Result<()> {
        let mut wait = wait;
        while self.sealing_jobs > 0 {
            let done = if wait {
                wait = false;
                self.sealed_rx.recv().ok()
            } else {
                match self.sealed_rx.try_recv() {
                    Ok(s) => Some(s),
                    Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(()),
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
                }
            };
            // The pipeline holds a sender, so the channel never disconnects; `None` inside is a
            // worker that panicked.
            let (bytes, sealed) = done.unwrap_or((0, None));
            let sealed = sealed.ok_or_else(|| Error::Command("sealing chunks failed (a worker panicked)".into()))?;
            self.sealing_jobs -= 1;
            self.sealing_bytes -= bytes;
            self.store_job(repo, sealed)?;
        }
        Ok(())
    }

    /// Queue one finished job's sealed blobs for the pack writer and account for their sizes.
    fn store_job(&mut self, repo: &mut Repository, sealed: Vec<SealedBlob>) -> Result<()> {
        for b in sealed {
            for (id, _, share) in b.stored() {
                let refs = self.in_flight.remove(&id).unwrap_or(0);
                self.stats.compressed_size += share as u64 * refs;
                self.stats.deduplicated_size += share as u64;
            }
            self.progress.bytes_stored += b.envelope.len() as u64;
            repo.add_sealed(b)?;
        }
        Ok(())
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
            *self.stats.nchunks.get_or_insert(0) += p.item.chunks.len() as u64;
            if p.item.kind == Kind::File {
                self.stats.nfiles += 1;
                self.progress.files += 1;
                if let Some(k) = p.key {
                    self.seen.remember(k.path, k.stamp, k.no_xattrs, &p.item.chunks);
                }
            }
            self.stream.push(repo, &p.item)?;
            self.progress.path.clear();
            self.progress.path.extend_from_slice(&p.item.path);
            self.reporter.progress(&self.progress);
        }
        Ok(())
    }

    /// A file the files cache vouches for: reuse its chunks if the repository still has all of
    /// them, otherwise read it after all.
    fn cached(
        &mut self,
        repo: &mut Repository,
        mut item: Item,
        key: CacheKey,
        loc: &source::Loc,
        params: ChunkerParams,
        seed: u64,
    ) -> Result<()> {
        let known = repo.known_blobs()?;
        if item.chunks.iter().all(|c| known.contains_key(&c.0)) {
            for c in &item.chunks {
                self.stats.compressed_size += known.get(&c.0).copied().unwrap_or(0) as u64;
                self.stats.original_size += c.1 as u64;
            }
            self.progress.bytes_read += item.size;
            self.reporter.item('U', &item.path);
            self.push_item(repo, item, true, Some(key))?;
            return Ok(());
        }
        item.chunks.clear();
        item.size = 0;
        let shown = item.path.clone();
        let file = match loc.open() {
            Ok(f) => f,
            Err(e) => {
                self.reporter.warning(&format!("{}: {e}", loc.path.display()));
                self.reporter.item('E', &shown);
                return Ok(());
            }
        };
        let slot = self.push_item(repo, item, false, Some(key))?;
        let mut failure: Option<Error> = None;
        let read = walk::read_content(&file, None, params, seed, &mut |c| {
            self.progress.bytes_read += c.len() as u64;
            self.add_chunk(repo, slot, c).map_err(|e| {
                failure = Some(e);
                Hangup
            })
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let changed = match read {
            Ok(Ok(_)) => false,
            Ok(Err(e)) => {
                self.reporter.warning(&walk::read_failed(&loc.path, &e));
                true
            }
            Err(Hangup) => unreachable!("failure handled above"),
        };
        self.reporter.item(if changed { 'E' } else { 'M' }, &shown);
        self.finish_file(repo, slot, changed)
    }
}

fn stream_item(s: &StreamSource, numeric_ids: bool) -> Item {
    let mut it = Item::new(s.path.clone(), Kind::File);
    it.mode = s.mode & 0o7777;
    it.uid = match &s.user {
        Some(u) => uzers::get_user_by_name(u).map_or(0, |u| u.uid()),
        None => rustix::process::getuid().as_raw(),
    };
    it.gid = match &s.group {
        Some(g) => uzers::get_group_by_name(g).map_or(0, |g| g.gid()),
        None => rustix::process::getgid().as_raw(),
    };
    if !numeric_ids {
        it.user = s.user.clone().or_else(|| uzers::get_current_username().map(|u| u.to_string_lossy().into_owned()));
        it.group = s.group.clone().or_else(|| uzers::get_current_groupname().map(|g| g.to_string_lossy().into_owned()));
    }
    it.mtime =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    it
}

/// Drop the source paths that cannot be looked up, each with a warning, as borg does (a cron
/// line's unmounted or mistyped path costs that path, not the night). If none is left, nothing
/// would be archived: that is an error naming the first, and no archive is made.
fn skip_missing_roots(paths: &mut Vec<PathBuf>, reporter: &dyn Reporter) -> Result<()> {
    let mut missing = Vec::new();
    paths.retain(|p| match std::fs::symlink_metadata(p) {
        Ok(_) => true,
        Err(e) => {
            missing.push(Error::io(format!("source path {}", p.display()), e));
            false
        }
    });
    if paths.is_empty() && !missing.is_empty() {
        let more = missing.len() - 1;
        let first = missing.swap_remove(0);
        return Err(if more == 0 { first } else { Error::NoSourcePath(Box::new(first), more) });
    }
    for e in missing {
        reporter.warning(&format!("{e}; skipped"));
    }
    Ok(())
}

/// Run a create. Per-file problems go to `reporter` as warnings; errors abort without committing.
pub fn run(repo: &mut Repository, mut opts: CreateOptions, reporter: &dyn Reporter) -> Result<CreateOutcome> {
    archive::validate_name(&opts.name)?;
    if repo.manifest().find(&opts.name).is_some() {
        return Err(Error::ArchiveExists(opts.name.clone()));
    }
    skip_missing_roots(&mut opts.paths, reporter)?;
    let started = Instant::now();
    let time_start = opts.timestamp.clone().unwrap_or_else(now_rfc3339);
    let seed = repo.keys().chunker_seed();
    let params = opts.chunker.unwrap_or(repo.config().chunker);
    let repo_id = repo.config().id.clone();
    let mut cache = match (opts.files_cache, &opts.stream, opts.dry_run) {
        (Some(mode), None, false) => Some(FilesCache::load(&opts.cache_dir, &repo_id, mode)),
        _ => None,
    };
    let (sealed_tx, sealed_rx) = std::sync::mpsc::channel();
    let mut pl = Pipeline {
        compression: opts.compression,
        chunk_data: vec![],
        chunk_owner: vec![],
        batch_bytes: 0,
        queue: VecDeque::new(),
        queue_base: 0,
        stream: ItemStreamWriter::new(repo),
        stats: ArchiveStats::default(),
        seen: Seen::new(),
        reporter,
        progress: Progress::default(),
        zero_ids: Default::default(),
        in_flight: Default::default(),
        sealing_jobs: 0,
        sealing_bytes: 0,
        sealed_tx,
        sealed_rx,
    };
    let stream = opts.stream.take();
    let producer = opts.producer.take();
    let mut finish = None;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(CHANNEL_EVENTS);
    let cfg = WalkConfig {
        roots: &opts.paths,
        metadata: opts.metadata,
        read_special: opts.read_special,
        exclude_nodump: opts.exclude_nodump,
        listed: opts.listed,
        patterns: &opts.patterns,
        exclude_caches: opts.exclude_caches,
        exclude_if_present: &opts.exclude_if_present,
        keep_exclude_tags: opts.keep_exclude_tags,
        one_file_system: opts.one_file_system,
        dry_run: opts.dry_run,
        params,
        seed,
        cache: cache.as_ref(),
        reporter,
    };
    let result: Result<()> = std::thread::scope(|scope| {
        // Owned by this closure: if the pipeline fails, returning drops the receiver, the reader's
        // next send fails and it stops, so the scope can join it (else it would wait forever on
        // a full channel).
        let rx = rx;
        match (stream, producer) {
            (_, Some(produce)) => {
                scope.spawn(move || {
                    let mut sink = walk::EventSink::new(tx);
                    let _ = produce(&mut sink, params, seed, reporter).and_then(|_| sink.flush());
                });
            }
            (Some(s), None) => {
                let item = stream_item(&s, cfg.metadata.numeric_ids);
                finish = Some(s.finish);
                let mut reader = s.reader;
                scope.spawn(move || {
                    let mut sink = walk::EventSink::new(tx);
                    let _ = (|| -> std::result::Result<(), Hangup> {
                        sink.send(Event::FileStart { item, key: None })?;
                        match walk::read_content(&mut reader, None, params, seed, &mut |c| sink.send(Event::Chunk(c)))?
                        {
                            Ok(_) => sink.send(Event::FileEnd { changed: false })?,
                            Err(e) => sink.send(Event::Abort(format!("reading the input stream: {e}")))?,
                        }
                        sink.flush()
                    })();
                });
            }
            (None, None) => {
                let cfg = &cfg;
                scope.spawn(move || {
                    let _ = walk::walk(cfg, tx);
                });
            }
        }
        let mut current = 0usize;
        for ev in rx.iter().flatten() {
            match ev {
                Event::Item(item) => {
                    pl.push_item(repo, item, true, None)?;
                }
                Event::FileStart { item, key } => current = pl.push_item(repo, item, false, key)?,
                Event::Chunk(c) => {
                    pl.progress.bytes_read += c.len() as u64;
                    pl.add_chunk(repo, current, c)?;
                }
                Event::FileEnd { changed } => pl.finish_file(repo, current, changed)?,
                Event::Cached { item, key, loc } => pl.cached(repo, item, key, &loc, params, seed)?,
                Event::Status(c, path) => reporter.item(c, &path),
                Event::Abort(msg) => return Err(Error::Command(msg)),
            }
        }
        Ok(())
    });
    result?;
    pl.process_batch(repo)?;
    while pl.sealing_jobs > 0 {
        pl.store_sealed(repo, true)?;
    }
    debug_assert!(pl.queue.is_empty());
    if let Some(f) = finish {
        f()?;
    }
    let (tree_ids, tree_added, tree_stored) =
        std::mem::replace(&mut pl.stream, ItemStreamWriter::new(repo)).finish(repo)?;
    pl.stats.deduplicated_size += tree_added;
    pl.stats.compressed_size += tree_stored;
    *pl.stats.nchunks.get_or_insert(0) += tree_ids.len() as u64;
    let archive = Archive {
        version: if opts.unmarked_masters { archive::ARCHIVE_VERSION_UNMARKED } else { archive::ARCHIVE_VERSION },
        name: opts.name.clone(),
        hostname: lock::hostname(),
        username: uzers::get_current_username().map(|u| u.to_string_lossy().into_owned()).unwrap_or_default(),
        time_start,
        time_end: now_rfc3339(),
        command_line: opts.command_line.clone(),
        items: tree_ids,
        stats: pl.stats,
        comment: opts.comment.clone(),
        unmarked_masters: opts.unmarked_masters,
        recreated: vec![],
    };
    if opts.dry_run {
        return Ok(CreateOutcome { archive, id: None, duration: started.elapsed() });
    }
    let id = archive.commit(repo)?;
    if let Some(c) = cache.take() {
        // The archive is committed; a cache that cannot be written only costs time next run.
        if let Err(e) = c.save(pl.seen) {
            reporter.warning(&format!("files cache not saved: {e}"));
        }
    }
    Ok(CreateOutcome { archive, id: Some(id), duration: started.elapsed() })
}
