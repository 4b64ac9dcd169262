//! The reading side of create, run on its own thread: walks the source paths (or reads one
//! stream), decides what is excluded, consults the files cache, reads and chunks file content,
//! and sends everything in archive order to the pipeline as [`Event`]s over a bounded channel.

use super::files_cache::{FilesCache, Lookup, PathKey, Stamp};
use super::source::{self, Names};
use crate::archive::item::{Item, Kind};
use crate::chunker::{Chunker, ChunkerParams};
use crate::patterns::Patterns;
use crate::progress::Reporter;
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

/// The files-cache key of a file: (the hash of) its absolute path and what it looked like.
#[derive(Clone, Debug)]
pub struct CacheKey {
    pub path: PathKey,
    pub stamp: Stamp,
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
    /// reads `fs_path` itself if any of those chunks is missing from the repository.
    Cached {
        item: Item,
        key: CacheKey,
        fs_path: PathBuf,
    },
    /// Abort the create (a dump stream failed to read).
    Abort(String),
}

pub struct WalkConfig<'a> {
    pub roots: &'a [PathBuf],
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
}

impl EventSink {
    pub fn new(tx: SyncSender<Vec<Event>>) -> Self {
        EventSink { tx, buf: Vec::with_capacity(256) }
    }

    pub fn send(&mut self, e: Event) -> Result<(), Hangup> {
        let urgent = matches!(e, Event::Chunk(_) | Event::Abort(_));
        self.buf.push(e);
        if urgent || self.buf.len() >= 256 {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), Hangup> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(256));
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
    let mut chunker = Chunker::new(reader, params, seed, size_hint);
    let mut n = 0u64;
    loop {
        match chunker.next_chunk() {
            Ok(Some(c)) => {
                n += c.len() as u64;
                emit(c)?;
            }
            Ok(None) => return Ok(Ok(n)),
            Err(e) => return Ok(Err(e)),
        }
    }
}

/// Open a regular file for reading without following a symlink that replaced it.
pub fn open_source(p: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(p)
}

/// Entries prepared in parallel at a time.
const BATCH_ENTRIES: usize = 256;

/// A walked path waiting to be archived, in walk order.
enum Job {
    /// Filesystem path and archive path.
    Entry(PathBuf, Vec<u8>),
    /// Excluded by a pattern or an exclusion tag (reported as `x`).
    Excluded(Vec<u8>),
    /// The walk could not read it: warning and archive path.
    Failed(String, Vec<u8>),
}

/// What [`Walker::prepare`] found out about an entry.
struct Entry {
    fs_path: PathBuf,
    ap: Vec<u8>,
    md: std::fs::Metadata,
    xattrs: std::io::Result<Vec<crate::archive::item::Xattr>>,
    /// Symlinks only.
    target: Option<std::io::Result<PathBuf>>,
    /// Regular files outside a dry run: the files-cache key and verdict.
    cache: Option<(CacheKey, Lookup)>,
}

enum Prepared {
    Entry(Entry),
    Excluded(Vec<u8>),
    Failed(String, Vec<u8>),
}

struct Walker<'a, 'c> {
    cfg: &'c WalkConfig<'a>,
    tx: EventSink,
    names: Names,
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
    /// The current root and its absolute form (files-cache keys are absolute paths).
    root: (PathBuf, PathBuf),
}

pub fn walk(cfg: &WalkConfig<'_>, tx: SyncSender<Vec<Event>>) -> Result<(), Hangup> {
    let mut w = Walker {
        cfg,
        tx: EventSink::new(tx),
        names: Names::default(),
        hardlinks: HashMap::new(),
        root: Default::default(),
    };
    for root in cfg.roots {
        w.root(root)?;
    }
    w.tx.flush()
}

impl Walker<'_, '_> {
    fn status(&self, c: char, ap: &[u8]) {
        self.cfg.reporter.item(c, ap);
    }

    fn warn(&self, msg: String) {
        self.cfg.reporter.warning(&msg);
    }

    /// Tag files that exclude the directory `dir`, if any.
    fn exclusion_tags(&self, dir: &Path) -> Vec<String> {
        let mut tags = vec![];
        if self.cfg.exclude_caches {
            let mut head = [0u8; 43];
            if let Ok(mut f) = File::open(dir.join(CACHEDIR_TAG)) {
                if f.read_exact(&mut head).is_ok() && head == CACHEDIR_SIGNATURE {
                    tags.push(CACHEDIR_TAG.to_string());
                }
            }
        }
        for name in self.cfg.exclude_if_present {
            if std::fs::symlink_metadata(dir.join(name)).is_ok() {
                tags.push(name.clone());
            }
        }
        tags
    }

    /// The files-cache key of `p`, a path below the current root: the hash of its absolute form
    /// (the root is made absolute once, not with a getcwd per file).
    fn cache_key(&self, p: &Path) -> PathKey {
        let (root, abs) = &self.root;
        let abs = abs.as_os_str().as_bytes();
        match p.strip_prefix(root) {
            Ok(rest) if rest.as_os_str().is_empty() => PathKey::of(abs),
            Ok(rest) if abs.ends_with(b"/") => PathKey::of_parts(&[abs, rest.as_os_str().as_bytes()]),
            Ok(rest) => PathKey::of_parts(&[abs, b"/", rest.as_os_str().as_bytes()]),
            Err(_) => PathKey::of(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).as_os_str().as_bytes()),
        }
    }

    fn root(&mut self, root: &Path) -> Result<(), Hangup> {
        let prefix = source::archive_root(root);
        self.root = (root.to_path_buf(), std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()));
        let mut it = walkdir::WalkDir::new(root)
            .follow_links(false)
            .same_file_system(self.cfg.one_file_system)
            .sort_by_file_name()
            .into_iter();
        let mut batch: Vec<Job> = Vec::with_capacity(BATCH_ENTRIES);
        while let Some(entry) = it.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = e.path().map(|p| p.display().to_string()).unwrap_or_default();
                    let why = e.io_error().map(|e| e.to_string()).unwrap_or_else(|| e.to_string());
                    // A directory or file that vanished during the walk is not an error of ours.
                    batch.push(Job::Failed(format!("{path}: {why}"), path.into_bytes()));
                    continue;
                }
            };
            let fs_path = entry.path();
            let ap = source::join(&prefix, fs_path.strip_prefix(root).unwrap_or(fs_path));
            if ap.is_empty() {
                continue; // the root of `create REPO::A /` itself
            }
            let is_dir = entry.file_type().is_dir();
            if self.cfg.patterns.is_excluded(&ap) {
                batch.push(Job::Excluded(ap));
                if is_dir {
                    it.skip_current_dir();
                }
                continue;
            }
            if is_dir {
                let tags = self.exclusion_tags(fs_path);
                if !tags.is_empty() {
                    it.skip_current_dir();
                    batch.push(Job::Excluded(ap.clone()));
                    if self.cfg.keep_exclude_tags {
                        batch.push(Job::Entry(fs_path.to_path_buf(), ap.clone()));
                        for t in tags {
                            let mut tap = ap.clone();
                            tap.push(b'/');
                            tap.extend_from_slice(t.as_bytes());
                            batch.push(Job::Entry(fs_path.join(&t), tap));
                        }
                    }
                    continue;
                }
            }
            batch.push(Job::Entry(entry.into_path(), ap));
            if batch.len() >= BATCH_ENTRIES {
                self.run_batch(std::mem::take(&mut batch))?;
            }
        }
        self.run_batch(batch)
    }

    /// Stat the batch's entries, read their extended attributes and consult the files cache on
    /// all cores (system calls dominate a walk over unchanged files), then archive them in walk
    /// order on this thread.
    fn run_batch(&mut self, batch: Vec<Job>) -> Result<(), Hangup> {
        let prepared: Vec<Prepared> = batch.into_par_iter().map(|j| self.prepare(j)).collect();
        for p in prepared {
            match p {
                Prepared::Excluded(ap) => self.status('x', &ap),
                Prepared::Failed(msg, ap) => {
                    self.warn(msg);
                    self.status('E', &ap);
                }
                Prepared::Entry(e) => self.entry(e)?,
            }
        }
        Ok(())
    }

    /// The part of archiving an entry that needs no walker state: its metadata, extended
    /// attributes, symlink target and files-cache verdict.
    fn prepare(&self, job: Job) -> Prepared {
        let (fs_path, ap) = match job {
            Job::Entry(p, ap) => (p, ap),
            Job::Excluded(ap) => return Prepared::Excluded(ap),
            Job::Failed(m, ap) => return Prepared::Failed(m, ap),
        };
        let md = match std::fs::symlink_metadata(&fs_path) {
            Ok(m) => m,
            Err(e) => return Prepared::Failed(format!("{}: {e}", fs_path.display()), ap),
        };
        let ft = md.file_type();
        let xattrs = source::read_xattrs(&fs_path);
        let target = ft.is_symlink().then(|| std::fs::read_link(&fs_path));
        let mut cache = None;
        if ft.is_file() && !self.cfg.dry_run {
            let key = CacheKey { path: self.cache_key(&fs_path), stamp: Stamp::of(&md) };
            let verdict = match self.cfg.cache {
                Some(c) => c.lookup(&key.path, &key.stamp),
                None => Lookup::Absent,
            };
            cache = Some((key, verdict));
        }
        Prepared::Entry(Entry { fs_path, ap, md, xattrs, target, cache })
    }

    /// Archive one prepared filesystem entry.
    fn entry(&mut self, e: Entry) -> Result<(), Hangup> {
        let Entry { fs_path, ap, md, xattrs, target, cache } = e;
        let Some(mut item) = source::item_from_metadata(ap.clone(), &md, &mut self.names) else {
            return Ok(()); // sockets are not archived
        };
        match xattrs {
            Ok(x) => item.xattrs = x,
            Err(e) => self.warn(format!("{}: reading extended attributes: {e}", fs_path.display())),
        }
        if item.kind != Kind::Dir && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.hardlinks.get(&key) {
                item.kind = Kind::Hardlink;
                item.source = Some(first.clone());
                item.size = md.size();
                self.status('h', &ap);
                return self.tx.send(Event::Item(item));
            }
            self.hardlinks.insert(key, ap.clone());
            item.hardlink_master = true;
        }
        match item.kind {
            Kind::Symlink => match target {
                Some(Ok(t)) => item.target = Some(t.into_os_string().into_vec()),
                Some(Err(e)) => {
                    self.warn(format!("{}: reading symlink: {e}", fs_path.display()));
                    self.status('E', &ap);
                    return Ok(());
                }
                None => unreachable!("prepare reads the target of every symlink"),
            },
            Kind::File => return self.file(fs_path, item, &md, cache),
            _ => {}
        }
        let letter = match item.kind {
            Kind::Dir => 'd',
            Kind::Symlink => 's',
            Kind::Fifo => 'f',
            Kind::CharDev => 'c',
            Kind::BlockDev => 'b',
            _ => 'A',
        };
        self.status(letter, &ap);
        self.tx.send(Event::Item(item))
    }

    fn file(
        &mut self,
        fs_path: PathBuf,
        mut item: Item,
        md: &std::fs::Metadata,
        cache: Option<(CacheKey, Lookup)>,
    ) -> Result<(), Hangup> {
        let Some((key, verdict)) = cache else {
            // A dry run: nothing is read.
            item.size = md.size();
            self.status('-', &item.path);
            return self.tx.send(Event::Item(item));
        };
        let stamp = key.stamp;
        let known = match verdict {
            Lookup::Hit(chunks) => {
                item.chunks = chunks;
                item.size = stamp.size;
                return self.tx.send(Event::Cached { item, key, fs_path });
            }
            Lookup::Changed => true,
            Lookup::Absent => false,
        };
        let file = match open_source(&fs_path) {
            Ok(f) => f,
            Err(e) => {
                self.warn(format!("{}: {e}", fs_path.display()));
                self.status('E', &item.path);
                return Ok(());
            }
        };
        let ap = item.path.clone();
        self.tx.send(Event::FileStart { item, key: Some(key) })?;
        let (params, seed) = (self.cfg.params, self.cfg.seed);
        let tx = &mut self.tx;
        let read = read_content(&file, Some(md.size()), params, seed, &mut |c| tx.send(Event::Chunk(c)))?;
        let mut changed = false;
        if let Err(e) = read {
            self.warn(format!("{}: read error, archived the bytes before it: {e}", fs_path.display()));
            changed = true;
        }
        let now = file.metadata().map(|m| Stamp::of(&m)).ok();
        if now.is_none_or(|n| n.size != stamp.size || n.mtime != stamp.mtime || n.ctime != stamp.ctime) {
            self.warn(format!("{}: file changed while we read it", fs_path.display()));
            changed = true;
        }
        self.status(
            if changed {
                'E'
            } else if known {
                'M'
            } else {
                'A'
            },
            &ap,
        );
        self.tx.send(Event::FileEnd { changed })
    }
}
