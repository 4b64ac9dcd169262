//! The read-only FUSE file system over a repository ([`fuser::Filesystem`]).
//!
//! Metadata comes from the [`Tree`]; file reads map the requested range to the chunks covering
//! it and fetch only those (plus a readahead window when a file is read sequentially) through
//! the shared [`ChunkCache`]. Nothing here writes to the repository.

use super::cache::ChunkCache;
use super::tree::{ArchiveDir, Node, Tree, ROOT};
use crate::archive::item::{Item, Kind};
use crate::archive::Archive;
use crate::id::{Id, ObjectType};
use crate::repository::{ArchiveEntry, Repository};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Archives never change once written, so the kernel may cache attributes and entries for long.
const TTL: Duration = Duration::from_secs(300);
/// Bytes of chunks fetched ahead of a sequential reader.
const READAHEAD: u64 = 16 << 20;
/// The `st_blksize` files report: the largest read one FUSE request carries (256 pages, the
/// kernel's default `max_pages_limit`). `cat` and `cp` size their reads by it, and 1 MiB reads
/// instead of 128 KiB ones took a cold sequential read of 1 GiB from 0.86 to 0.78 s.
const PREFERRED_IO: u32 = 1 << 20;

pub struct MountOptions {
    /// Show stored uid/gid rather than mapping stored user/group names to local ids.
    pub numeric_ids: bool,
    /// Bytes of decrypted chunks kept in memory.
    pub cache_bytes: u64,
    /// Read through the kernel's page cache even where direct I/O is possible (`-o kernel_cache`).
    pub kernel_cache: bool,
    /// Show only these archives, in this order (borg's archive filters); `None`: all of them.
    pub only: Option<Vec<String>>,
    /// Leave out the items these patterns exclude (`--exclude`, `--pattern`, ...).
    pub excludes: crate::patterns::Patterns,
    /// Remove this many leading path components; items with no more are left out.
    pub strip_components: usize,
}

/// The bytes of one read: a range of one cached chunk, or pieces of several copied together.
enum Bytes {
    Slice(super::cache::Chunk, std::ops::Range<usize>),
    Owned(Vec<u8>),
}

/// A file's reader: the last chunk it read, and the chunk before which its stored bytes have
/// been asked of the disk already.
#[derive(Clone, Copy, Default)]
struct ReaderPos {
    last: usize,
    fetched_to: usize,
}

/// What background readahead tasks share with the file system.
struct Shared {
    repo: Repository,
    cache: ChunkCache,
}

pub struct GarretFs {
    shared: std::sync::Arc<Shared>,
    /// Archives of the mount, by [`ArchiveDir`] index (whole-repository mounts).
    entries: Vec<ArchiveEntry>,
    tree: RwLock<Tree>,
    /// Per inode: where its reader is (readers going forward get readahead).
    readers: Mutex<HashMap<u64, ReaderPos>>,
    /// Files are opened for direct I/O (see [`Filesystem::init`] below).
    direct_io: bool,
    kernel_cache: bool,
    numeric_ids: bool,
    excludes: crate::patterns::Patterns,
    strip_components: usize,
    /// Messages for the foreground user (damaged archives).
    pub errors: Mutex<Vec<String>>,
}

fn rfc3339_nanos(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).ok().and_then(|t| t.timestamp_nanos_opt()).unwrap_or(0)
}

fn time(nanos: i64) -> SystemTime {
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
        Kind::Socket => FileType::Socket,
        Kind::File | Kind::Hardlink | Kind::Unknown => FileType::RegularFile,
    }
}

fn attr(ino: u64, n: &Node) -> FileAttr {
    let t = time(n.mtime);
    let atime = time(n.atime);
    FileAttr {
        ino: INodeNo(ino),
        size: n.size,
        blocks: n.size.div_ceil(512),
        atime,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: file_type(n.kind),
        perm: (n.mode & 0o7777) as u16,
        nlink: n.nlink,
        uid: n.uid,
        gid: n.gid,
        rdev: n.rdev as u32,
        blksize: PREFERRED_IO,
        flags: 0,
    }
}

/// `path` without its first `n` components, if it has more.
fn strip(path: &[u8], n: usize) -> Option<Vec<u8>> {
    let comps: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
    (comps.len() > n).then(|| comps[n..].join(&b'/'))
}

/// Index of the chunk holding the last byte before `end`.
fn last_idx(content: &super::tree::Content, end: u64) -> Option<usize> {
    end.checked_sub(1).and_then(|e| content.chunk_at(e))
}

fn last_chunk_read(first: usize, last: Option<usize>) -> usize {
    last.unwrap_or(first)
}

impl GarretFs {
    /// A view of every archive of `repo` (one directory each), or of `single` alone.
    pub fn new(repo: Repository, single: Option<ArchiveEntry>, opts: &MountOptions) -> crate::error::Result<GarretFs> {
        let mut fs = GarretFs {
            entries: vec![],
            tree: RwLock::new(Tree::default()),
            shared: std::sync::Arc::new(Shared { repo, cache: ChunkCache::new(opts.cache_bytes) }),
            readers: Mutex::default(),
            direct_io: false,
            kernel_cache: opts.kernel_cache,
            numeric_ids: opts.numeric_ids,
            excludes: opts.excludes.clone(),
            strip_components: opts.strip_components,
            errors: Mutex::default(),
        };
        match single {
            Some(entry) => {
                // Nothing else sees the tree yet: items go into it as they are read.
                let mut tree = Tree::single(rfc3339_nanos(&entry.time));
                tree.load(ROOT, fs.items_of(&entry)?)?;
                fs.tree = RwLock::new(tree);
            }
            None => {
                let all = &fs.shared.repo.manifest().archives;
                fs.entries = match &opts.only {
                    Some(names) => names.iter().filter_map(|n| all.iter().find(|e| &e.name == n).cloned()).collect(),
                    None => all.clone(),
                };
                let dirs = fs
                    .entries
                    .iter()
                    .map(|e| ArchiveDir { name: e.name.clone(), mtime: rfc3339_nanos(&e.time) })
                    .collect();
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
                fs.tree = RwLock::new(Tree::with_archives(dirs, now));
            }
        }
        Ok(fs)
    }

    /// Archives shown: one directory each, or 1 for a single archive's tree.
    pub fn archives(&self) -> usize {
        self.entries.len().max(1)
    }

    /// Items left out of the view because their paths were not valid.
    pub fn skipped(&self) -> u64 {
        self.tree().skipped
    }

    fn tree(&self) -> RwLockReadGuard<'_, Tree> {
        self.tree.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The items of an archive as the view shows them (excluded ones left out, components
    /// stripped, owners mapped to local ids), read as the iterator is driven.
    fn items_of(
        &self,
        entry: &ArchiveEntry,
    ) -> crate::error::Result<impl Iterator<Item = crate::error::Result<Item>> + '_> {
        let repo = &self.shared.repo;
        let ar = Archive::load(repo, entry)?;
        let mut users: HashMap<String, Option<u32>> = HashMap::new();
        let mut groups: HashMap<String, Option<u32>> = HashMap::new();
        let sources = ar.hardlink_sources(repo)?;
        Ok(ar.items(repo).filter_map(move |it| {
            let mut it = match it {
                Ok(it) => it,
                Err(e) => return Some(Err(e)),
            };
            it.hardlink_master = crate::archive::is_master(&it, &sources);
            if self.excludes.is_excluded(&it.path) {
                return None;
            }
            if self.strip_components > 0 {
                it.path = strip(&it.path, self.strip_components)?;
                it.source = it.source.as_deref().and_then(|s| strip(s, self.strip_components));
            }
            if !self.numeric_ids {
                if let Some(u) = &it.user {
                    let local =
                        *users.entry(u.clone()).or_insert_with(|| uzers::get_user_by_name(u.as_str()).map(|x| x.uid()));
                    it.uid = local.unwrap_or(it.uid);
                }
                if let Some(g) = &it.group {
                    let local = *groups
                        .entry(g.clone())
                        .or_insert_with(|| uzers::get_group_by_name(g.as_str()).map(|x| x.gid()));
                    it.gid = local.unwrap_or(it.gid);
                }
            }
            Some(Ok(it))
        }))
    }

    /// Make sure the archive directory `ino` has its items (whole-repository mounts load each
    /// archive the first time it is entered).
    fn ensure_loaded(&self, ino: u64) -> Result<(), Errno> {
        let Some(idx) = self.tree().pending(ino) else { return Ok(()) };
        let entry = &self.entries[idx];
        // Read before taking the tree's lock, so other archives stay browsable meanwhile.
        let items: crate::error::Result<Vec<Item>> = self.items_of(entry).and_then(|items| items.collect());
        let items = items.map_err(|e| {
            let msg = format!("archive {}: {e}", entry.name);
            eprintln!("garret mount: {msg}");
            self.errors.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
            Errno::EIO
        })?;
        let mut tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
        if tree.pending(ino).is_some() {
            tree.load(ino, items.into_iter().map(Ok)).expect("items already read");
        }
        Ok(())
    }

    fn read_range(&self, ino: u64, offset: u64, size: u32) -> Result<Bytes, Errno> {
        let content = match self.tree().get(ino) {
            Some(n) if n.kind == Kind::File => n.content.clone(),
            Some(_) => return Err(Errno::EISDIR),
            None => return Err(Errno::ENOENT),
        };
        let end = (offset + size as u64).min(content.len());
        let Some(first) = content.chunk_at(offset) else { return Ok(Bytes::Owned(vec![])) };
        let last = last_idx(&content, end).unwrap_or(first);
        // Forward reads (the kernel's readahead may reorder them a little) get the chunks after
        // theirs loaded in the background.
        let (sequential, fetched_to) = {
            let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            let now = last_chunk_read(first, last_idx(&content, end));
            let pos = readers.entry(ino).or_default();
            let prev = std::mem::replace(&mut pos.last, now);
            let sequential = first == 0 || (first + 1 >= prev && first <= prev + 8);
            (sequential, pos.fetched_to)
        };
        let need: Vec<Id> = content.chunks[first..=last].iter().map(|c| c.0).collect();
        let shared = &self.shared;
        let chunks = shared.cache.get(&need, |ids| shared.repo.load_many(ObjectType::Data, ids)).map_err(|e| {
            eprintln!("garret mount: reading inode {ino}: {e}");
            Errno::EIO
        })?;
        if sequential {
            // The disk reads twice as far ahead as the decoding, so that decoding finds the
            // stored bytes in memory instead of waiting for them.
            let window_end = |bytes: u64| {
                let mut sum = 0u64;
                let n = content.chunks[last + 1..].iter().take_while(|c| {
                    let more = sum < bytes;
                    sum += c.1 as u64;
                    more
                });
                last + 1 + n.count()
            };
            let fetch_end = window_end(2 * READAHEAD);
            if fetch_end > fetched_to {
                let from = fetched_to.max(last + 1);
                let ids: Vec<Id> = content.chunks[from..fetch_end].iter().map(|c| c.0).collect();
                shared.repo.prefetch(&ids);
                if let Some(pos) = self.readers.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&ino) {
                    pos.fetched_to = pos.fetched_to.max(fetch_end);
                }
            }
            let ahead: Vec<Id> = content.chunks[last + 1..window_end(READAHEAD)].iter().map(|c| c.0).collect();
            let claimed = shared.cache.claim(&ahead);
            if !claimed.is_empty() {
                let shared = shared.clone();
                rayon::spawn(move || {
                    let results = shared.repo.load_many(ObjectType::Data, &claimed);
                    shared.cache.fill(&claimed, results);
                });
            }
        }
        let range = |i: usize, chunk: &[u8]| {
            let start = content.start(first + i);
            offset.saturating_sub(start) as usize..((end - start) as usize).min(chunk.len())
        };
        if let [chunk] = chunks.as_slice() {
            // Most reads fall inside one chunk: reply from it without copying.
            let r = range(0, chunk);
            return Ok(Bytes::Slice(chunk.clone(), r.start..r.end.max(r.start)));
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        for (i, chunk) in chunks.iter().enumerate() {
            let r = range(i, chunk);
            if r.start < r.end {
                out.extend_from_slice(&chunk[r]);
            }
        }
        Ok(Bytes::Owned(out))
    }
}

impl Filesystem for GarretFs {
    /// Where the kernel can map direct-I/O files (Linux 6.6 and later), files are opened for
    /// direct I/O: reads come straight to [`read_range`](Self::read_range), which keeps its own
    /// readahead and chunk cache, instead of being copied once more through the page cache
    /// (cold sequential read of 1 GiB 0.955 -> 0.863 s). Older kernels would refuse shared
    /// mappings of such files, so there the page cache is kept, as it is with `-o kernel_cache`.
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        self.direct_io =
            !self.kernel_cache && config.add_capabilities(fuser::InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP).is_ok();
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if let Err(e) = self.ensure_loaded(parent.0) {
            return reply.error(e);
        }
        let tree = self.tree();
        match tree.lookup(parent.0, name.as_bytes()).and_then(|ino| Some((ino, tree.get(ino)?))) {
            Some((ino, n)) => reply.entry(&TTL, &attr(ino, n), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree().get(ino.0) {
            Some(n) => reply.attr(&TTL, &attr(ino.0, n)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree().get(ino.0) {
            Some(Node { target: Some(t), .. }) => reply.data(t),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.tree().get(ino.0) {
            Some(_) if self.direct_io => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            // Content never changes: let the kernel keep its page cache across opens.
            Some(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_range(ino.0, offset, size) {
            Ok(Bytes::Owned(data)) => reply.data(&data),
            Ok(Bytes::Slice(chunk, range)) => reply.data(&chunk[range]),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        self.readers.lock().unwrap_or_else(|e| e.into_inner()).remove(&ino.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if let Err(e) = self.ensure_loaded(ino.0) {
            return reply.error(e);
        }
        match self.tree().get(ino.0) {
            Some(n) if n.kind == Kind::Dir => reply.opened(FileHandle(0), FopenFlags::empty()),
            Some(_) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if let Err(e) = self.ensure_loaded(ino.0) {
            return reply.error(e);
        }
        let tree = self.tree();
        let Some(n) = tree.get(ino.0) else { return reply.error(Errno::ENOENT) };
        let total = n.children.len() as u64 + 2;
        for i in offset..total {
            let (child, kind, name): (u64, FileType, &[u8]) = match i {
                0 => (ino.0, FileType::Directory, b"."),
                1 => (n.parent, FileType::Directory, b".."),
                _ => {
                    let (name, c) = &n.children[(i - 2) as usize];
                    let kind = tree.get(*c).map_or(FileType::RegularFile, |n| file_type(n.kind));
                    (*c, kind, name)
                }
            };
            if reply.add(INodeNo(child), i + 1, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let tree = self.tree();
        let Some(n) = tree.get(ino.0) else { return reply.error(Errno::ENOENT) };
        match n.xattrs.iter().find(|x| x.0 == name.as_bytes()) {
            None => reply.error(Errno::NO_XATTR),
            Some(x) if size == 0 => reply.size(x.1.len() as u32),
            Some(x) if x.1.len() > size as usize => reply.error(Errno::ERANGE),
            Some(x) => reply.data(&x.1),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let tree = self.tree();
        let Some(n) = tree.get(ino.0) else { return reply.error(Errno::ENOENT) };
        let mut names = Vec::new();
        for x in &n.xattrs {
            names.extend_from_slice(&x.0);
            names.push(0);
        }
        if size == 0 {
            reply.size(names.len() as u32)
        } else if names.len() > size as usize {
            reply.error(Errno::ERANGE)
        } else {
            reply.data(&names)
        }
    }
}
