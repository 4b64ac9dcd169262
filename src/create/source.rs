//! What create reads from the filesystem: archive paths for walked entries, where an entry is
//! ([`Loc`]: its directory's descriptor and its name, so that no path length limit applies), and
//! the metadata of one entry as an [`Item`].

// `struct stat` field types differ between architectures: casts that are no-ops on x86_64 are not
// no-ops everywhere.
#![allow(clippy::unnecessary_cast)]

use crate::archive::item::{Item, Kind, Xattr};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Paths at least this long are not handed to the kernel whole (PATH_MAX is 4096 with its NUL).
const LONG_PATH: usize = 4000;

/// `open(flags | O_NOATIME)`, and `open(flags)` again if the kernel refuses `O_NOATIME` (EPERM: only
/// the file's owner or a holder of CAP_FOWNER may use it). Why: see `Loc::open_noatime`.
pub fn with_noatime(flags: OFlags, open: impl Fn(OFlags) -> rustix::io::Result<OwnedFd>) -> std::io::Result<OwnedFd> {
    match open(flags | OFlags::NOATIME) {
        Err(rustix::io::Errno::PERM) => Ok(open(flags)?),
        r => Ok(r?),
    }
}

/// Where a walked entry is. Entries below a root are reached through their directory's open
/// descriptor, one name at a time, so that trees deeper than PATH_MAX are archived and a
/// directory swapped for a symlink during the walk is not followed. `path` is for messages and
/// for the few calls without an `*at` form (when it is short enough).
#[derive(Clone, Debug)]
pub struct Loc {
    /// `None` for a root given on the command line: `name` is then its path, followed if it is
    /// a symlink (as `borg create` and `tar` treat a root).
    dir: Option<Arc<OwnedFd>>,
    name: OsString,
    pub path: PathBuf,
}

impl Loc {
    pub fn root(path: &Path) -> Loc {
        Loc { dir: None, name: path.as_os_str().to_owned(), path: path.to_path_buf() }
    }

    pub fn child(dir: &Arc<OwnedFd>, parent: &Path, name: OsString) -> Loc {
        let path = parent.join(&name);
        Loc { dir: Some(dir.clone()), name, path }
    }

    pub fn stat(&self) -> std::io::Result<Stat> {
        Ok(match &self.dir {
            Some(d) => rustix::fs::statat(d, self.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?,
            None => rustix::fs::stat(self.name.as_os_str())?,
        })
    }

    /// Whether the entry carries the "no dump" flag (`chattr +d`; `--exclude-nodump`). File
    /// systems that do not report it say no.
    pub fn nodump(&self) -> bool {
        use rustix::fs::{StatxAttributes, StatxFlags};
        let st = match &self.dir {
            Some(d) => rustix::fs::statx(d, self.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW, StatxFlags::empty()),
            None => rustix::fs::statx(rustix::fs::CWD, self.name.as_os_str(), AtFlags::empty(), StatxFlags::empty()),
        };
        st.is_ok_and(|st| st.stx_attributes.contains(StatxAttributes::NODUMP))
    }

    /// [`stat`](Self::stat) of what a symlink points to (`--read-special`).
    pub fn stat_follow(&self) -> std::io::Result<Stat> {
        Ok(match &self.dir {
            Some(d) => rustix::fs::statat(d, self.name.as_os_str(), AtFlags::empty())?,
            None => rustix::fs::stat(self.name.as_os_str())?,
        })
    }

    /// Open a device or FIFO to read its content, through a symlink if the entry is one
    /// (`--read-special`). A FIFO's open waits for a writer, as with borg.
    pub fn open_special(&self) -> std::io::Result<std::fs::File> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = match &self.dir {
            Some(d) => rustix::fs::openat(d, self.name.as_os_str(), flags, Mode::empty())?,
            None => rustix::fs::open(self.name.as_os_str(), flags, Mode::empty())?,
        };
        Ok(fd.into())
    }

    pub fn read_link(&self) -> std::io::Result<Vec<u8>> {
        let target = match &self.dir {
            Some(d) => rustix::fs::readlinkat(d, self.name.as_os_str(), Vec::new())?,
            None => rustix::fs::readlink(self.name.as_os_str(), Vec::new())?,
        };
        Ok(target.into_bytes())
    }

    /// Open a regular file for reading, without following a symlink that replaced it. Something
    /// else put in its place since it was seen (a FIFO, whose open would wait for a writer, or a
    /// device, which may never end) is refused rather than read.
    pub fn open(&self) -> std::io::Result<std::fs::File> {
        // NONBLOCK: opening a FIFO returns at once; it changes nothing for a regular file.
        let fd = self.open_noatime(OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK)?;
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode as _);
        if kind != FileType::RegularFile {
            return Err(std::io::Error::other(format!(
                "replaced by a {} while the walk ran; not read",
                match kind {
                    FileType::Fifo => "FIFO",
                    FileType::CharacterDevice | FileType::BlockDevice => "device",
                    FileType::Directory => "directory",
                    _ => "file of another type",
                }
            )));
        }
        Ok(fd.into())
    }

    /// Open the entry with `flags` plus `O_NOATIME` (not following a symlink below a root), as
    /// borg does: reading a file or listing a directory then leaves its access time as it was.
    /// Otherwise every file a backup reads gets a new access time (once a day under `relatime`):
    /// an inode written back per file, and programs that compare access and modification times
    /// (a mail reader's "new mail", tmpreaper) misled. The kernel allows `O_NOATIME` only to the
    /// file's owner or a holder of CAP_FOWNER; for anyone else the open fails with EPERM and is
    /// made again without it.
    fn open_noatime(&self, flags: OFlags) -> std::io::Result<OwnedFd> {
        with_noatime(flags, |flags| match &self.dir {
            Some(d) => rustix::fs::openat(d, self.name.as_os_str(), flags | OFlags::NOFOLLOW, Mode::empty()),
            None => rustix::fs::open(self.name.as_os_str(), flags, Mode::empty()),
        })
    }

    /// Open a directory to read its entries.
    pub fn open_dir(&self) -> std::io::Result<OwnedFd> {
        self.open_noatime(OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC)
    }

    /// Extended attributes (of the entry itself, not of a symlink's target below a root).
    pub fn xattrs(&self) -> std::io::Result<Vec<Xattr>> {
        match &self.dir {
            None => read_xattrs(&self.path, true),
            Some(_) if self.path.as_os_str().len() < LONG_PATH => read_xattrs(&self.path, false),
            // No *at form of listxattr before Linux 6.13: name the entry through the directory's
            // descriptor link instead of its (too long) path.
            Some(d) => {
                let mut p = PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd()));
                p.push(&self.name);
                read_xattrs(&p, false)
            }
        }
    }
}

/// A regular file read front to back with its holes skipped: where the filesystem reports a
/// hole (`SEEK_HOLE`), zeros are produced without a read (the kernel zero-fills holes at a few
/// hundred MB/s here; a 100 GiB sparse disk image would otherwise take minutes). Filesystems
/// without hole reporting say "all data", and the file is read as usual.
pub struct SparseReader {
    file: std::fs::File,
    pos: u64,
    /// The kernel has been asked to fetch the file up to here.
    advised: u64,
    /// `pos..hole_end` is a hole; `hole_end..data_end` is data.
    hole_end: u64,
    data_end: u64,
}

impl SparseReader {
    pub fn new(file: std::fs::File) -> SparseReader {
        SparseReader { file, pos: 0, advised: 0, hole_end: 0, data_end: 0 }
    }

    pub fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// Find the region at `pos`. Past the last data region (or when the filesystem cannot
    /// tell) everything is treated as data, so a file that grows is still read.
    fn locate(&mut self) {
        use rustix::fs::SeekFrom;
        let data = match rustix::fs::seek(&self.file, SeekFrom::Data(self.pos)) {
            Ok(d) => d,
            // No data after pos: a hole to the end of the file as it is now.
            Err(rustix::io::Errno::NXIO) => {
                let size = rustix::fs::fstat(&self.file).map(|st| st.st_size as u64).unwrap_or(self.pos);
                (self.hole_end, self.data_end) = (size.max(self.pos), u64::MAX);
                return;
            }
            Err(_) => {
                (self.hole_end, self.data_end) = (self.pos, u64::MAX);
                return;
            }
        };
        let hole = rustix::fs::seek(&self.file, SeekFrom::Hole(data)).unwrap_or(u64::MAX);
        (self.hole_end, self.data_end) = (data, hole.max(data + 1));
    }
}

/// How far ahead of its reads a [`SparseReader`] asks the kernel to fetch the file (posix_fadvise
/// WILLNEED): a file not in memory then streams from the disk while its chunks are compressed,
/// rather than each read waiting for its own bytes.
const READ_AHEAD: u64 = 16 << 20;

impl SparseReader {
    /// Keep the kernel fetching at least `2 * n` bytes past `pos`, [`READ_AHEAD`] at a time.
    fn advise(&mut self, n: usize) {
        if self.pos + 2 * n as u64 > self.advised {
            self.advised = self.advised.max(self.pos);
            let len = std::num::NonZeroU64::new(READ_AHEAD);
            let _ = rustix::fs::fadvise(&self.file, self.advised, len, rustix::fs::Advice::WillNeed);
            self.advised += READ_AHEAD;
        }
    }
}

impl std::io::Read for SparseReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.data_end {
            self.locate();
        }
        let n = if self.pos < self.hole_end {
            let n = buf.len().min((self.hole_end - self.pos).try_into().unwrap_or(usize::MAX));
            buf[..n].fill(0);
            n
        } else {
            let n = buf.len().min((self.data_end - self.pos).try_into().unwrap_or(usize::MAX));
            self.advise(n);
            self.file.read_at(&mut buf[..n], self.pos)?
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// The entries of one directory (without `.` and `..`), sorted bytewise by name, with their
/// type as the directory reports it (possibly `Unknown`). Names share one buffer: a directory
/// of a million files costs its names' bytes and 24 bytes each, not a million allocations.
pub struct Listing {
    names: Vec<u8>,
    entries: Vec<(usize, u32, FileType)>,
}

impl Listing {
    pub fn read(dir: &OwnedFd) -> std::io::Result<Listing> {
        let mut l = Listing { names: Vec::new(), entries: Vec::new() };
        for e in rustix::fs::Dir::read_from(dir)? {
            let e = e?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            l.entries.push((l.names.len(), name.len() as u32, e.file_type()));
            l.names.extend_from_slice(name);
        }
        let names = &l.names;
        l.entries.sort_unstable_by(|a, b| names[a.0..a.0 + a.1 as usize].cmp(&names[b.0..b.0 + b.1 as usize]));
        Ok(l)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `i`-th name and type.
    pub fn get(&self, i: usize) -> (&OsStr, FileType) {
        let (at, len, ft) = self.entries[i];
        (OsStr::from_bytes(&self.names[at..at + len as usize]), ft)
    }
}

/// The archive path of a source path given on the command line: as given, without leading '/',
/// `.` or `..` components (as borg stores it).
pub fn archive_root(p: &Path) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for c in p.components() {
        if let Component::Normal(s) = c {
            if !out.is_empty() {
                out.push(b'/');
            }
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

pub fn join(prefix: &[u8], rel: &Path) -> Vec<u8> {
    let mut out = prefix.to_vec();
    for c in rel.components() {
        if let Component::Normal(s) = c {
            if !out.is_empty() {
                out.push(b'/');
            }
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// uid/gid to name lookups, cached; none at all with `numeric_ids`.
#[derive(Default)]
pub struct Names {
    numeric_ids: bool,
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Names {
    pub fn new(numeric_ids: bool) -> Names {
        Names { numeric_ids, ..Default::default() }
    }

    fn user(&mut self, uid: u32) -> Option<String> {
        if self.numeric_ids {
            return None;
        }
        self.users
            .entry(uid)
            .or_insert_with(|| uzers::get_user_by_uid(uid).map(|u| u.name().to_string_lossy().into_owned()))
            .clone()
    }
    fn group(&mut self, gid: u32) -> Option<String> {
        if self.numeric_ids {
            return None;
        }
        self.groups
            .entry(gid)
            .or_insert_with(|| uzers::get_group_by_gid(gid).map(|g| g.name().to_string_lossy().into_owned()))
            .clone()
    }
}

/// The item for an entry, without content; `None` for sockets (not archived, as in borg).
pub fn item_from_metadata(path: Vec<u8>, st: &Stat, names: &mut Names) -> Option<Item> {
    let kind = match FileType::from_raw_mode(st.st_mode as _) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        FileType::Fifo => Kind::Fifo,
        FileType::CharacterDevice => Kind::CharDev,
        FileType::BlockDevice => Kind::BlockDev,
        _ => return None,
    };
    let mut it = Item::new(path, kind);
    it.mode = st.st_mode as u32 & 0o7777;
    it.uid = st.st_uid;
    it.gid = st.st_gid;
    it.user = names.user(st.st_uid);
    it.group = names.group(st.st_gid);
    it.mtime = (st.st_mtime as i64).saturating_mul(1_000_000_000).saturating_add(st.st_mtime_nsec as i64);
    if matches!(kind, Kind::CharDev | Kind::BlockDev) {
        it.rdev = st.st_rdev as u64;
    }
    Some(it)
}

/// Extended attributes of `fs_path` (of a symlink itself unless `follow`); an unsupported
/// filesystem yields none.
pub fn read_xattrs(fs_path: &Path, follow: bool) -> std::io::Result<Vec<Xattr>> {
    let list = |p: &Path, buf: &mut [u8]| {
        if follow {
            rustix::fs::listxattr(p, buf)
        } else {
            rustix::fs::llistxattr(p, buf)
        }
    };
    let get = |p: &Path, name: &OsStr, buf: &mut [u8]| {
        if follow {
            rustix::fs::getxattr(p, name, buf)
        } else {
            rustix::fs::lgetxattr(p, name, buf)
        }
    };
    // Most files have none: ask with a small stack buffer first, allocate only for a long list.
    let mut small = [0u8; 1024];
    let mut names: Vec<u8> = Vec::new();
    let n = match list(fs_path, &mut small[..]) {
        Ok(0) => return Ok(vec![]),
        Ok(n) => {
            names.extend_from_slice(&small[..n]);
            n
        }
        Err(rustix::io::Errno::NOTSUP) => return Ok(vec![]),
        Err(rustix::io::Errno::RANGE) => {
            names.resize(16 * 1024, 0);
            loop {
                match list(fs_path, &mut names[..]) {
                    Ok(n) => break n,
                    Err(rustix::io::Errno::RANGE) if names.len() < 1 << 20 => names.resize(names.len() * 4, 0),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = vec![];
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let mut val = vec![0u8; 4096];
        loop {
            match get(fs_path, OsStr::from_bytes(name), &mut val[..]) {
                Ok(len) => {
                    val.truncate(len);
                    out.push(Xattr(name.to_vec(), val));
                    break;
                }
                Err(rustix::io::Errno::RANGE) if val.len() < 1 << 20 => val.resize(val.len() * 4, 0),
                Err(rustix::io::Errno::NODATA) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths() {
        assert_eq!(archive_root(Path::new("/store/projects")), b"store/projects");
        assert_eq!(archive_root(Path::new("./a/../b")), b"a/b");
        assert_eq!(archive_root(Path::new("/")), b"");
    }

    #[test]
    fn sparse_reader_yields_the_same_bytes_as_a_plain_read() {
        use std::io::{Read, Seek, SeekFrom, Write};
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sparse");
        let mut f = std::fs::File::create(&p).unwrap();
        // data, a 5 MiB hole, data at an odd offset, a trailing hole
        f.write_all(&[1u8; 70_000]).unwrap();
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.seek(SeekFrom::Start((9 << 20) + 12_345)).unwrap();
        f.write_all(&[7u8; 100_000]).unwrap();
        f.set_len(16 << 20).unwrap();
        drop(f);
        let plain = std::fs::read(&p).unwrap();
        for chunk in [4093usize, 65_536, 1 << 20] {
            let mut r = SparseReader::new(std::fs::File::open(&p).unwrap());
            let mut got = Vec::new();
            let mut buf = vec![0xAAu8; chunk];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got.len(), plain.len(), "buffer {chunk}");
            assert!(got == plain, "buffer {chunk}");
        }
        // a file that grows after the walk saw it is read to its new end
        let mut r = SparseReader::new(std::fs::File::open(&p).unwrap());
        let mut got = Vec::new();
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"tail").unwrap();
        r.read_to_end(&mut got).unwrap();
        assert!(got.ends_with(b"tail") && got.len() == plain.len() + 4);
    }

    #[test]
    fn xattr_lists_longer_than_the_first_buffer() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let mut want = vec![];
        for i in 0..30 {
            let name = format!("user.{i:02}-{}", "n".repeat(50));
            let value = vec![i as u8; 3];
            match rustix::fs::setxattr(&f, name.as_str(), &value, rustix::fs::XattrFlags::empty()) {
                Ok(()) => want.push(Xattr(name.into_bytes(), value)),
                Err(rustix::io::Errno::NOTSUP) => return, // no user xattrs on this filesystem
                Err(e) => panic!("{e}"),
            }
        }
        let names_len: usize = want.iter().map(|x| x.0.len() + 1).sum();
        assert!(names_len > 1024, "the list must not fit the first buffer");
        assert_eq!(read_xattrs(&f, false).unwrap(), want);
        assert_eq!(read_xattrs(&d.path().join("f"), true).unwrap().len(), 30);
        let plain = d.path().join("plain");
        std::fs::write(&plain, b"y").unwrap();
        assert!(read_xattrs(&plain, false).unwrap().is_empty());
    }
}
