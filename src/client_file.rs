//! Rewriting the small files garret keeps on the client, outside any repository: the client state
//! and index stamp (security dir), the files cache (cache dir) and key files (keys dir).
//!
//! Several garret processes on one machine rewrite them at once (a `list` and a `create` of the
//! same repository both save the client state), so a rewrite holds an exclusive `flock` on the
//! directory's `lock` file while it writes `<name>.tmp` and renames it over `<name>`. Readers
//! take no lock: they see the old file or the new one, never a mix. On a file system without
//! `flock` the lock is skipped and the rename still keeps every file whole.
//!
//! Key files and the client state must also survive a power cut ([`Durability::Synced`]): a key
//! file that a crash leaves empty makes every backup unreadable. Caches that are checked when
//! loaded are not synced ([`Durability::Cache`]): losing one costs time, never safety.

use crate::error::{IoContext, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Name of the lock file in each client directory; empty, never removed.
pub const LOCK_FILE: &str = "lock";

/// An exclusive hold on one client directory, released on drop (or by the kernel when the
/// process dies, so a killed process never leaves it held).
pub struct DirLock {
    _file: File,
}

/// Whether a rewritten file must be on stable storage when the rewrite returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The new file is fsynced before the rename and its directory after: key files, the client
    /// state.
    Synced,
    /// Not synced: a cache that is checked when loaded (files cache, index stamp).
    Cache,
}

/// Create `dir` if needed (durably: a key file's directory must survive a power cut too) and
/// wait for its lock.
pub fn lock_dir(dir: &Path) -> Result<DirLock> {
    crate::backend::create_dir_all_synced(dir)?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ctx(|| format!("opening {}", path.display()))?;
    let _ = rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive);
    Ok(DirLock { _file: file })
}

/// Replace `dest` with what `write` puts into a fresh file. The caller holds `_held`, the lock of
/// `dest`'s directory, so no other process writes the same temporary file meanwhile.
pub fn replace_with(
    _held: &DirLock,
    dest: &Path,
    durability: Durability,
    write: impl FnOnce(&File) -> std::io::Result<()>,
) -> Result<()> {
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let result = File::create(&tmp)
        .and_then(|f| {
            write(&f)?;
            if durability == Durability::Synced {
                f.sync_all()?;
            }
            Ok(())
        })
        .ctx(|| format!("writing {}", tmp.display()));
    let result = result.and_then(|_| std::fs::rename(&tmp, dest).ctx(|| format!("renaming {}", tmp.display())));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    match durability {
        Durability::Synced => crate::backend::sync_dir(dest.parent().expect("a file in a directory")),
        Durability::Cache => Ok(()),
    }
}

/// Replace `dest` with `bytes`, taking its directory's lock for the duration.
pub fn replace(dest: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    let held = lock_dir(dest.parent().expect("a file in a directory"))?;
    replace_with(&held, dest, durability, |mut f| f.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_threads_replacing_one_file_all_succeed_and_leave_one_whole_version() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("sub").join("state.json");
        let versions: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 64 * 1024 + i as usize]).collect();
        std::thread::scope(|s| {
            for v in &versions {
                let dest = &dest;
                s.spawn(move || {
                    for _ in 0..50 {
                        replace(dest, v, Durability::Synced).unwrap();
                    }
                });
            }
        });
        let got = std::fs::read(&dest).unwrap();
        assert!(versions.contains(&got), "a torn file of {} bytes", got.len());
        let mut names: Vec<String> = std::fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["lock", "state.json"], "no temporary file left behind");
    }
}
