//! The reading side of create, run on its own thread: walks the source paths (or reads one
//! stream), decides what is excluded, consults the files cache, reads and chunks file content,
//! and sends everything in archive order to the pipeline as [`Event`]s over a bounded channel.

// `struct stat` field types differ between architectures: casts that are no-ops on x86_64 are not
// no-ops everywhere.
#![allow(clippy::unnecessary_cast)]

use super::files_cache::{FilesCache, Lookup, PathKey, Stamp};
use super::source::{self, Loc, Names};
use crate::archive::item::{Item, Kind};
use crate::chunker::{Chunker, ChunkerParams};
use crate::patterns::{Decision, Patterns};
use crate::progress::Reporter;
use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

/// The files-cache key of a file: (the hash of) its absolute path and what it looked like.
#[derive(Clone, Debug)]
pub struct CacheKey {
    pub path: PathKey,
    pub stamp: Stamp,
    /// The file was seen to have no extended attributes (listed now, or known from the cache).
    pub no_xattrs: bool,
}

pub enum Event {
    /// A complete item without content to read.
    Item(Item),
    /// A file whose content follows as `Chunk`s, then `FileEnd`.
    FileStart {
        item: Item,
        key: Option<CacheKey>,
    },
    Chunk(Vec<u8>),
    FileEnd {
        changed: bool,
    },
    /// A file the files cache says is unchanged; `item.chunks` comes from the cache. The pipeline
    /// reads the file at `loc` itself if any of those chunks is missing from the repository.
    Cached {
        item: Item,
        key: CacheKey,
        loc: Loc,
    },
    /// A `--list` status letter and path, reported by the pipeline in walk order (with the
    /// statuses it decides itself, U and M); sent only when the reporter lists.
    Status(char, Vec<u8>),
    /// Abort the create (a dump stream failed to read).
    Abort(String),
}

/// What of a file's metadata to store besides the basics (borg's --numeric-ids, --noxattrs,
/// --noacls). The default stores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Metadata {
    /// Only uid and gid, no user and group names.
    pub numeric_ids: bool,
    /// No extended attributes at all.
    pub no_xattrs: bool,
    /// No ACLs (the `system.posix_acl_*` extended attributes).
    pub no_acls: bool,
    /// Access times too (as they were before garret read the file).
    pub atime: bool,
}

impl Metadata {
    /// The extended attributes to store of those read.
    pub fn keep_xattrs(&self, mut x: Vec<crate::archive::item::Xattr>) -> Vec<crate::archive::item::Xattr> {
        if self.no_xattrs {
            x.clear();
        } else if self.no_acls {
            x.retain(|a| !a.0.starts_with(b"system.posix_acl_"));
        }
        x
    }
}

pub struct WalkConfig<'a> {
    pub roots: &'a [PathBuf],
    pub metadata: Metadata,
    /// Read block and character devices and FIFOs (and symlinks to them) as regular files.
    pub read_special: bool,
    /// Leave out entries flagged "no dump" (`chattr +d`), directories with all they hold.
    pub exclude_nodump: bool,
    /// Archive exactly the roots, in the order given, each as one entry: directories without
    /// their contents and no exclusion rules (`--paths-from-stdin`, `--paths-from-command`).
    pub listed: bool,
    pub patterns: &'a Patterns,
    pub exclude_caches: bool,
    pub exclude_if_present: &'a [String],
    pub keep_exclude_tags: bool,
    pub one_file_system: bool,
    pub dry_run: bool,
    pub params: ChunkerParams,
    pub seed: u64,
    pub cache: Option<&'a FilesCache>,
    pub reporter: &'a dyn Reporter,
}

/// The receiving side hung up (it hit an error); stop walking.
pub struct Hangup;

/// Sends events in small batches: one channel message (and one wake-up of the pipeline) per
/// 256 metadata-only events instead of per event. A batch is sent as soon as it holds a chunk,
/// so the channel never holds more than one chunk per message.
pub struct EventSink {
    tx: SyncSender<Vec<Event>>,
    buf: Vec<Event>,
    /// Chunk bytes in `buf`.
    bytes: usize,
}

/// Chunk bytes an [`EventSink`] gathers before it sends them on. With the channel's few messages
/// this lets the reader run about one batch ahead of the parallel stage, so the cores keep
/// compressing while the next batch is read (a message per chunk let it run only a few small
/// files ahead, and the cores idled while each batch was gathered).
pub const SINK_BYTES: usize = 1024 * 1024;
/// Events an [`EventSink`] gathers at most before it sends them on.
const SINK_EVENTS: usize = 256;

impl EventSink {
    pub fn new(tx: SyncSender<Vec<Event>>) -> Self {
        EventSink { tx, buf: Vec::with_capacity(SINK_EVENTS), bytes: 0 }
    }

    pub fn send(&mut self, e: Event) -> Result<(), Hangup> {
        if let Event::Chunk(c) = &e {
            self.bytes += c.len();
        }
        let urgent = matches!(e, Event::Abort(_));
        self.buf.push(e);
        if urgent || self.bytes >= SINK_BYTES || self.buf.len() >= SINK_EVENTS {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), Hangup> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(SINK_EVENTS));
        self.tx.send(batch).map_err(|_| Hangup)
    }
}

const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Read `reader` in content-defined chunks, handing each to `emit`. Returns the number of bytes
/// read, or the read error after the bytes read before it were handed over.
pub fn read_content<R: Read>(
    reader: R,
    size_hint: Option<u64>,
    params: ChunkerParams,
    seed: u64,
    emit: &mut dyn FnMut(Vec<u8>) -> Result<(), Hangup>,
) -> Result<Result<u64, std::io::Error>, Hangup> {
    read_chunks(reader, size_hint, params, seed, crate::chunker::MAX_FILE_CHUNKS, emit)
}

/// [`read_content`], stopping with [`TooManyChunks`] after `max_chunks` chunks.
fn read_chunks<R: Read>(
    reader: R,
    size_hint: Option<u64>,
    params: ChunkerParams,
    seed: u64,
    max_chunks: u64,
    emit: &mut dyn FnMut(Vec<u8>) -> Result<(), Hangup>,
) -> Result<Result<u64, std::io::Error>, Hangup> {
    let mut chunker = Chunker::new(reader, params, seed, size_hint);
    let (mut n, mut chunks) = (0u64, 0u64);
    loop {
        match chunker.next_chunk() {
            Ok(Some(_)) if chunks == max_chunks => {
                return Ok(Err(std::io::Error::other(TooManyChunks)));
            }
            Ok(Some(c)) => {
                n += c.len() as u64;
                chunks += 1;
                emit(c)?;
            }
            Ok(None) => return Ok(Ok(n)),
            Err(e) => return Ok(Err(e)),
        }
    }
}

/// Why [`read_content`] stopped short of the end of a file with more than
/// [`MAX_FILE_CHUNKS`](crate::chunker::MAX_FILE_CHUNKS) chunks.
#[derive(Debug)]
pub struct TooManyChunks;

impl std::fmt::Display for TooManyChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "more than {} chunks, the most one file may have; archived the bytes before them \
             (use larger --chunker-params for this file)",
            crate::chunker::MAX_FILE_CHUNKS
        )
    }
}

impl std::error::Error for TooManyChunks {}

/// The warning for a file whose read stopped with `e`.
pub fn read_failed(path: &std::path::Path, e: &std::io::Error) -> String {
    if e.get_ref().is_some_and(|inner| inner.is::<TooManyChunks>()) {
        format!("{}: {e}", path.display())
    } else {
        format!("{}: read error, archived the bytes before it: {e}", path.display())
    }
}

/// [`read_content`] for a file of `size` bytes, at most the chunker's minimum: such a file is one
/// chunk, so it is read straight into the chunk's own buffer, with no zero-filled read buffer to
/// copy it out of (half of the bench tree's bytes are in files this small). A file that grew past
/// the minimum while being read goes on through the chunker from where the read stopped, so it
/// is cut exactly as [`read_content`] would cut it.
fn read_small(
    file: &File,
    size: u64,
    params: ChunkerParams,
    seed: u64,
    emit: &mut dyn FnMut(Vec<u8>) -> Result<(), Hangup>,
) -> Result<Result<u64, std::io::Error>, Hangup> {
    let min = u64::from(params.min);
    let mut data = Vec::with_capacity(size.min(min) as usize);
    let read = file.take(min + 1).read_to_end(&mut data);
    let n = data.len() as u64;
    match read {
        Ok(_) if n > min => read_content(std::io::Cursor::new(data).chain(file), None, params, seed, emit),
        Ok(_) => {
            if n > 0 {
                emit(data)?;
            }
            Ok(Ok(n))
        }
        Err(e) => {
            if n > 0 {
                emit(data)?;
            }
            Ok(Err(e))
        }
    }
}

fn is_special(ft: FileType) -> bool {
    matches!(ft, FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo)
}

/// Entries prepared in parallel at a time.
const BATCH_ENTRIES: usize = 256;
/// Files to be read up to this size are fetched whole as their batch is prepared: the batch's
/// reads then reach the disk at once instead of one file at a time. Larger files are left to the
/// read-ahead of their own reads (fetching their start early too would split each one into two
/// trips to a disk that seeks).
const PREFETCH_BYTES: u64 = 1 << 20;

/// Descriptor numbers to have room for before any thread starts: the files of the batches being
/// prepared and read (a few times [`BATCH_ENTRIES`]) plus the repository's own.
const DESCRIPTOR_TABLE: i32 = 1024;

/// Grow this process's descriptor table to [`DESCRIPTOR_TABLE`] entries (or the soft limit on open
/// files, if lower) while the process has a single thread; call it first thing in `main`.
///
/// The kernel grows the table as descriptors are opened, doubling it from 64 entries, and while
/// the process has other threads each doubling waits for an RCU grace period. The walk's threads
/// opening their first batches hit four such waits at the start of every create: sampling the
/// threads' kernel wait channels every 0.5 ms found 66 to 101 samples in `expand_files` or
/// `synchronize_rcu` per create, tens of milliseconds in which the reader waited for its first
/// files; none once the table is grown here. Growing the table in one step while
/// single-threaded waits for nothing. Nothing is left open.
pub fn reserve_descriptor_table() {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
    let top = (DESCRIPTOR_TABLE as u64).min(soft).saturating_sub(1) as i32;
    if top < 64 {
        return;
    }
    // F_DUPFD takes the lowest free number from `top` up, so no open descriptor is touched; any
    // of 0-2 that is open serves as the one to copy (cron may start us with some closed). The
    // copy closes again as it drops.
    use std::os::fd::AsFd;
    let _ = rustix::io::fcntl_dupfd_cloexec(std::io::stderr().as_fd(), top)
        .or_else(|_| rustix::io::fcntl_dupfd_cloexec(std::io::stdout().as_fd(), top))
        .or_else(|_| rustix::io::fcntl_dupfd_cloexec(std::io::stdin().as_fd(), top));
}

/// A walked path waiting to be archived, in walk order.
/// What the walk does with a path (see `Walker::verdict`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Store,
    Skip,
    WalkOnly,
}

enum Job {
    /// Where it is and its archive path.
    Entry(Loc, Vec<u8>),
    /// Excluded by a pattern or an exclusion tag (reported as `x`).
    Excluded(Vec<u8>),
    /// The walk could not read it: warning and archive path.
    Failed(String, Vec<u8>),
    /// Everything below this stored directory was walked: its `d` status is reported now,
    /// after its contents, as borg reports it.
    DirDone(Vec<u8>),
}

/// What [`Walker::prepare`] found out about an entry.
struct Entry {
    loc: Loc,
    ap: Vec<u8>,
    st: Stat,
    xattrs: std::io::Result<Vec<crate::archive::item::Xattr>>,
    /// Symlinks only.
    target: Option<std::io::Result<Vec<u8>>>,
    /// Regular files outside a dry run: the files-cache key and verdict.
    cache: Option<(CacheKey, Lookup)>,
    /// Regular files to be read: the file, opened (and fetched, up to [`PREFETCH_BYTES`]) while
    /// the batch was prepared.
    opened: Option<std::io::Result<File>>,
}

// An Entry is large (it holds a `struct stat`), but batches are short-lived and hold at most
// BATCH_ENTRIES of them: boxing would only add an allocation per file.
#[allow(clippy::large_enum_variant)]
enum Prepared {
    Entry(Entry),
    Excluded(Vec<u8>),
    Failed(String, Vec<u8>),
    DirDone(Vec<u8>),
}

/// A directory being walked: its descriptor and its entries, `next` the first not yet walked.
struct Frame {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    ap: Vec<u8>,
    /// The pattern that decided this directory (`Patterns::decide_child`).
    rule: Option<usize>,
    entries: source::Listing,
    next: usize,
    /// Stored (not only walked through): a [`Job::DirDone`] follows its contents.
    stored: bool,
}

struct Walker<'a, 'c> {
    cfg: &'c WalkConfig<'a>,
    tx: EventSink,
    names: Names,
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
    /// The current root and its absolute form (files-cache keys are absolute paths).
    root: (PathBuf, PathBuf),
    /// Threads of the walk's own for [`prepare`](Walker::prepare) (stat, extended attributes,
    /// files-cache lookup). On the global pool these queued behind the chunks being compressed,
    /// the walk stalled, and the compressing threads then ran dry (cold create 5.63 -> 5.48 s).
    pool: Option<rayon::ThreadPool>,
    /// Directories archived whose status waits for their [`Job::DirDone`], innermost last.
    open_dirs: Vec<Vec<u8>>,
}

/// Every open directory of the walk's current branch holds a descriptor: let deep trees have
/// as many as the hard limit allows.
fn raise_fd_limit() {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if lim.current < lim.maximum {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit { current: lim.maximum, maximum: lim.maximum },
        );
    }
}

pub fn walk(cfg: &WalkConfig<'_>, tx: SyncSender<Vec<Event>>) -> Result<(), Hangup> {
    raise_fd_limit();
    let mut w = Walker {
        cfg,
        tx: EventSink::new(tx),
        names: Names::new(cfg.metadata.numeric_ids),
        hardlinks: HashMap::new(),
        root: Default::default(),
        pool: rayon::ThreadPoolBuilder::new()
            .num_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name(|i| format!("garret-walk-{i}"))
            .build()
            .ok(),
        open_dirs: Vec::new(),
    };
    if cfg.listed {
        w.listed()?;
    } else {
        for root in cfg.roots {
            w.root(root)?;
        }
    }
    w.tx.flush()
}

impl Walker<'_, '_> {
    fn status(&mut self, c: char, ap: &[u8]) -> Result<(), Hangup> {
        if !self.cfg.reporter.lists() {
            return Ok(());
        }
        // A dry run stores nothing: borg shows '-' for all it would store.
        let c = if self.cfg.dry_run && !matches!(c, 'x' | 'E') { '-' } else { c };
        self.tx.send(Event::Status(c, ap.to_vec()))
    }

    fn warn(&self, msg: String) {
        self.cfg.reporter.warning(&msg);
    }

    /// Tag files that exclude the directory open as `dir`, if any.
    fn exclusion_tags(&self, dir: &OwnedFd) -> Vec<String> {
        let mut tags = vec![];
        if self.cfg.exclude_caches {
            let mut head = [0u8; 43];
            let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
            if let Ok(fd) = source::with_noatime(flags, |f| rustix::fs::openat(dir, CACHEDIR_TAG, f, Mode::empty())) {
                if File::from(fd).read_exact(&mut head).is_ok() && head == CACHEDIR_SIGNATURE {
                    tags.push(CACHEDIR_TAG.to_string());
                }
            }
        }
        for name in self.cfg.exclude_if_present {
            if rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                tags.push(name.clone());
            }
        }
        tags
    }

    /// The files-cache key of `p`, a path below the current root: the hash of its absolute form
    /// (the root is made absolute once, not with a getcwd per file).
    fn cache_key(&self, p: &Path) -> PathKey {
        if self.cfg.listed {
            return PathKey::of(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).as_os_str().as_bytes());
        }
        let (root, abs) = &self.root;
        let abs = abs.as_os_str().as_bytes();
        match p.strip_prefix(root) {
            Ok(rest) if rest.as_os_str().is_empty() => PathKey::of(abs),
            Ok(rest) if abs.ends_with(b"/") => PathKey::of_parts(&[abs, rest.as_os_str().as_bytes()]),
            Ok(rest) => PathKey::of_parts(&[abs, b"/", rest.as_os_str().as_bytes()]),
            Err(_) => PathKey::of(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).as_os_str().as_bytes()),
        }
    }

    /// [`WalkConfig::listed`]: the roots as entries of their own, prepared in batches.
    fn listed(&mut self) -> Result<(), Hangup> {
        let mut batch: Vec<Job> = Vec::with_capacity(BATCH_ENTRIES);
        // Each path is reached through its parent directory, so a symlink is stored as one
        // rather than followed (as borg does here); consecutive paths usually share a parent.
        let mut parent: Option<(PathBuf, std::io::Result<Arc<OwnedFd>>)> = None;
        for p in self.cfg.roots {
            let ap = source::archive_root(p);
            if ap.is_empty() {
                continue; // "/" or "." has no archive path of its own
            }
            let job = match (p.parent(), p.file_name()) {
                (Some(dir), Some(name)) => {
                    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
                    if parent.as_ref().is_none_or(|(d, _)| d != dir) {
                        parent = None;
                    }
                    let (d, fd) = parent.get_or_insert_with(|| {
                        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
                        (
                            dir.to_path_buf(),
                            rustix::fs::open(dir, flags, Mode::empty()).map(Arc::new).map_err(Into::into),
                        )
                    });
                    match fd {
                        Ok(fd) => Job::Entry(Loc::child(fd, d, name.to_owned()), ap),
                        Err(e) => Job::Failed(format!("{}: {e}", d.display()), ap),
                    }
                }
                _ => Job::Entry(Loc::root(p), ap),
            };
            batch.push(job);
            if batch.len() >= BATCH_ENTRIES {
                self.run_batch(std::mem::take(&mut batch))?;
            }
        }
        self.run_batch(batch)
    }

    /// Walk one root depth first, entries of a directory in bytewise name order, a directory
    /// before its contents (its status is reported after them); archive in batches.
    fn root(&mut self, root: &Path) -> Result<(), Hangup> {
        let prefix = source::archive_root(root);
        self.root = (root.to_path_buf(), std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()));
        let mut batch: Vec<Job> = Vec::with_capacity(BATCH_ENTRIES);
        let mut stack: Vec<Frame> = Vec::new();
        let top = Loc::root(root);
        let (root_dev, root_is_dir) = match top.stat() {
            Ok(st) => (st.st_dev as u64, FileType::from_raw_mode(st.st_mode as _) == FileType::Directory),
            Err(_) => (0, false), // reported when the root entry is prepared
        };
        // `create REPO::A /`: the root itself has no archive path and is not stored.
        let (verdict, rule) =
            if prefix.is_empty() { (Verdict::Store, None) } else { self.verdict(&prefix, None, &top, root_is_dir) };
        if root_is_dir && verdict != Verdict::Skip {
            self.enter(top, prefix, rule, verdict == Verdict::Store, root_dev, &mut batch, &mut stack);
        } else if verdict == Verdict::Skip {
            batch.push(Job::Excluded(prefix));
        } else if !prefix.is_empty() {
            batch.push(Job::Entry(top, prefix));
        }
        while let Some(frame) = stack.last_mut() {
            if frame.next == frame.entries.len() {
                if let Some(done) = stack.pop().filter(|f| f.stored) {
                    batch.push(Job::DirDone(done.ap));
                }
                continue;
            }
            let (name, ft) = frame.entries.get(frame.next);
            let name = name.to_owned();
            frame.next += 1;
            let mut ap = frame.ap.clone();
            if !ap.is_empty() {
                ap.push(b'/');
            }
            ap.extend_from_slice(name.as_bytes());
            let loc = Loc::child(&frame.fd, &frame.path, name);
            let is_dir = match ft {
                FileType::Unknown => {
                    loc.stat().is_ok_and(|st| FileType::from_raw_mode(st.st_mode as _) == FileType::Directory)
                }
                t => t == FileType::Directory,
            };
            let (verdict, rule) = self.verdict(&ap, Some(frame.rule), &loc, is_dir);
            if verdict == Verdict::Skip {
                batch.push(Job::Excluded(ap));
            } else if is_dir {
                self.enter(loc, ap, rule, verdict == Verdict::Store, root_dev, &mut batch, &mut stack);
            } else {
                batch.push(Job::Entry(loc, ap));
            }
            if batch.len() >= BATCH_ENTRIES {
                self.run_batch(std::mem::take(&mut batch))?;
            }
        }
        self.run_batch(batch)
    }

    /// What the walk does with `ap`: store it, skip it, or (a directory a `-` pattern excludes
    /// while include patterns could select something below it) walk it without storing it.
    /// `parent`: the pattern that decided the parent directory, `None` for a root (decided
    /// whole). Returns the pattern that decided `ap` too.
    fn verdict(&self, ap: &[u8], parent: Option<Option<usize>>, loc: &Loc, is_dir: bool) -> (Verdict, Option<usize>) {
        let (decision, rule) = match parent {
            Some(p) => self.cfg.patterns.decide_child(ap, p),
            None => self.cfg.patterns.decide_at(ap),
        };
        if self.cfg.exclude_nodump && loc.nodump() {
            return (Verdict::Skip, rule);
        }
        let v = match decision {
            Decision::Include => Verdict::Store,
            Decision::Exclude if is_dir && self.cfg.patterns.has_includes() => Verdict::WalkOnly,
            Decision::Exclude | Decision::ExcludeNoRecurse => Verdict::Skip,
        };
        (v, rule)
    }

    /// Queue directory `loc` (unless `store` is false: a directory only walked through) and,
    /// unless an exclusion tag or `--one-file-system` says no, open it and push its entries to
    /// walk next.
    #[allow(clippy::too_many_arguments)]
    fn enter(
        &self,
        loc: Loc,
        ap: Vec<u8>,
        rule: Option<usize>,
        store: bool,
        root_dev: u64,
        batch: &mut Vec<Job>,
        stack: &mut Vec<Frame>,
    ) {
        if !store {
            batch.push(Job::Excluded(ap.clone()));
        }
        let fd = match loc.open_dir() {
            Ok(fd) => fd,
            Err(e) => {
                let vanished = e.kind() == std::io::ErrorKind::NotFound;
                let msg = format!("{}: {e}", loc.path.display());
                let shown = loc.path.as_os_str().as_bytes().to_vec();
                if store && !ap.is_empty() {
                    batch.push(Job::Entry(loc, ap.clone())); // its own metadata may still be readable
                }
                if !vanished {
                    batch.push(Job::Failed(msg, shown));
                }
                if store && !ap.is_empty() {
                    batch.push(Job::DirDone(ap));
                }
                return;
            }
        };
        let tags = self.exclusion_tags(&fd);
        if !tags.is_empty() {
            if !store {
                return; // excluded already; nothing below it is walked (as borg)
            }
            batch.push(Job::Excluded(ap.clone()));
            if self.cfg.keep_exclude_tags {
                let fd = Arc::new(fd);
                let path = loc.path.clone();
                batch.push(Job::Entry(loc, ap.clone()));
                for t in tags {
                    let mut tap = ap.clone();
                    tap.push(b'/');
                    tap.extend_from_slice(t.as_bytes());
                    batch.push(Job::Entry(Loc::child(&fd, &path, OsString::from(t)), tap));
                }
                batch.push(Job::DirDone(ap));
            }
            return;
        }
        // Like borg: a mount point below the root is archived, its contents are not.
        let crosses = self.cfg.one_file_system && rustix::fs::fstat(&fd).is_ok_and(|st| st.st_dev as u64 != root_dev);
        let entries = if crosses { Ok(None) } else { source::Listing::read(&fd).map(Some) };
        crate::faults::pause_point("dir-listed");
        let path = loc.path.clone();
        let stored = store && !ap.is_empty();
        if stored {
            batch.push(Job::Entry(loc, ap.clone()));
        }
        match entries {
            Ok(Some(entries)) => stack.push(Frame { fd: Arc::new(fd), path, ap, rule, entries, next: 0, stored }),
            Ok(None) if stored => batch.push(Job::DirDone(ap)),
            Ok(None) => {}
            Err(e) => {
                batch.push(Job::Failed(format!("{}: {e}", path.display()), path.into_os_string().into_vec()));
                if stored {
                    batch.push(Job::DirDone(ap));
                }
            }
        }
    }

    /// Stat the batch's entries, read their extended attributes and consult the files cache on
    /// all cores (system calls dominate a walk over unchanged files), then archive them in walk
    /// order on this thread.
    fn run_batch(&mut self, batch: Vec<Job>) -> Result<(), Hangup> {
        let prepare = || batch.into_par_iter().map(|j| self.prepare(j)).collect::<Vec<Prepared>>();
        let prepared = match &self.pool {
            Some(pool) => pool.install(prepare),
            None => prepare(),
        };
        for p in prepared {
            match p {
                Prepared::Excluded(ap) => self.status('x', &ap)?,
                Prepared::Failed(msg, ap) => {
                    self.warn(msg);
                    self.status('E', &ap)?;
                }
                Prepared::Entry(e) => self.entry(e)?,
                Prepared::DirDone(ap) => {
                    if self.open_dirs.last() == Some(&ap) {
                        self.open_dirs.pop();
                        self.status('d', &ap)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The part of archiving an entry that needs no walker state: its metadata, extended
    /// attributes, symlink target and files-cache verdict.
    fn prepare(&self, job: Job) -> Prepared {
        let (loc, ap) = match job {
            Job::Entry(l, ap) => (l, ap),
            Job::Excluded(ap) => return Prepared::Excluded(ap),
            Job::Failed(m, ap) => return Prepared::Failed(m, ap),
            Job::DirDone(ap) => return Prepared::DirDone(ap),
        };
        let mut st = match loc.stat() {
            Ok(st) => st,
            Err(e) => return Prepared::Failed(format!("{}: {e}", loc.path.display()), ap),
        };
        let mut ft = FileType::from_raw_mode(st.st_mode as _);
        if self.cfg.read_special && ft == FileType::Symlink {
            // A symlink to a device or FIFO is read through (e.g. /dev/vg/snap -> ../dm-3).
            if let Some(t) = loc.stat_follow().ok().filter(|t| is_special(FileType::from_raw_mode(t.st_mode as _))) {
                st = t;
                ft = FileType::from_raw_mode(st.st_mode as _);
            }
        }
        let mut cache = None;
        if ft == FileType::RegularFile && !self.cfg.dry_run {
            let key = CacheKey { path: self.cache_key(&loc.path), stamp: Stamp::of(&st), no_xattrs: false };
            let verdict = match self.cfg.cache {
                Some(c) => c.lookup(&key.path, &key.stamp),
                None => Lookup::Absent,
            };
            cache = Some((key, verdict));
        }
        let xattrs = match &mut cache {
            _ if self.cfg.metadata.no_xattrs => Ok(vec![]),
            // Unchanged since it was seen without any: there are none to list (one path lookup
            // and syscall less per file in a nightly run).
            Some((key, Lookup::Hit { no_xattrs: true, .. })) => {
                key.no_xattrs = true;
                Ok(vec![])
            }
            cache => {
                let listed = loc.xattrs();
                if let (Some((key, _)), Ok(x)) = (cache, &listed) {
                    key.no_xattrs = x.is_empty();
                }
                listed.map(|x| self.cfg.metadata.keep_xattrs(x))
            }
        };
        let target = (ft == FileType::Symlink).then(|| loc.read_link());
        // A file about to be read is opened here, on the walk's threads, and a small one is
        // fetched in the background: when its data is not in memory (a first backup, files
        // changed long ago) the reader thread no longer waits for the disk one file at a time.
        // Out of descriptors (a deep tree holds one per directory level), it is opened when
        // read, as if not prepared.
        let opened = match &cache {
            Some((_, Lookup::Hit { .. })) | None => None,
            Some(_) => {
                crate::faults::pause_point("file-stated");
                match loc.open() {
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => None,
                    r => Some(r.inspect(|f| {
                        let size = st.st_size as u64;
                        if (1..=PREFETCH_BYTES).contains(&size) {
                            let _ = rustix::fs::fadvise(
                                f,
                                0,
                                std::num::NonZeroU64::new(size),
                                rustix::fs::Advice::WillNeed,
                            );
                        }
                    })),
                }
            }
        };
        Prepared::Entry(Entry { loc, ap, st, xattrs, target, cache, opened })
    }

    /// Archive one prepared filesystem entry.
    fn entry(&mut self, e: Entry) -> Result<(), Hangup> {
        let Entry { loc, ap, st, xattrs, target, cache, opened } = e;
        let Some(mut item) = source::item_from_metadata(ap.clone(), &st, &mut self.names) else {
            return Ok(()); // sockets are not archived
        };
        if self.cfg.metadata.atime {
            item.atime =
                Some((st.st_atime as i64).saturating_mul(1_000_000_000).saturating_add(st.st_atime_nsec as i64));
        }
        match xattrs {
            Ok(x) => item.xattrs = x,
            Err(e) => self.warn(format!("{}: reading extended attributes: {e}", loc.path.display())),
        }
        if item.kind != Kind::Dir && st.st_nlink > 1 {
            let key = (st.st_dev as u64, st.st_ino as u64);
            if let Some(first) = self.hardlinks.get(&key) {
                item.kind = Kind::Hardlink;
                item.source = Some(first.clone());
                item.size = st.st_size as u64;
                self.status('h', &ap)?;
                return self.tx.send(Event::Item(item));
            }
            self.hardlinks.insert(key, ap.clone());
            item.hardlink_master = true;
        }
        match item.kind {
            Kind::Symlink => match target {
                Some(Ok(t)) => item.target = Some(t),
                Some(Err(e)) => {
                    self.warn(format!("{}: reading symlink: {e}", loc.path.display()));
                    return self.status('E', &ap);
                }
                None => unreachable!("prepare reads the target of every symlink"),
            },
            Kind::File => return self.file(loc, item, &st, cache, opened),
            Kind::CharDev | Kind::BlockDev | Kind::Fifo if self.cfg.read_special => return self.special(loc, item),
            _ => {}
        }
        if item.kind == Kind::Dir && !self.cfg.listed {
            // reported after its contents (Job::DirDone), as borg does
            self.open_dirs.push(ap);
            return self.tx.send(Event::Item(item));
        }
        let letter = match item.kind {
            Kind::Dir => 'd',
            Kind::Symlink => 's',
            Kind::Fifo => 'f',
            Kind::CharDev => 'c',
            Kind::BlockDev => 'b',
            _ => 'A',
        };
        self.status(letter, &ap)?;
        self.tx.send(Event::Item(item))
    }

    /// The file `open` gave, or `None` after a warning naming it (status E).
    fn opened(&mut self, open: std::io::Result<File>, loc: &Loc, path: &[u8]) -> Result<Option<File>, Hangup> {
        match open {
            Ok(f) => Ok(Some(f)),
            Err(e) => {
                self.warn(format!("{}: {e}", loc.path.display()));
                self.status('E', path)?;
                Ok(None)
            }
        }
    }

    /// `--read-special`: store a device's or FIFO's content as a regular file (no files cache:
    /// nothing tells whether it changed).
    fn special(&mut self, loc: Loc, mut item: Item) -> Result<(), Hangup> {
        (item.kind, item.rdev, item.size) = (Kind::File, 0, 0);
        if self.cfg.dry_run {
            self.status('-', &item.path)?;
            return self.tx.send(Event::Item(item));
        }
        let Some(file) = self.opened(loc.open_special(), &loc, &item.path)? else { return Ok(()) };
        let ap = item.path.clone();
        self.tx.send(Event::FileStart { item, key: None })?;
        let (params, seed) = (self.cfg.params, self.cfg.seed);
        let tx = &mut self.tx;
        let read = read_content(&file, None, params, seed, &mut |c| tx.send(Event::Chunk(c)))?;
        let changed = match read {
            Ok(_) => false,
            Err(e) => {
                self.warn(read_failed(&loc.path, &e));
                true
            }
        };
        self.tx.send(Event::FileEnd { changed })?;
        self.status(if changed { 'E' } else { 'A' }, &ap)
    }

    fn file(
        &mut self,
        loc: Loc,
        mut item: Item,
        st: &Stat,
        cache: Option<(CacheKey, Lookup)>,
        opened: Option<std::io::Result<File>>,
    ) -> Result<(), Hangup> {
        let Some((key, verdict)) = cache else {
            // A dry run: nothing is read.
            item.size = st.st_size as u64;
            self.status('-', &item.path)?;
            return self.tx.send(Event::Item(item));
        };
        let stamp = key.stamp;
        let known = match verdict {
            Lookup::Hit { chunks, .. } => {
                item.chunks = chunks;
                item.size = stamp.size;
                return self.tx.send(Event::Cached { item, key, loc });
            }
            Lookup::Changed => true,
            Lookup::Absent => false,
        };
        let Some(file) = self.opened(opened.unwrap_or_else(|| loc.open()), &loc, &item.path)? else { return Ok(()) };
        let ap = item.path.clone();
        self.tx.send(Event::FileStart { item, key: Some(key) })?;
        let (params, seed) = (self.cfg.params, self.cfg.seed);
        let tx = &mut self.tx;
        let sparse;
        let (read, file) = if stamp.size <= u64::from(params.min) {
            (read_small(&file, stamp.size, params, seed, &mut |c| tx.send(Event::Chunk(c)))?, &file)
        } else {
            let mut reader = source::SparseReader::new(file);
            let read = read_content(&mut reader, Some(stamp.size), params, seed, &mut |c| tx.send(Event::Chunk(c)))?;
            sparse = reader;
            (read, sparse.file())
        };
        let mut changed = false;
        if let Err(e) = read {
            self.warn(read_failed(&loc.path, &e));
            changed = true;
        }
        let now = rustix::fs::fstat(file).map(|st| Stamp::of(&st)).ok();
        if now.is_none_or(|n| n.size != stamp.size || n.mtime != stamp.mtime || n.ctime != stamp.ctime) {
            self.warn(format!("{}: file changed while we read it", loc.path.display()));
            changed = true;
        }
        self.tx.send(Event::FileEnd { changed })?;
        let status = if changed {
            'E'
        } else if known {
            'M'
        } else {
            'A'
        };
        self.status(status, &ap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::tests::pseudo_random;
    use crate::chunker::DATA_PARAMS;

    fn chunks_of(read: impl FnOnce(&mut dyn FnMut(Vec<u8>) -> Result<(), Hangup>) -> u64) -> Vec<Vec<u8>> {
        let mut out = vec![];
        let n = read(&mut |c| {
            out.push(c);
            Ok(())
        });
        assert_eq!(n, out.iter().map(|c| c.len() as u64).sum::<u64>());
        out
    }

    /// A file with more chunks than one item may list is archived up to the limit and reported
    /// with the way out; one chunk fewer is no problem.
    #[test]
    fn files_with_too_many_chunks_stop_at_the_limit() {
        let params = ChunkerParams::fixed(64).unwrap();
        let data = pseudo_random(64 * 10, 7);
        let mut got = 0;
        let r = read_chunks(&data[..], None, params, 1, 10, &mut |_| {
            got += 1;
            Ok(())
        });
        assert_eq!(r.ok().unwrap().unwrap(), 640);
        assert_eq!(got, 10);
        let r = read_chunks(&data[..], None, params, 1, 9, &mut |_| Ok(()));
        let e = r.ok().unwrap().unwrap_err();
        let said = read_failed(std::path::Path::new("/img"), &e);
        assert!(said.starts_with("/img: more than 16777216 chunks"), "{said}");
        assert!(said.contains("--chunker-params"), "{said}");
        let other = read_failed(std::path::Path::new("/f"), &std::io::Error::other("EIO"));
        assert_eq!(other, "/f: read error, archived the bytes before it: EIO");
    }

    /// --noacls drops only the ACL attributes, --noxattrs all of them.
    #[test]
    fn metadata_options_choose_the_extended_attributes() {
        use crate::archive::item::Xattr;
        let all = || {
            ["user.a", "system.posix_acl_access", "security.selinux", "system.posix_acl_default"]
                .map(|n| Xattr(n.as_bytes().to_vec(), b"v".to_vec()))
                .to_vec()
        };
        let names = |m: Metadata| -> Vec<String> {
            m.keep_xattrs(all()).iter().map(|x| String::from_utf8_lossy(&x.0).into_owned()).collect()
        };
        assert_eq!(names(Metadata::default()).len(), 4);
        assert_eq!(names(Metadata { no_acls: true, ..Default::default() }), ["user.a", "security.selinux"]);
        assert!(names(Metadata { no_xattrs: true, no_acls: true, ..Default::default() }).is_empty());
    }

    /// Small files are read whole, as one chunk; a file found bigger than its size said (it grew
    /// after the stat) is cut exactly as the chunker cuts it.
    #[test]
    fn small_files_are_one_chunk_and_grown_ones_are_cut_as_usual() {
        let min = DATA_PARAMS.min as usize;
        let dir = tempfile::tempdir().unwrap();
        for (len, stated) in [(0, 0), (1, 1), (5000, 5000), (min, min), (min + 1, min), (9_000_000, 100)] {
            let data = pseudo_random(len, len as u64 + 7);
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &data).unwrap();
            let file = File::open(&path).unwrap();
            let got = chunks_of(|emit| read_small(&file, stated as u64, DATA_PARAMS, 42, emit).ok().unwrap().unwrap());
            let want = chunks_of(|emit| read_content(&data[..], None, DATA_PARAMS, 42, emit).ok().unwrap().unwrap());
            assert_eq!(got, want, "{len} bytes, stated {stated}");
            assert_eq!(got.concat(), data);
            if len <= min {
                assert_eq!(got.len(), usize::from(len > 0), "{len} bytes: one chunk");
            }
        }
    }
}
