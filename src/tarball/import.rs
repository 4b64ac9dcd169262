//! `import-tar`: turn a tar stream (ustar, PAX or GNU, e.g. from `borg export-tar` or GNU tar)
//! into archive items, as a [`Producer`] for the create pipeline, so content is chunked,
//! deduplicated and stored exactly as `create` stores files.
//!
//! Paths are normalised (leading `/` and `.` components dropped); an entry with a `..`
//! component is left out with a warning. PAX `mtime` (with fractions), `uid`/`gid`,
//! `uname`/`gname` and `SCHILY.xattr.*` records override the ustar fields. Hardlink entries
//! become `h` items naming the earlier file; since a file's later names are unknown when it is
//! stored, the archive is marked `unmarked_masters`. A stream that ends without the end-of-archive
//! block was cut short and creates no archive.

use crate::archive::item::{Item, Kind, Xattr};
use crate::create::walk::{read_content, Event, EventSink, Hangup};
use crate::create::Producer;
use std::collections::HashMap;
use std::io::Read;
use tar::EntryType;

/// `a/./b//c/` -> `a/b/c`; `None` for a path with a `..` component.
pub fn normalize(p: &[u8]) -> Option<Vec<u8>> {
    let comps: Vec<&[u8]> = p.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
    if comps.iter().any(|c| *c == b"..") {
        return None;
    }
    Some(comps.join(&b'/'))
}

/// PAX time: a decimal number of seconds, possibly negative, with up to 9 fraction digits.
fn pax_time(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = int.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += c.to_digit(10)? as i64 * 10i64.pow(8 - i as u32);
    }
    let t = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some(if neg { -t } else { t })
}

/// The item for a tar entry's header and PAX records (content and size filled in later).
fn item_for<R: Read>(entry: &mut tar::Entry<'_, R>, path: Vec<u8>, kind: Kind) -> std::io::Result<Item> {
    let h = entry.header().clone();
    let mut it = Item::new(path, kind);
    it.mode = h.mode()? & 0o7777;
    it.uid = h.uid()? as u32;
    it.gid = h.gid()? as u32;
    it.user = h.username_bytes().filter(|u| !u.is_empty()).map(|u| String::from_utf8_lossy(u).into_owned());
    it.group = h.groupname_bytes().filter(|g| !g.is_empty()).map(|g| String::from_utf8_lossy(g).into_owned());
    it.mtime = (h.mtime()? as i64).saturating_mul(1_000_000_000);
    if matches!(kind, Kind::CharDev | Kind::BlockDev) {
        let (maj, min) = (h.device_major()?.unwrap_or(0), h.device_minor()?.unwrap_or(0));
        it.rdev = libc::makedev(maj, min);
    }
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let (k, v) = (ext.key_bytes(), ext.value_bytes());
            let num = || std::str::from_utf8(v).ok().and_then(|s| s.parse::<u32>().ok());
            match k {
                b"mtime" => it.mtime = pax_time(v).unwrap_or(it.mtime),
                b"uid" => it.uid = num().unwrap_or(it.uid),
                b"gid" => it.gid = num().unwrap_or(it.gid),
                b"uname" => it.user = Some(String::from_utf8_lossy(v).into_owned()),
                b"gname" => it.group = Some(String::from_utf8_lossy(v).into_owned()),
                _ => {
                    if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                        it.xattrs.push(Xattr(name.to_vec(), v.to_vec()));
                    }
                }
            }
        }
    }
    Ok(it)
}

/// A reader that remembers the last 512 bytes it returned, to tell a tar stream that ended with its
/// end-of-archive block from one cut short at an entry boundary (which the tar crate, like GNU tar,
/// would otherwise accept as complete).
struct Tail<R> {
    inner: R,
    tail: [u8; 512],
    len: usize,
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let new = &buf[..n];
        if n >= 512 {
            self.tail.copy_from_slice(&new[n - 512..]);
            self.len = 512;
        } else if n > 0 {
            self.tail.copy_within(n.., 0);
            self.tail[512 - n..].copy_from_slice(new);
            self.len = (self.len + n).min(512);
        }
        Ok(n)
    }
}

impl<R> Tail<R> {
    fn ended_with_zero_block(&self) -> bool {
        self.len == 512 && self.tail.iter().all(|&b| b == 0)
    }
}

/// A producer that reads a tar stream from `reader`; `ignore_zeros` reads on past zero blocks
/// (concatenated tar files, GNU tar's `--ignore-zeros`).
pub fn producer(reader: Box<dyn Read + Send>, ignore_zeros: bool) -> Producer {
    Box::new(move |sink: &mut EventSink, params, seed, reporter| {
        let reader = Tail { inner: reader, tail: [0; 512], len: 0 };
        let abort = |sink: &mut EventSink, e: std::io::Error| {
            sink.send(Event::Abort(format!("reading the tar stream: {e} (not a tar file, or cut short?)")))
        };
        let mut ar = tar::Archive::new(reader);
        ar.set_ignore_zeros(ignore_zeros);
        let entries = match ar.entries() {
            Ok(e) => e,
            Err(e) => return abort(sink, e),
        };
        // Regular files stored so far (path -> size), for hardlink entries naming them.
        let mut files: HashMap<Vec<u8>, u64> = HashMap::new();
        for entry in entries {
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => return abort(sink, e),
            };
            let raw = entry.path_bytes().into_owned();
            let Some(path) = normalize(&raw) else {
                reporter.warning(&format!("{}: leaving out a path with '..'", String::from_utf8_lossy(&raw)));
                continue;
            };
            if path.is_empty() {
                continue; // "./" itself
            }
            let kind = match entry.header().entry_type() {
                EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
                EntryType::Directory => Kind::Dir,
                EntryType::Symlink => Kind::Symlink,
                EntryType::Link => Kind::Hardlink,
                EntryType::Fifo => Kind::Fifo,
                EntryType::Char => Kind::CharDev,
                EntryType::Block => Kind::BlockDev,
                other => {
                    reporter.warning(&format!(
                        "{}: leaving out an entry of unsupported tar type {:?}",
                        String::from_utf8_lossy(&path),
                        other
                    ));
                    continue;
                }
            };
            let mut item = match item_for(&mut entry, path.clone(), kind) {
                Ok(i) => i,
                Err(e) => return abort(sink, e),
            };
            match kind {
                Kind::File => {
                    let size = entry.size();
                    reporter.item('A', &path);
                    sink.send(Event::FileStart { item, key: None })?;
                    match read_content(&mut entry, Some(size), params, seed, &mut |c| sink.send(Event::Chunk(c)))? {
                        Ok(n) => {
                            sink.send(Event::FileEnd { changed: false })?;
                            files.insert(path, n);
                        }
                        Err(e) => return abort(sink, e),
                    }
                    continue;
                }
                Kind::Symlink | Kind::Hardlink => {
                    let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                    if kind == Kind::Symlink {
                        item.size = target.len() as u64;
                        item.target = Some(target);
                        reporter.item('s', &path);
                    } else {
                        let src = normalize(&target).unwrap_or_default();
                        let Some(&size) = files.get(&src) else {
                            reporter.warning(&format!(
                                "{}: leaving out a hardlink to {:?}, which is not an earlier file of the tar",
                                String::from_utf8_lossy(&path),
                                String::from_utf8_lossy(&target)
                            ));
                            continue;
                        };
                        item.size = size;
                        item.source = Some(src);
                        reporter.item('h', &path);
                    }
                }
                Kind::Dir => reporter.item('d', &path),
                _ => reporter.item('A', &path),
            }
            sink.send(Event::Item(item))?;
        }
        let mut rest = ar.into_inner();
        if !rest.ended_with_zero_block() {
            return sink.send(Event::Abort(
                "the tar stream ends without its end-of-archive block: it was cut short (no archive created)".into(),
            ));
        }
        // Read to the end, past the end-of-archive blocks: a filter's failure shows there.
        if let Err(e) = std::io::copy(&mut rest, &mut std::io::sink()) {
            return abort(sink, e);
        }
        Ok::<(), Hangup>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths_and_pax_times() {
        assert_eq!(normalize(b"./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(normalize(b"/etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert!(normalize(b"a/../../x").is_none());
        assert_eq!(pax_time(b"1700000000.123456789"), Some(1_700_000_000_123_456_789));
        assert_eq!(pax_time(b"1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(pax_time(b"12"), Some(12_000_000_000));
        assert_eq!(pax_time(b"-1.5"), Some(-1_500_000_000));
        assert_eq!(pax_time(b"x"), None);
    }
}
