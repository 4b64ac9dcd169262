//! The reading side of create, run on its own thread: walks the source paths (or reads one
//! stream), decides what is excluded, consults the files cache, reads and chunks file content,
//! and sends everything in archive order to the pipeline as [`Event`]s over a bounded channel.

use super::files_cache::{FilesCache, Stamp};
use super::source::{self, Names};
use crate::archive::item::{Item, Kind};
use crate::chunker::{Chunker, ChunkerParams};
use crate::patterns::Patterns;
use crate::progress::Reporter;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

/// The files-cache key of a file: its absolute path and what it looked like.
#[derive(Clone, Debug)]
pub struct CacheKey {
    pub path: Vec<u8>,
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

fn absolute(p: &Path) -> Vec<u8> {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).as_os_str().as_bytes().to_vec()
}

struct Walker<'a, 'c> {
    cfg: &'c WalkConfig<'a>,
    tx: EventSink,
    names: Names,
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
}

pub fn walk(cfg: &WalkConfig<'_>, tx: SyncSender<Vec<Event>>) -> Result<(), Hangup> {
    let mut w = Walker { cfg, tx: EventSink::new(tx), names: Names::default(), hardlinks: HashMap::new() };
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

    fn root(&mut self, root: &Path) -> Result<(), Hangup> {
        let prefix = source::archive_root(root);
        let mut it = walkdir::WalkDir::new(root)
            .follow_links(false)
            .same_file_system(self.cfg.one_file_system)
            .sort_by_file_name()
            .into_iter();
        while let Some(entry) = it.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = e.path().map(|p| p.display().to_string()).unwrap_or_default();
                    let why = e.io_error().map(|e| e.to_string()).unwrap_or_else(|| e.to_string());
                    // A directory or file that vanished during the walk is not an error of ours.
                    self.warn(format!("{path}: {why}"));
                    self.cfg.reporter.item('E', path.as_bytes());
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
                self.status('x', &ap);
                if is_dir {
                    it.skip_current_dir();
                }
                continue;
            }
            let md = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    self.warn(format!("{}: {e}", fs_path.display()));
                    self.status('E', &ap);
                    continue;
                }
            };
            if is_dir {
                let tags = self.exclusion_tags(fs_path);
                if !tags.is_empty() {
                    it.skip_current_dir();
                    self.status('x', &ap);
                    if self.cfg.keep_exclude_tags {
                        self.entry(fs_path, ap.clone(), &md)?;
                        for t in tags {
                            let p = fs_path.join(&t);
                            if let Ok(tmd) = std::fs::symlink_metadata(&p) {
                                let mut tap = ap.clone();
                                tap.push(b'/');
                                tap.extend_from_slice(t.as_bytes());
                                self.entry(&p, tap, &tmd)?;
                            }
                        }
                    }
                    continue;
                }
            }
            self.entry(fs_path, ap, &md)?;
        }
        Ok(())
    }

    /// Archive one filesystem entry.
    fn entry(&mut self, fs_path: &Path, ap: Vec<u8>, md: &std::fs::Metadata) -> Result<(), Hangup> {
        let Some(mut item) = source::item_from_metadata(ap.clone(), md, &mut self.names) else {
            return Ok(()); // sockets are not archived
        };
        match source::read_xattrs(fs_path) {
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
            Kind::Symlink => match std::fs::read_link(fs_path) {
                Ok(t) => item.target = Some(t.as_os_str().as_bytes().to_vec()),
                Err(e) => {
                    self.warn(format!("{}: reading symlink: {e}", fs_path.display()));
                    self.status('E', &ap);
                    return Ok(());
                }
            },
            Kind::File => return self.file(fs_path, item, md),
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

    fn file(&mut self, fs_path: &Path, mut item: Item, md: &std::fs::Metadata) -> Result<(), Hangup> {
        let stamp = Stamp::of(md);
        if self.cfg.dry_run {
            item.size = md.size();
            self.status('-', &item.path);
            return self.tx.send(Event::Item(item));
        }
        let key = CacheKey { path: absolute(fs_path), stamp };
        let mut known = false;
        if let Some(cache) = self.cfg.cache {
            if let Some(chunks) = cache.lookup(&key.path, &stamp) {
                item.chunks = chunks.to_vec();
                item.size = stamp.size;
                return self.tx.send(Event::Cached { item, key, fs_path: fs_path.to_path_buf() });
            }
            known = cache.lookup_any(&key.path);
        }
        let file = match open_source(fs_path) {
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
