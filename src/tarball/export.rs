//! `export-tar`: write an archive (or part of it) as a PAX tar stream.
//!
//! Each entry gets a ustar header plus, where ustar cannot say it, a PAX extended header:
//! `path`/`linkpath` longer than 100 bytes, `mtime` with nanoseconds, `uname`/`gname` longer than
//! 32 bytes, `uid`/`gid`/`size` too large for octal fields, and `SCHILY.xattr.NAME` for every
//! extended attribute (the keys GNU tar's `--xattrs` reads and writes). Hardlinks become link
//! entries to the first exported name; a link whose first name is not exported carries the data.
//! File content is loaded a window of chunks at a time, decrypted on all cores: memory stays
//! bounded whatever the file sizes. Small files are loaded a group at a time (one index lookup
//! and one parallel load for many files, not one for each).

use crate::archive::item::{ChunkRef, Item, Kind};
use crate::archive::{self, Archive};
use crate::error::{Error, Result};
use crate::extract::{components, Wanted};
use crate::id::{Id, ObjectType};
use crate::patterns::Patterns;
use crate::progress::Reporter;
use crate::repository::Repository;
use std::collections::HashMap;
use std::io::{Read, Write};
use tar::{Builder, EntryType, Header};

pub struct ExportOptions {
    /// Archive paths to export (with everything below them); empty means all.
    pub paths: Vec<Vec<u8>>,
    pub excludes: Patterns,
    pub strip_components: usize,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ExportStats {
    pub items: u64,
    pub bytes: u64,
}

/// Plaintext bytes loaded (in parallel) per window while streaming a file (at least one chunk):
/// sixteen chunks at the default sizes, up to 4,096 when they are small.
const WINDOW_BYTES: u64 = 16 * 1024 * 1024;

/// Files up to this size have their chunks loaded ahead, for a group of items at once.
const SMALL_FILE: u64 = 1024 * 1024;
/// Items read ahead per group: at most this many, holding at most [`WINDOW_BYTES`] of small
/// files' content. A group per file cost a million tiny files 14 s of index lookups in 26 s.
const GROUP_ITEMS: usize = 4096;
/// Chunk references held by a group's items at most (plus one item's): big files' chunk lists
/// must not pile up 4,096 at a time.
const GROUP_REFS: usize = 1 << 16;

/// A file's content as a reader, loading windows of chunks from the repository.
struct ChunkReader<'r> {
    repo: &'r Repository,
    /// Chunks loaded ahead with the file's group.
    loaded: &'r HashMap<Id, Vec<u8>>,
    windows: std::vec::IntoIter<&'r [ChunkRef]>,
    window: std::vec::IntoIter<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            if let Some(c) = self.window.next() {
                self.cur = c;
                self.pos = 0;
                continue;
            }
            let Some(window) = self.windows.next() else { return Ok(0) };
            // Each id once (the zero blocks of a disk image repeat).
            let mut seen = std::collections::HashSet::new();
            let ids: Vec<_> =
                window.iter().map(|c| c.0).filter(|id| !self.loaded.contains_key(id) && seen.insert(*id)).collect();
            let loaded: Result<Vec<Vec<u8>>> = self.repo.load_many(ObjectType::Data, &ids).into_iter().collect();
            let loaded: std::collections::HashMap<_, _> =
                ids.into_iter().zip(loaded.map_err(std::io::Error::other)?).collect();
            let chunk = |id: &Id| self.loaded.get(id).unwrap_or_else(|| &loaded[id]).clone();
            self.window = window.iter().map(|c| chunk(&c.0)).collect::<Vec<_>>().into_iter();
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// ustar's octal fields: 7 digits for ids, 11 for sizes and times.
const MAX_ID: u64 = 0o7777777;
const MAX_SIZE: u64 = 0o77777777777;

/// A PAX time: a signed decimal of seconds with nanoseconds (-1.5 s is "-1.500000000").
fn pax_time(ns: i64) -> String {
    let (secs, nanos) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    if secs < 0 && nanos != 0 {
        let total = -(ns as i128);
        format!("-{}.{:09}", total / 1_000_000_000, total % 1_000_000_000)
    } else {
        format!("{secs}.{nanos:09}")
    }
}

fn pax_record(out: &mut Vec<(String, Vec<u8>)>, key: &str, value: impl Into<Vec<u8>>) {
    out.push((key.to_string(), value.into()));
}

/// Build the header and PAX records of one entry (`name` is the exported path).
fn header_for(it: &Item, name: &[u8], kind: EntryType, size: u64) -> (Header, Vec<(String, Vec<u8>)>) {
    let mut pax = Vec::new();
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    let mut tar_name = name.to_vec();
    if kind == EntryType::Directory {
        tar_name.push(b'/');
    }
    if tar_name.len() > 100 {
        pax_record(&mut pax, "path", tar_name.clone());
    }
    {
        let u = h.as_ustar_mut().expect("ustar header");
        let n = tar_name.len().min(100);
        u.name[..n].copy_from_slice(&tar_name[..n]);
    }
    h.set_mode(it.mode & 0o7777);
    for (key, v) in [("uid", it.uid as u64), ("gid", it.gid as u64)] {
        if v > MAX_ID {
            pax_record(&mut pax, key, v.to_string());
        }
    }
    h.set_uid((it.uid as u64).min(MAX_ID));
    h.set_gid((it.gid as u64).min(MAX_ID));
    for (key, v, set) in [
        ("uname", &it.user, Header::set_username as fn(&mut Header, &str) -> std::io::Result<()>),
        ("gname", &it.group, Header::set_groupname),
    ] {
        if let Some(v) = v {
            if v.len() > 32 || set(&mut h, v).is_err() {
                pax_record(&mut pax, key, v.as_bytes());
            }
        }
    }
    h.set_mtime(it.mtime.div_euclid(1_000_000_000).max(0) as u64);
    if it.mtime.rem_euclid(1_000_000_000) != 0 || it.mtime < 0 {
        pax_record(&mut pax, "mtime", pax_time(it.mtime));
    }
    if let Some(a) = it.atime {
        pax_record(&mut pax, "atime", pax_time(a));
    }
    if size > MAX_SIZE {
        pax_record(&mut pax, "size", size.to_string());
    }
    h.set_size(size);
    for x in &it.xattrs {
        match std::str::from_utf8(&x.0) {
            Ok(n) if !n.contains('=') => pax_record(&mut pax, &format!("SCHILY.xattr.{n}"), x.1.clone()),
            _ => {} // PAX keys are UTF-8 without '=': such names cannot be expressed.
        }
    }
    (h, pax)
}

fn set_link(h: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, target: &[u8]) {
    if target.len() > 100 {
        pax_record(pax, "linkpath", target.to_vec());
    }
    let u = h.as_ustar_mut().expect("ustar header");
    let n = target.len().min(100);
    u.linkname = [0; 100];
    u.linkname[..n].copy_from_slice(&target[..n]);
}

fn io_err(e: std::io::Error) -> Error {
    Error::io("writing the tar stream", e)
}

/// What one export carries from item to item.
struct Exporter<'a, 'w> {
    repo: &'a Repository,
    opts: &'a ExportOptions,
    reporter: &'a dyn Reporter,
    /// Paths later hardlink items name as their source, for archives without master flags.
    sources: Option<std::collections::HashSet<Vec<u8>>>,
    /// First names of hardlinked files: their content, and the name they were exported under.
    masters: HashMap<Vec<u8>, (Vec<ChunkRef>, u64)>,
    exported: HashMap<Vec<u8>, Vec<u8>>,
    b: Builder<&'w mut dyn Write>,
    stats: ExportStats,
    wanted: Wanted<'a>,
}

fn is_small_file(it: &Item) -> bool {
    it.kind == Kind::File && it.size <= SMALL_FILE
}

/// Write the selected items of `archive` to `out` as a tar stream.
pub fn export(
    repo: &Repository,
    archive: &Archive,
    opts: &ExportOptions,
    out: &mut dyn Write,
    reporter: &dyn Reporter,
) -> Result<ExportStats> {
    let mut x = Exporter {
        repo,
        opts,
        reporter,
        sources: archive.hardlink_sources(repo)?,
        masters: HashMap::new(),
        exported: HashMap::new(),
        b: Builder::new(out),
        stats: ExportStats::default(),
        wanted: Wanted::new(&opts.paths),
    };
    let mut items = archive.items(repo);
    loop {
        let (mut group, mut small, mut refs) = (Vec::new(), 0u64, 0usize);
        while group.len() < GROUP_ITEMS && small < WINDOW_BYTES && refs < GROUP_REFS {
            let Some(it) = items.next() else { break };
            let it = it?;
            if is_small_file(&it) && x.wanted(&it) {
                small += it.size;
            }
            refs += it.chunks.len();
            group.push(it);
        }
        if group.is_empty() {
            break;
        }
        let mut seen = std::collections::HashSet::new();
        let ids: Vec<Id> = group
            .iter()
            .filter(|it| is_small_file(it) && x.wanted(it))
            .flat_map(|it| it.chunks.iter().map(|c| c.0))
            .filter(|id| seen.insert(*id))
            .collect();
        // A chunk that fails to load here is loaded again with its file, which reports the error.
        let loaded: HashMap<Id, Vec<u8>> = ids
            .iter()
            .zip(repo.load_many(ObjectType::Data, &ids))
            .filter_map(|(id, r)| r.ok().map(|data| (*id, data)))
            .collect();
        for it in group {
            x.item(it, &loaded)?;
        }
    }
    x.b.into_inner().map_err(io_err)?.flush().map_err(io_err)?;
    x.wanted.warn_unmatched(reporter, "nothing exported for it");
    Ok(x.stats)
}

impl Exporter<'_, '_> {
    fn wanted(&self, it: &Item) -> bool {
        self.wanted.selects(&it.path) && !self.opts.excludes.is_excluded(&it.path)
    }

    /// Write one item (a header, and a file's content) to the tar stream; `loaded` holds chunks
    /// loaded ahead.
    fn item(&mut self, it: Item, loaded: &HashMap<Id, Vec<u8>>) -> Result<()> {
        let (repo, opts, reporter, wanted) = (self.repo, self.opts, self.reporter, self.wanted(&it));
        let (masters, exported, b, stats) = (&mut self.masters, &mut self.exported, &mut self.b, &mut self.stats);
        let master = archive::is_master(&it, &self.sources);
        if master {
            masters.insert(it.path.clone(), (it.chunks.clone(), it.size));
        }
        if !wanted {
            return Ok(());
        }
        let Some(comps) = components(&it.path) else {
            reporter.warning(&format!("{:?}: leaving out an unsafe path", it.path_lossy()));
            return Ok(());
        };
        if comps.len() <= opts.strip_components {
            return Ok(());
        }
        let name = comps[opts.strip_components..].join(&b'/');
        let content = |chunks: &[ChunkRef]| chunks.iter().map(|c| c.1 as u64).sum::<u64>();
        let (kind, chunks, link): (EntryType, Option<Vec<ChunkRef>>, Option<Vec<u8>>) = match it.kind {
            Kind::Dir => (EntryType::Directory, None, None),
            Kind::File => (EntryType::Regular, Some(it.chunks.clone()), None),
            Kind::Symlink => (EntryType::Symlink, None, it.target.clone()),
            Kind::Hardlink => {
                let src = it.source.clone().unwrap_or_default();
                if let Some(first) = exported.get(&src) {
                    (EntryType::Link, None, Some(first.clone()))
                } else if let Some((chunks, _)) = masters.get(&src) {
                    // The first name was left out: this name carries the data.
                    exported.insert(src, name.clone());
                    (EntryType::Regular, Some(chunks.clone()), None)
                } else {
                    reporter.warning(&format!("{}: hardlink source not in the archive", it.path_lossy()));
                    return Ok(());
                }
            }
            Kind::Fifo => (EntryType::Fifo, None, None),
            Kind::CharDev => (EntryType::Char, None, None),
            Kind::BlockDev => (EntryType::Block, None, None),
            Kind::Socket | Kind::Unknown => return Ok(()),
        };
        let size = chunks.as_deref().map_or(0, content);
        let (mut h, mut pax) = header_for(&it, &name, kind, size);
        if let Some(l) = &link {
            set_link(&mut h, &mut pax, l);
        }
        if matches!(kind, EntryType::Char | EntryType::Block) {
            let (maj, min) = (libc::major(it.rdev as libc::dev_t), libc::minor(it.rdev as libc::dev_t));
            h.set_device_major(maj).map_err(io_err)?;
            h.set_device_minor(min).map_err(io_err)?;
        }
        h.set_cksum();
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).map_err(io_err)?;
        }
        match &chunks {
            Some(c) => {
                let reader = ChunkReader {
                    repo,
                    loaded,
                    windows: crate::archive::item::windows(c, WINDOW_BYTES).into_iter(),
                    window: Vec::new().into_iter(),
                    cur: vec![],
                    pos: 0,
                };
                b.append(&h, reader).map_err(|e| match e.downcast::<Error>() {
                    Ok(inner) => inner,
                    Err(e) => io_err(e),
                })?;
            }
            None => b.append(&h, std::io::empty()).map_err(io_err)?,
        }
        if master && it.kind == Kind::File {
            exported.insert(it.path.clone(), name.clone());
        }
        reporter.item(' ', &it.path);
        stats.items += 1;
        stats.bytes += size;
        Ok(())
    }
}
