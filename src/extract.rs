//! `extract`: restore an archive's items beneath a target directory.
//!
//! Every path is resolved beneath the target with `openat(O_NOFOLLOW | O_DIRECTORY)` one
//! component at a time, and final components are created with `O_EXCL`/`O_NOFOLLOW` after removing
//! whatever non-directory stood there. So `..`, absolute paths, symlinked parents (`a -> /`, then
//! `a/x`), hardlink sources reached through symlinks, and symlinks already present in the target
//! can never make extract write outside the target (borg CVE-2026-62268, duplicacy #691/#692).
//! Device nodes, setuid/setgid bits and `security.*`/`trusted.*` xattrs are restored only with
//! [`ExtractOptions::privileged`] (and as root).

use crate::archive::item::{ChunkRef, Item, Kind};
use crate::archive::Archive;
use crate::error::{Error, IoContext, Result};
use crate::id::ObjectType;
use crate::patterns::Patterns;
use crate::progress::Reporter;
use crate::repository::Repository;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

pub struct ExtractOptions {
    pub target: PathBuf,
    /// Archive paths to extract (with everything below them); empty means all.
    pub paths: Vec<Vec<u8>>,
    /// Items (and everything below excluded directories) to leave out.
    pub excludes: crate::patterns::Patterns,
    /// Restore device nodes, setuid/setgid bits and `security.*`/`trusted.*` xattrs (as root).
    /// Off by default: an archive of unknown origin must not be able to create them.
    pub privileged: bool,
    pub strip_components: usize,
    pub numeric_ids: bool,
    /// Restore no extended attributes (`--noxattrs`).
    pub no_xattrs: bool,
    /// Restore no ACLs, the `system.posix_acl_*` extended attributes (`--noacls`).
    pub no_acls: bool,
    /// Write runs of zeros as holes.
    pub sparse: bool,
    pub dry_run: bool,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ExtractStats {
    pub items: u64,
    pub bytes: u64,
    /// Items that could not be restored because repository data is missing or corrupt.
    pub data_errors: u64,
}

/// Split and validate an archive path: no empty, `.`, `..` components, no NUL.
pub fn components(path: &[u8]) -> Option<Vec<&[u8]>> {
    if path.is_empty() || path.contains(&0) {
        return None;
    }
    let comps: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    if comps.iter().any(|c| c.is_empty() || *c == b"." || *c == b"..") {
        return None;
    }
    Some(comps)
}

/// The PATH arguments of extract, export-tar and recreate: which archive paths they select, and
/// which of them selected nothing. A mistyped PATH would otherwise restore nothing and exit 0;
/// borg warns that it "never matched".
pub struct Wanted<'a> {
    paths: &'a [Vec<u8>],
    hit: Vec<std::cell::Cell<bool>>,
}

impl<'a> Wanted<'a> {
    pub fn new(paths: &'a [Vec<u8>]) -> Self {
        Wanted { paths, hit: paths.iter().map(|_| Default::default()).collect() }
    }

    /// Whether `path` is one of the paths or below one (every path when there are none); marks
    /// the ones it is.
    pub fn selects(&self, path: &[u8]) -> bool {
        let mut any = self.paths.is_empty();
        for (w, hit) in self.paths.iter().zip(&self.hit) {
            let w = w.strip_suffix(b"/").unwrap_or(w);
            if path == w || (path.starts_with(w) && path.get(w.len()) == Some(&b'/')) {
                hit.set(true);
                any = true;
            }
        }
        any
    }

    /// The paths that selected nothing so far.
    pub fn unmatched(&self) -> Vec<String> {
        self.paths
            .iter()
            .zip(&self.hit)
            .filter(|(_, h)| !h.get())
            .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    /// One warning per path that selected nothing, saying what became of it.
    pub fn warn_unmatched(&self, reporter: &dyn Reporter, what: &str) {
        for p in self.unmatched() {
            reporter.warning(&format!(
                "{p}: no such path in the archive, {what}; `garret list REPO::NAME` shows the archive's paths"
            ));
        }
    }
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// The target directory, with the chain of directories last opened beneath it (archives are
/// in depth-first order, so each directory is opened about once per visit).
struct Target {
    root: OwnedFd,
    /// `stack[i]` is the directory `comps[..=i]` of the last path resolved.
    stack: Vec<(Vec<u8>, OwnedFd)>,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

impl Target {
    /// Open (creating when `create`) the directory `comps` beneath the root, never following a
    /// symlink.
    fn dir(&mut self, comps: &[&[u8]], create: bool) -> std::io::Result<BorrowedFd<'_>> {
        let keep = self.stack.iter().zip(comps).take_while(|((n, _), c)| n.as_slice() == **c).count();
        self.stack.truncate(keep);
        for c in &comps[keep..] {
            let parent = self.stack.last().map(|(_, f)| f.as_fd()).unwrap_or(self.root.as_fd());
            let next = match rustix::fs::openat(parent, os(c), DIR_FLAGS, Mode::empty()) {
                Ok(f) => f,
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(parent, os(c), Mode::from_raw_mode(0o700)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rustix::fs::openat(parent, os(c), DIR_FLAGS, Mode::empty())?
                }
                Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::NOTDIR) => {
                    return Err(std::io::Error::other(format!(
                        "refusing to extract through {:?}: it is a symlink or not a directory",
                        String::from_utf8_lossy(c)
                    )))
                }
                Err(e) => return Err(e.into()),
            };
            self.stack.push((c.to_vec(), next));
        }
        Ok(self.stack.last().map(|(_, f)| f.as_fd()).unwrap_or(self.root.as_fd()))
    }
}

/// Remove a non-directory entry `name` in `dir` if present; a directory there is an error.
fn clear_slot(dir: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<()> {
    match rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            Err(std::io::Error::other("a directory of that name exists in the target"))
        }
        Ok(_) => Ok(rustix::fs::unlinkat(dir, os(name), AtFlags::empty())?),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// An item's modification time, and its access time if stored (else the modification time).
fn timestamps(it: &Item) -> Timestamps {
    let ts = |ns: i64| Timespec { tv_sec: ns.div_euclid(1_000_000_000), tv_nsec: ns.rem_euclid(1_000_000_000) as _ };
    Timestamps { last_access: ts(it.atime.unwrap_or(it.mtime)), last_modification: ts(it.mtime) }
}

struct Owner {
    root: bool,
    numeric: bool,
    privileged: bool,
    no_xattrs: bool,
    no_acls: bool,
    /// Local ids of archived user and group names (each lookup reads /etc/passwd or asks NSS).
    names: std::sync::Mutex<HashMap<(bool, String), Option<u32>>>,
}

impl Owner {
    fn ids(&self, it: &Item) -> Option<(rustix::fs::Uid, rustix::fs::Gid)> {
        if !self.root {
            return None;
        }
        let mut uid = it.uid;
        let mut gid = it.gid;
        if !self.numeric {
            let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(u) = &it.user {
                let local = *names
                    .entry((true, u.clone()))
                    .or_insert_with(|| uzers::get_user_by_name(u.as_str()).map(|x| x.uid()));
                uid = local.unwrap_or(uid);
            }
            if let Some(g) = &it.group {
                let local = *names
                    .entry((false, g.clone()))
                    .or_insert_with(|| uzers::get_group_by_name(g.as_str()).map(|x| x.gid()));
                gid = local.unwrap_or(gid);
            }
        }
        Some((rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid)))
    }

    fn mode(&self, it: &Item) -> Mode {
        // setuid/setgid only on request, as root: a restore must not mint setid binaries of
        // someone else's making.
        let m = if self.root && self.privileged { it.mode & 0o7777 } else { it.mode & 0o1777 };
        Mode::from_raw_mode(m)
    }
}

/// Apply ownership, mode, xattrs and mtime through an open descriptor.
fn apply_fd_metadata(fd: BorrowedFd<'_>, it: &Item, owner: &Owner) -> std::io::Result<()> {
    if let Some((u, g)) = owner.ids(it) {
        rustix::fs::fchown(fd, Some(u), Some(g))?;
    }
    rustix::fs::fchmod(fd, owner.mode(it))?;
    for x in &it.xattrs {
        let privileged = x.0.starts_with(b"security.") || x.0.starts_with(b"trusted.");
        if (privileged && !(owner.root && owner.privileged))
            || owner.no_xattrs
            || (owner.no_acls && x.0.starts_with(b"system.posix_acl_"))
        {
            continue;
        }
        match rustix::fs::fsetxattr(fd, os(&x.0), &x.1, XattrFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOTSUP) | Err(rustix::io::Errno::PERM) => {}
            Err(e) => return Err(e.into()),
        }
    }
    rustix::fs::futimens(fd, &timestamps(it))?;
    Ok(())
}

/// Write `data` at `offset`, leaving 4 KiB blocks of zeros as holes when `sparse`. Returns the
/// end of the last byte range actually written (`offset` when all of it was a hole).
fn write_at(file: &std::fs::File, offset: u64, data: &[u8], sparse: bool) -> std::io::Result<u64> {
    if !sparse {
        file.write_all_at(data, offset)?;
        return Ok(offset + data.len() as u64);
    }
    let mut written_end = offset;
    const BLOCK: usize = 4096;
    let mut i = 0;
    while i < data.len() {
        let end = (i + BLOCK).min(data.len());
        if data[i..end].iter().all(|&b| b == 0) {
            i = end;
            continue;
        }
        let mut j = end;
        while j < data.len() {
            let e = (j + BLOCK).min(data.len());
            if data[j..e].iter().all(|&b| b == 0) {
                break;
            }
            j = e;
        }
        file.write_all_at(&data[i..j], offset + i as u64)?;
        written_end = offset + j as u64;
        i = j;
    }
    Ok(written_end)
}

struct Extractor<'a> {
    repo: &'a Repository,
    opts: &'a ExtractOptions,
    reporter: &'a dyn Reporter,
    target: Target,
    owner: Owner,
    stats: ExtractStats,
    wanted: Wanted<'a>,
    /// Directories whose metadata is applied at the end (children change their mtime).
    dirs: Vec<(Vec<u8>, Item)>,
    /// Content of hardlink masters (by archive path), for later names whose master was not
    /// extracted.
    masters: HashMap<Vec<u8>, (Vec<ChunkRef>, u64)>,
    /// Where each hardlink source was actually extracted (target-relative path).
    extracted: HashMap<Vec<u8>, Vec<u8>>,
    /// Files waiting for their chunks, which are loaded and decrypted in parallel per batch.
    pending: Vec<(Item, Vec<u8>)>,
    pending_bytes: u64,
    prefetched: HashMap<crate::id::Id, Vec<u8>>,
    progress: crate::progress::Progress,
    /// A target-wide failure (disk full, quota, read-only): extract stops with it.
    fatal: Option<Error>,
}

/// The error that stops an extract, naming the item and the way out.
fn fatal_error(it: &Item, e: Error) -> Error {
    match e {
        Error::Io { source, .. } => Error::io(
            format!(
                "extracting {}: the target is full or read-only (free space, or extract somewhere else)",
                it.path_lossy()
            ),
            source,
        ),
        other => other,
    }
}

/// Whether an error means no further item can be restored either.
fn is_fatal(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => {
            matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EROFS))
        }
        _ => false,
    }
}

/// Plaintext bytes of file content loaded ahead in one batch (bounds extract's memory).
const PREFETCH_BYTES: u64 = 32 * 1024 * 1024;
/// Files up to this size are batched across files.
const SMALL_FILE: u64 = 4 * 1024 * 1024;
/// Plaintext bytes of one large file loaded in parallel at a time (plus at most one chunk).
const WINDOW_BYTES: u64 = 8 * 1024 * 1024;

/// Write the content of the selected files, in archive order, to `out` (`extract --stdout`, e.g.
/// a database dump piped into `psql`). Nothing is written to the filesystem.
pub fn to_writer(
    repo: &Repository,
    archive: &Archive,
    paths: &[Vec<u8>],
    excludes: &Patterns,
    out: &mut dyn std::io::Write,
    reporter: &dyn Reporter,
) -> Result<ExtractStats> {
    let mut stats = ExtractStats::default();
    let mut masters: HashMap<Vec<u8>, Vec<ChunkRef>> = HashMap::new();
    let sources = archive.hardlink_sources(repo)?;
    let wanted = Wanted::new(paths);
    for item in archive.items(repo) {
        let it = item?;
        if crate::archive::is_master(&it, &sources) {
            masters.insert(it.path.clone(), it.chunks.clone());
        }
        if !wanted.selects(&it.path) || excludes.is_excluded(&it.path) {
            continue;
        }
        let chunks = match it.kind {
            Kind::File => &it.chunks,
            Kind::Hardlink => match it.source.as_ref().and_then(|s| masters.get(s)) {
                Some(c) => c,
                None => continue,
            },
            _ => continue,
        };
        reporter.item(' ', &it.path);
        stats.items += 1;
        for c in chunks {
            let data = repo.load_blob(ObjectType::Data, &c.0)?;
            out.write_all(&data).ctx(|| "writing to standard output".to_string())?;
            stats.bytes += data.len() as u64;
        }
    }
    out.flush().ctx(|| "writing to standard output".to_string())?;
    wanted.warn_unmatched(reporter, "nothing written for it");
    Ok(stats)
}

pub fn run(
    repo: &Repository,
    archive: &Archive,
    opts: &ExtractOptions,
    reporter: &dyn Reporter,
) -> Result<ExtractStats> {
    std::fs::create_dir_all(&opts.target).ctx(|| format!("creating {}", opts.target.display()))?;
    let root = rustix::fs::open(&opts.target, DIR_FLAGS, Mode::empty())
        .ctx(|| format!("opening target {}", opts.target.display()))?;
    let mut ex = Extractor {
        repo,
        opts,
        reporter,
        target: Target { root, stack: Vec::new() },
        owner: Owner {
            root: rustix::process::geteuid().is_root(),
            numeric: opts.numeric_ids,
            privileged: opts.privileged,
            no_xattrs: opts.no_xattrs,
            no_acls: opts.no_acls,
            names: Default::default(),
        },
        stats: ExtractStats::default(),
        wanted: Wanted::new(&opts.paths),
        dirs: vec![],
        masters: HashMap::new(),
        extracted: HashMap::new(),
        pending: vec![],
        pending_bytes: 0,
        prefetched: HashMap::new(),
        progress: crate::progress::Progress {
            // The whole archive's size is known; a selection's is not (no pre-pass for it).
            total: if opts.paths.is_empty() && opts.excludes.is_empty() && opts.strip_components == 0 {
                archive.stats.original_size
            } else {
                0
            },
            extracting: true,
            ..Default::default()
        },
        fatal: None,
    };
    let sources = archive.hardlink_sources(repo)?;
    for item in archive.items(repo) {
        let mut item = item?;
        item.hardlink_master = crate::archive::is_master(&item, &sources);
        ex.item(item);
        if let Some(e) = ex.fatal.take() {
            return Err(e);
        }
    }
    ex.flush();
    if let Some(e) = ex.fatal.take() {
        return Err(e);
    }
    for (path, it) in std::mem::take(&mut ex.dirs).into_iter().rev() {
        let comps = components(&path).expect("validated when recorded");
        let res = ex.target.dir(&comps, false).and_then(|fd| apply_fd_metadata(fd, &it, &ex.owner));
        if let Err(e) = res {
            reporter.warning(&format!("{}: setting directory metadata: {e}", String::from_utf8_lossy(&path)));
        }
    }
    ex.wanted.warn_unmatched(
        reporter,
        if opts.dry_run { "nothing would be restored for it" } else { "nothing restored for it" },
    );
    Ok(ex.stats)
}

impl Extractor<'_> {
    fn item(&mut self, it: Item) {
        let shown = it.path_lossy();
        if it.hardlink_master {
            self.masters.insert(it.path.clone(), (it.chunks.clone(), it.size));
        }
        if !self.wanted.selects(&it.path) || self.excluded(&it.path) {
            return;
        }
        let Some(comps) = components(&it.path) else {
            self.reporter
                .warning(&format!("{shown:?}: refusing an unsafe path (absolute, empty, '.' or '..' component)"));
            return;
        };
        if comps.len() <= self.opts.strip_components {
            return;
        }
        let rel: Vec<u8> = comps[self.opts.strip_components..].join(&b'/');
        self.reporter.item(' ', &it.path);
        self.stats.items += 1;
        if self.opts.dry_run {
            return;
        }
        // Small files are batched so that their chunks load in parallel across files; large
        // files load their own chunks in parallel windows (write_file).
        if it.kind == Kind::File && !it.chunks.is_empty() && it.size <= SMALL_FILE {
            self.pending_bytes += it.size;
            self.pending.push((it, rel));
            if self.pending_bytes >= PREFETCH_BYTES || self.pending.len() >= 1024 {
                self.flush();
            }
            return;
        }
        // Anything else may depend on files before it (hardlinks, directories): write them first.
        self.flush();
        self.restore_reporting(&it, &rel);
    }

    /// Load the chunks of the pending files in parallel, then write the files in order.
    fn flush(&mut self) {
        if self.fatal.is_some() {
            self.pending.clear();
        }
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let mut seen = std::collections::HashSet::new();
        let ids: Vec<crate::id::Id> =
            pending.iter().flat_map(|(it, _)| it.chunks.iter().map(|c| c.0)).filter(|id| seen.insert(*id)).collect();
        // Failures are left out: writing that file then reports the error with its context.
        for (id, r) in ids.iter().zip(self.repo.load_many(ObjectType::Data, &ids)) {
            if let Ok(d) = r {
                self.prefetched.insert(*id, d);
            }
        }
        // Parent directories are resolved in order (the directory chain is sequential state);
        // the files are then created, written and given their metadata on all cores. A file
        // whose data did not load, or whose parent failed, takes the sequential path, which
        // reports the error with its context.
        let mut jobs: Vec<(usize, OwnedFd)> = Vec::new();
        let mut sequential: Vec<usize> = Vec::new();
        for (i, (it, rel)) in pending.iter().enumerate() {
            let comps = components(rel).expect("validated");
            let parents = &comps[..comps.len() - 1];
            let loaded = it.chunks.iter().all(|c| self.prefetched.contains_key(&c.0));
            match self.target.dir(parents, true).and_then(|d| d.try_clone_to_owned()) {
                Ok(fd) if loaded => jobs.push((i, fd)),
                _ => sequential.push(i),
            }
        }
        let (data, owner, reporter, sparse) = (&self.prefetched, &self.owner, self.reporter, self.opts.sparse);
        let results: Vec<(usize, Result<u64>)> = {
            use rayon::prelude::*;
            jobs.par_iter()
                .map(|(i, dir)| {
                    let (it, rel) = &pending[*i];
                    let name = rel.rsplit(|&b| b == b'/').next().expect("non-empty");
                    (*i, write_small(dir.as_fd(), name, it, data, sparse, owner, reporter))
                })
                .collect()
        };
        for (i, r) in results {
            let (it, rel) = &pending[i];
            match r {
                Ok(bytes) => {
                    if it.hardlink_master {
                        self.extracted.insert(it.path.clone(), rel.clone());
                    }
                    self.count_file(it, bytes);
                }
                Err(e) if is_fatal(&e) => {
                    if self.fatal.is_none() {
                        self.fatal = Some(fatal_error(it, e));
                    }
                }
                Err(e) => {
                    if matches!(e, Error::Integrity { .. } | Error::MissingBlob(_)) {
                        self.stats.data_errors += 1;
                    }
                    self.reporter.warning(&format!("{}: {e}", it.path_lossy()));
                }
            }
        }
        for i in sequential {
            let (it, rel) = &pending[i];
            self.restore_reporting(it, rel);
        }
        self.prefetched.clear();
    }

    fn restore_reporting(&mut self, it: &Item, rel: &[u8]) {
        if self.fatal.is_some() {
            return;
        }
        let shown = it.path_lossy();
        if let Err(e) = self.restore(it, rel) {
            if is_fatal(&e) {
                self.fatal = Some(fatal_error(it, e));
                return;
            }
            let data_error = matches!(e, Error::Integrity { .. } | Error::MissingBlob(_));
            if data_error {
                self.stats.data_errors += 1;
            }
            self.reporter.warning(&format!("{shown}: {e}"));
        }
    }

    fn excluded(&self, path: &[u8]) -> bool {
        self.opts.excludes.is_excluded(path)
    }

    fn restore(&mut self, it: &Item, rel: &[u8]) -> Result<()> {
        let comps = components(rel).expect("validated");
        let (name, parents) = comps.split_last().expect("non-empty");
        let ioe = |e: std::io::Error| Error::io("extracting", e);
        match it.kind {
            Kind::Dir => {
                let parent = self.target.dir(parents, true).map_err(ioe)?;
                match rustix::fs::statat(parent, os(name), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                    Ok(_) => {
                        rustix::fs::unlinkat(parent, os(name), AtFlags::empty()).map_err(|e| ioe(e.into()))?;
                        rustix::fs::mkdirat(parent, os(name), Mode::from_raw_mode(0o700)).map_err(|e| ioe(e.into()))?;
                    }
                    Err(_) => {
                        rustix::fs::mkdirat(parent, os(name), Mode::from_raw_mode(0o700)).map_err(|e| ioe(e.into()))?
                    }
                }
                self.dirs.push((rel.to_vec(), it.clone()));
            }
            Kind::File => {
                self.write_file(parents, name, it, &it.chunks, it.size)?;
                if it.hardlink_master {
                    self.extracted.insert(it.path.clone(), rel.to_vec());
                }
            }
            Kind::Hardlink => {
                let src = it.source.as_deref().ok_or_else(|| Error::malformed("item", "hardlink without source"))?;
                if let Some(src_rel) = self.extracted.get(src).cloned() {
                    let src_comps = components(&src_rel).expect("validated");
                    let (src_name, src_parents) = src_comps.split_last().expect("non-empty");
                    let src_dir =
                        self.target.dir(src_parents, false).map_err(ioe)?.try_clone_to_owned().map_err(ioe)?;
                    let parent = self.target.dir(parents, true).map_err(ioe)?;
                    clear_slot(parent, name).map_err(ioe)?;
                    rustix::fs::linkat(&src_dir, os(src_name), parent, os(name), AtFlags::empty())
                        .map_err(|e| ioe(e.into()))?;
                } else if let Some((chunks, size)) = self.masters.get(src).cloned() {
                    // The first name was not extracted: this name gets the content.
                    self.write_file(parents, name, it, &chunks, size)?;
                    self.extracted.insert(src.to_vec(), rel.to_vec());
                } else {
                    return Err(Error::malformed(
                        "item",
                        format!("hardlink source {:?} not found in the archive", String::from_utf8_lossy(src)),
                    ));
                }
            }
            Kind::Symlink => {
                let target = it.target.as_deref().ok_or_else(|| Error::malformed("item", "symlink without target"))?;
                let parent = self.target.dir(parents, true).map_err(ioe)?;
                clear_slot(parent, name).map_err(ioe)?;
                rustix::fs::symlinkat(os(target), parent, os(name)).map_err(|e| ioe(e.into()))?;
                if let Some((u, g)) = self.owner.ids(it) {
                    rustix::fs::chownat(parent, os(name), Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| ioe(e.into()))?;
                }
                rustix::fs::utimensat(parent, os(name), &timestamps(it), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| ioe(e.into()))?;
            }
            Kind::Fifo | Kind::CharDev | Kind::BlockDev => {
                let ft = match it.kind {
                    Kind::Fifo => FileType::Fifo,
                    Kind::CharDev => FileType::CharacterDevice,
                    _ => FileType::BlockDevice,
                };
                if ft != FileType::Fifo && !(self.owner.root && self.owner.privileged) {
                    self.reporter.warning(&format!(
                        "{}: device node not restored (needs root and --privileged)",
                        it.path_lossy()
                    ));
                    return Ok(());
                }
                let parent = self.target.dir(parents, true).map_err(ioe)?;
                clear_slot(parent, name).map_err(ioe)?;
                rustix::fs::mknodat(parent, os(name), ft, Mode::from_raw_mode(0o600), it.rdev)
                    .map_err(|e| ioe(e.into()))?;
                // No descriptor: opening a FIFO would block. The name was just created by us
                // in a directory opened without following symlinks.
                if let Some((u, g)) = self.owner.ids(it) {
                    rustix::fs::chownat(parent, os(name), Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| ioe(e.into()))?;
                }
                rustix::fs::chmodat(parent, os(name), self.owner.mode(it), AtFlags::empty())
                    .map_err(|e| ioe(e.into()))?;
                rustix::fs::utimensat(parent, os(name), &timestamps(it), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| ioe(e.into()))?;
            }
            Kind::Socket | Kind::Unknown => {
                self.reporter.warning(&format!("{}: item of an unknown kind skipped", it.path_lossy()));
            }
        }
        Ok(())
    }

    fn write_file(&mut self, parents: &[&[u8]], name: &[u8], it: &Item, chunks: &[ChunkRef], size: u64) -> Result<()> {
        let ioe = |e: std::io::Error| Error::io("extracting", e);
        let parent = self.target.dir(parents, true).map_err(ioe)?;
        let file = create_file(parent, name).map_err(ioe)?;
        let (repo, prefetched, sparse) = (self.repo, &self.prefetched, self.opts.sparse);
        // Chunks of one window not already prefetched, loaded and decrypted on all cores.
        let load = |window: &[ChunkRef]| -> HashMap<crate::id::Id, Result<Vec<u8>>> {
            let mut seen = std::collections::HashSet::new();
            let missing: Vec<crate::id::Id> =
                window.iter().map(|c| c.0).filter(|id| !prefetched.contains_key(id) && seen.insert(*id)).collect();
            if missing.is_empty() {
                return HashMap::new();
            }
            missing.iter().copied().zip(repo.load_many(ObjectType::Data, &missing)).collect()
        };
        let windows = crate::archive::item::windows(chunks, WINDOW_BYTES);
        let (mut offset, mut written_end) = (0u64, 0u64);
        let mut current = windows.first().map(|w| load(w)).unwrap_or_default();
        for k in 0..windows.len() {
            // The next window loads while this one is written.
            let (written, next) = std::thread::scope(|scope| {
                let next = windows.get(k + 1).map(|w| scope.spawn(move || load(w)));
                let mut written = Ok(());
                for c in windows[k] {
                    let data: &[u8] = match (prefetched.get(&c.0), current.get(&c.0)) {
                        (Some(d), _) | (None, Some(Ok(d))) => d,
                        _ => {
                            written = Err(match current.remove(&c.0) {
                                Some(Err(e)) => e,
                                _ => Error::MissingBlob(c.0.hex()),
                            });
                            break;
                        }
                    };
                    match write_at(&file, offset, data, sparse) {
                        Ok(end) => written_end = written_end.max(end),
                        Err(e) => {
                            written = Err(ioe(e));
                            break;
                        }
                    }
                    offset += data.len() as u64;
                }
                (written, next.map(|h| h.join().expect("chunk loader panicked")))
            });
            if let Err(e) = written {
                // Never leave a file with wrong content behind: remove the partial file.
                let _ = rustix::fs::unlinkat(parent, os(name), AtFlags::empty());
                return Err(e);
            }
            current = next.unwrap_or_default();
        }
        finish_file(&file, it, offset, written_end, size, &self.owner, self.reporter)?;
        self.count_file(it, offset);
        Ok(())
    }

    fn count_file(&mut self, it: &Item, bytes: u64) {
        self.stats.bytes += bytes;
        self.progress.files += 1;
        self.progress.bytes_read = self.stats.bytes;
        self.progress.path.clear();
        self.progress.path.extend_from_slice(&it.path);
        self.reporter.progress(&self.progress);
    }
}

/// Create `name` in `dir` for writing, never following a symlink; whatever non-directory
/// stands there is removed first.
fn create_file(dir: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<std::fs::File> {
    let create = || {
        rustix::fs::openat(
            dir,
            os(name),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    };
    // Usually the name is free.
    let fd = match create() {
        Err(rustix::io::Errno::EXIST) => {
            clear_slot(dir, name)?;
            create()
        }
        r => r,
    }?;
    Ok(std::fs::File::from(fd))
}

/// Length, warnings and metadata of a file whose content is written.
fn finish_file(
    file: &std::fs::File,
    it: &Item,
    offset: u64,
    written_end: u64,
    size: u64,
    owner: &Owner,
    reporter: &dyn Reporter,
) -> Result<()> {
    let ioe = |e: std::io::Error| Error::io("extracting", e);
    if !it.chunks_healthy.is_empty() {
        reporter.warning(&format!(
            "{}: damaged file: missing data restored as zeros (a later create of the same data and `check --repair` heal it)",
            it.path_lossy()
        ));
    }
    if offset != size {
        reporter.warning(&format!("{}: content is {offset} bytes, item says {size}", it.path_lossy()));
    }
    if written_end < offset {
        // The file ends in a hole: give it its length (it was created empty).
        file.set_len(offset).map_err(ioe)?;
    }
    apply_fd_metadata(file.as_fd(), it, owner).map_err(ioe)
}

/// Write a small file whose chunks are all in `data` (the parallel part of [`Extractor::flush`]).
fn write_small(
    dir: BorrowedFd<'_>,
    name: &[u8],
    it: &Item,
    data: &HashMap<crate::id::Id, Vec<u8>>,
    sparse: bool,
    owner: &Owner,
    reporter: &dyn Reporter,
) -> Result<u64> {
    let ioe = |e: std::io::Error| Error::io("extracting", e);
    let file = create_file(dir, name).map_err(ioe)?;
    let (mut offset, mut written_end) = (0u64, 0u64);
    for c in &it.chunks {
        let d = &data[&c.0];
        written_end = write_at(&file, offset, d, sparse).map_err(ioe)?.max(written_end);
        offset += d.len() as u64;
    }
    finish_file(&file, it, offset, written_end, it.size, owner, reporter)?;
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [&b"../x"[..], b"/etc/x", b"a/../../x", b"a//b", b"", b".", b"a/./b", b"a\0b"] {
            assert!(components(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(components(b"a/b c/d").unwrap().len(), 3);
    }

    #[test]
    fn selection_is_by_component_and_remembers_what_matched() {
        let paths = vec![b"store/projects/".to_vec(), b"etc/typo".to_vec()];
        let w = Wanted::new(&paths);
        assert!(!w.selects(b"store/projects2"));
        assert_eq!(w.unmatched(), ["store/projects/", "etc/typo"]);
        assert!(w.selects(b"store/projects/x"));
        assert!(w.selects(b"store/projects"));
        assert_eq!(w.unmatched(), ["etc/typo"]);
        let all = Wanted::new(&[]);
        assert!(all.selects(b"anything"));
        assert!(all.unmatched().is_empty());
    }
}
