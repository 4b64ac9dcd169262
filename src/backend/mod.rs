//! The repository directory as a dumb object store (repo-format.md, "Directory layout").
//!
//! Objects are named by slash-separated keys relative to the repository root. Durability
//! contract of [`LocalBackend::put`]: when it returns `Ok`, the object's bytes and its directory
//! entry are on stable storage (tmp file, fsync, rename without overwrite, fsync of the
//! directory). An object is never modified after `put`; it can only be deleted. If any step fails
//! the temporary file is removed and the object is treated as never written: an fsync error is
//! never retried and then trusted.

mod direct;

use crate::error::{Error, IoContext, Result};
use crate::faults;
use rustix::fs::RenameFlags;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const TMP_DIR: &str = "tmp";

#[derive(Clone, Debug)]
pub struct LocalBackend {
    root: PathBuf,
    /// Open read descriptors of recently read objects (shared by clones). Objects are immutable,
    /// so a cached descriptor always reads the right bytes; deleting an object forgets it.
    open: Arc<Mutex<HashMap<String, Arc<File>>>>,
}

/// Read descriptors kept open by one backend.
const OPEN_FILES: usize = 128;

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into(), open: Arc::default() }
    }

    /// A read descriptor for `key`, from the cache or newly opened.
    fn reader(&self, key: &str) -> Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(key) {
            return Ok(f.clone());
        }
        let p = self.path(key);
        let f = Arc::new(File::open(&p).ctx(|| format!("opening {}", p.display()))?);
        if open.len() >= OPEN_FILES {
            // Any victim will do: a miss costs one open(2).
            if let Some(k) = open.keys().next().cloned() {
                open.remove(&k);
            }
        }
        open.insert(key.to_string(), f.clone());
        Ok(f)
    }

    /// Drop a cached descriptor of `key` (it was deleted or moved away).
    pub fn forget(&self, key: &str) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Store `data` under `key` durably; fails with `AlreadyExists` if `key` exists.
    pub fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.put_parts(key, &[data])
    }

    /// [`put`](Self::put) of the concatenation of `parts`, without joining them in memory.
    pub fn put_parts<P: AsRef<[u8]>>(&self, key: &str, parts: &[P]) -> Result<()> {
        self.stage(key, parts.iter().collect())?.commit()
    }

    /// The first half of [`put_parts`](Self::put_parts): write `parts` to a temporary file, not
    /// yet durable nor visible under `key`, dropping each part once it is written out. The caller
    /// may [`commit`](Staged::commit) later, from another thread; a [`Staged`] dropped uncommitted
    /// removes its file.
    pub fn stage<P: AsRef<[u8]>>(&self, key: &str, parts: Vec<P>) -> Result<Staged> {
        let dest = self.path(key);
        let dir = dest.parent().expect("keys have a parent").to_path_buf();
        fs::create_dir_all(&dir).ctx(|| format!("creating directory {}", dir.display()))?;
        let tmp_dir = self.root.join(TMP_DIR);
        fs::create_dir_all(&tmp_dir).ctx(|| format!("creating directory {}", tmp_dir.display()))?;
        let mut rnd = [0u8; 8];
        crate::crypto::random_bytes(&mut rnd);
        let tmp = tmp_dir.join(format!("{}.tmp", hex::encode(rnd)));
        let f =
            OpenOptions::new().write(true).create_new(true).open(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        // From here on, dropping `staged` removes the file.
        let mut staged = Staged { key: key.to_string(), file: None, tmp, dest, dir };
        direct::write_parts(&f, parts).ctx(|| format!("writing {}", staged.tmp.display()))?;
        staged.file = Some(f);
        Ok(staged)
    }

    /// Atomically replace a small object (only the key file, on passphrase change or import):
    /// readers see the old or the new bytes, never a mix.
    pub fn replace(&self, key: &str, data: &[u8]) -> Result<()> {
        let dest = self.path(key);
        // A name of its own: two passphrase changes at once must not write into one file.
        let mut rnd = [0u8; 8];
        crate::crypto::random_bytes(&mut rnd);
        let tmp = self.root.join(TMP_DIR).join(format!("{}.{}.replace.tmp", key.replace('/', "_"), hex::encode(rnd)));
        std::fs::create_dir_all(self.root.join(TMP_DIR)).ctx(|| format!("creating {}", TMP_DIR))?;
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .ctx(|| format!("creating {}", tmp.display()))?;
            f.write_all(data).and_then(|_| f.sync_all()).ctx(|| format!("writing {}", tmp.display()))?;
            fs::rename(&tmp, &dest).ctx(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
            sync_dir(dest.parent().expect("has parent"))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        let p = self.path(key);
        fs::read(&p).ctx(|| format!("reading {}", p.display()))
    }

    /// The whole object, or `None` if there is no such object.
    pub fn get_if_exists(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let p = self.path(key);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
        }
    }

    /// The whole object into `buf` (cleared first; its capacity is reused).
    pub fn get_into(&self, key: &str, buf: &mut Vec<u8>) -> Result<()> {
        use std::io::Read;
        let p = self.path(key);
        buf.clear();
        fs::File::open(&p).and_then(|mut f| f.read_to_end(buf)).ctx(|| format!("reading {}", p.display()))?;
        Ok(())
    }

    /// `len` bytes at `offset`; a short object is an error.
    /// The bytes are read into the vector's spare capacity, so they are not zero-filled first
    /// (that fill was 1.6 % of a mounted file's sequential read).
    pub fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let f = self.reader(key)?;
        let what = || format!("reading {len} bytes at {offset} of {}", self.path(key).display());
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            let at = offset + buf.len() as u64;
            match rustix::io::pread(&*f, rustix::buffer::spare_capacity(&mut buf), at) {
                Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)).ctx(what),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e).ctx(what),
            }
        }
        // The spare capacity may exceed `len`, and a read may have filled it past `len`.
        buf.truncate(len);
        Ok(buf)
    }

    /// A hint that `len` bytes at `offset` will be read soon: the kernel starts reading them from
    /// disk in the background (posix_fadvise WILLNEED), so a later [`get_range`](Self::get_range)
    /// finds them in memory. Errors are ignored: a hint that fails only costs speed.
    pub fn prefetch(&self, key: &str, offset: u64, len: u64) {
        if let Ok(f) = self.reader(key) {
            let _ = rustix::fs::fadvise(&*f, offset, std::num::NonZeroU64::new(len), rustix::fs::Advice::WillNeed);
        }
    }

    /// The last `len` bytes of an object and the object's total length.
    pub fn get_tail(&self, key: &str, len: usize) -> Result<(Vec<u8>, u64)> {
        let p = self.path(key);
        let mut f = File::open(&p).ctx(|| format!("opening {}", p.display()))?;
        let total = f.metadata().ctx(|| format!("stat of {}", p.display()))?.len();
        let n = (len as u64).min(total);
        f.seek(SeekFrom::Start(total - n)).ctx(|| format!("seeking in {}", p.display()))?;
        let mut buf = Vec::with_capacity(n as usize);
        f.take(n).read_to_end(&mut buf).ctx(|| format!("reading {}", p.display()))?;
        Ok((buf, total))
    }

    pub fn exists(&self, key: &str) -> bool {
        self.path(key).exists()
    }

    pub fn size(&self, key: &str) -> Result<u64> {
        let p = self.path(key);
        Ok(fs::metadata(&p).ctx(|| format!("stat of {}", p.display()))?.len())
    }

    /// Keys of all objects directly in `dir` (one level), or in its subdirectories when
    /// `nested` (the two-level fan-out of `data/`). Temporary names are skipped.
    pub fn list(&self, dir: &str, nested: bool) -> Result<Vec<String>> {
        let base = self.path(dir);
        let mut out = Vec::new();
        let rd = match fs::read_dir(&base) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(format!("listing {}", base.display()), e)),
        };
        for ent in rd {
            let ent = ent.ctx(|| format!("listing {}", base.display()))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                continue;
            }
            if nested {
                if ent.file_type().ctx(|| format!("listing {}", base.display()))?.is_dir() {
                    for sub in self.list(&format!("{dir}/{name}"), false)? {
                        out.push(sub);
                    }
                }
            } else {
                out.push(format!("{dir}/{name}"));
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        self.forget(key);
        let p = self.path(key);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("deleting {}", p.display()), e)),
        }
    }

    /// Remove leftovers of interrupted `put`s. Only call while holding the writer lock.
    pub fn clean_tmp(&self) -> Result<usize> {
        let dir = self.root.join(TMP_DIR);
        let mut n = 0;
        if let Ok(rd) = fs::read_dir(&dir) {
            for ent in rd.flatten() {
                if fs::remove_file(ent.path()).is_ok() {
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).ctx(|| format!("opening directory {}", dir.display()))?;
    d.sync_all().ctx(|| format!("fsync of directory {}", dir.display()))
}

/// `create_dir_all` whose new directories survive a power cut: each directory it creates is
/// fsynced in its parent. A directory that exists already costs one `stat`.
pub fn create_dir_all_synced(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    // The missing ancestors, outermost last.
    let mut missing = vec![dir];
    while let Some(parent) = missing.last().and_then(|d| d.parent()) {
        if parent.as_os_str().is_empty() || parent.is_dir() {
            break;
        }
        missing.push(parent);
    }
    fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    for d in missing.iter().rev() {
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

/// An object written by [`LocalBackend::stage`], waiting for [`commit`](Staged::commit).
pub struct Staged {
    key: String,
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
    dir: PathBuf,
}

impl Staged {
    /// Make the object durable and visible under its key: fsync, rename into place (never over
    /// an existing object), fsync the directory. On failure the object counts as never written.
    pub fn commit(mut self) -> Result<()> {
        let f = self.file.take().expect("a staged object holds its file until committed");
        faults::io_point("fsync-object")
            .and_then(|_| f.sync_all())
            .ctx(|| format!("fsync of {}", self.tmp.display()))?;
        drop(f);
        faults::crash_point("object-synced");
        rustix::fs::renameat_with(rustix::fs::CWD, &self.tmp, rustix::fs::CWD, &self.dest, RenameFlags::NOREPLACE)
            .map_err(|e| {
                let e: std::io::Error = e.into();
                if e.kind() == ErrorKind::AlreadyExists {
                    Error::io(format!("storing {}: an object of that name already exists", self.key), e)
                } else {
                    Error::io(format!("renaming {} to {}", self.tmp.display(), self.dest.display()), e)
                }
            })?;
        // Renamed: the temporary name is gone, nothing left for drop to remove.
        self.tmp = PathBuf::new();
        if let Err(e) = sync_dir(&self.dir) {
            // The entry's durability is unknown: the object counts as never written.
            let _ = fs::remove_file(&self.dest);
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_object_is_invisible_until_committed_and_leaves_nothing_when_dropped() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path());
        let tmp_files = || fs::read_dir(d.path().join(TMP_DIR)).unwrap().count();
        let staged = b.stage("data/ab/one", vec![&b"he"[..], b"llo"]).unwrap();
        assert!(!b.exists("data/ab/one"));
        assert_eq!(tmp_files(), 1);
        drop(staged);
        assert!(!b.exists("data/ab/one"));
        assert_eq!(tmp_files(), 0, "a dropped staged object removes its file");
        b.stage("data/ab/one", vec![b"hello"]).unwrap().commit().unwrap();
        assert_eq!(b.get("data/ab/one").unwrap(), b"hello");
        // committing over an existing object fails, keeps the old bytes and cleans up
        let e = b.stage("data/ab/one", vec![b"other"]).unwrap().commit().unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(b.get("data/ab/one").unwrap(), b"hello");
        assert_eq!(tmp_files(), 0);
    }

    #[test]
    fn replacements_at_once_each_land_whole() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path());
        b.put("repokey", b"first").unwrap();
        let versions: Vec<Vec<u8>> = (0..6u8).map(|i| vec![b'a' + i; 256 * 1024 + i as usize]).collect();
        std::thread::scope(|s| {
            for v in &versions {
                let (b, versions) = (&b, &versions);
                s.spawn(move || {
                    for _ in 0..20 {
                        b.replace("repokey", v).unwrap();
                        let now = b.get("repokey").unwrap();
                        assert!(versions.contains(&now), "a reader saw a mix of {} bytes", now.len());
                    }
                });
            }
        });
        assert_eq!(fs::read_dir(d.path().join(TMP_DIR)).unwrap().count(), 0, "temporary files left");
    }

    #[test]
    fn put_is_atomic_and_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path());
        b.put("data/ab/abc", b"hello").unwrap();
        assert!(b.put("data/ab/abc", b"other").is_err());
        assert_eq!(b.get("data/ab/abc").unwrap(), b"hello");
        assert_eq!(b.get_range("data/ab/abc", 1, 3).unwrap(), b"ell");
        // a prefetch hint never fails nor changes anything, whatever it names
        b.prefetch("data/ab/abc", 1, 3);
        b.prefetch("data/ab/abc", 1 << 40, 0);
        b.prefetch("data/ab/missing", 0, 10);
        assert!(!b.exists("data/ab/missing"));
        assert_eq!(b.get_range("data/ab/abc", 1, 3).unwrap(), b"ell");
        assert_eq!(b.get_range("data/ab/abc", 0, 5).unwrap(), b"hello");
        assert_eq!(b.get_range("data/ab/abc", 5, 0).unwrap(), b"");
        // a range running past the end is an error naming the object, not a short buffer
        let e = b.get_range("data/ab/abc", 3, 3).unwrap_err().to_string();
        assert!(e.contains("reading 3 bytes at 3 of") && e.contains("abc"), "{e}");
        assert!(b.get_range("data/ab/abc", 9, 1).is_err());
        assert_eq!(b.get_tail("data/ab/abc", 2).unwrap(), (b"lo".to_vec(), 5));
        assert_eq!(b.list("data", true).unwrap(), vec!["data/ab/abc".to_string()]);
        assert!(fs::read_dir(d.path().join(TMP_DIR)).unwrap().next().is_none());
        b.delete("data/ab/abc").unwrap();
        assert!(!b.exists("data/ab/abc"));
    }
}
