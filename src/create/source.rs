//! What create reads from the filesystem: archive paths for walked entries and the metadata of
//! one entry as an [`Item`].

use crate::archive::item::{Item, Kind, Xattr};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path};

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

/// uid/gid to name lookups, cached.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Names {
    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| uzers::get_user_by_uid(uid).map(|u| u.name().to_string_lossy().into_owned()))
            .clone()
    }
    fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| uzers::get_group_by_gid(gid).map(|g| g.name().to_string_lossy().into_owned()))
            .clone()
    }
}

/// The item for an entry, without content; `None` for sockets (not archived, as in borg).
pub fn item_from_metadata(path: Vec<u8>, md: &Metadata, names: &mut Names) -> Option<Item> {
    let ft = md.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_char_device() {
        Kind::CharDev
    } else if ft.is_block_device() {
        Kind::BlockDev
    } else {
        return None;
    };
    let mut it = Item::new(path, kind);
    it.mode = md.mode() & 0o7777;
    it.uid = md.uid();
    it.gid = md.gid();
    it.user = names.user(md.uid());
    it.group = names.group(md.gid());
    it.mtime = md.mtime().saturating_mul(1_000_000_000).saturating_add(md.mtime_nsec());
    if matches!(kind, Kind::CharDev | Kind::BlockDev) {
        it.rdev = md.rdev();
    }
    Some(it)
}

/// Extended attributes of `fs_path` (not following symlinks); an unsupported filesystem yields
/// none.
pub fn read_xattrs(fs_path: &Path) -> std::io::Result<Vec<Xattr>> {
    // Most files have none: ask with a small stack buffer first, allocate only for a long list.
    let mut small = [0u8; 1024];
    let mut names: Vec<u8> = Vec::new();
    let n = match rustix::fs::llistxattr(fs_path, &mut small[..]) {
        Ok(0) => return Ok(vec![]),
        Ok(n) => {
            names.extend_from_slice(&small[..n]);
            n
        }
        Err(rustix::io::Errno::NOTSUP) => return Ok(vec![]),
        Err(rustix::io::Errno::RANGE) => {
            names.resize(16 * 1024, 0);
            loop {
                match rustix::fs::llistxattr(fs_path, &mut names[..]) {
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
            match rustix::fs::lgetxattr(fs_path, OsStr::from_bytes(name), &mut val[..]) {
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
        assert_eq!(read_xattrs(&f).unwrap(), want);
        assert_eq!(read_xattrs(&d.path().join("f")).unwrap().len(), 30);
        let plain = d.path().join("plain");
        std::fs::write(&plain, b"y").unwrap();
        assert!(read_xattrs(&plain).unwrap().is_empty());
    }
}
