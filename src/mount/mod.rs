//! `mount`: a read-only FUSE view of a repository's archives (fuser, pure-Rust mount: needs only
//! `/dev/fuse`, plus `fusermount3` from Debian's fuse3 when not root).
//!
//! This module owns mounting and unmounting; [`tree`] owns the inode table, [`cache`] the chunk
//! cache and [`fs`] the file system operations.

pub mod cache;
pub mod fs;
pub mod tree;

use crate::error::{Error, Result};
pub use fs::{GarretFs, MountOptions};
use std::path::Path;
use std::process::Command;

/// Where the mount may be used from, beyond its owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    #[default]
    Owner,
    /// `-o allow_other`
    All,
    /// `-o allow_root`
    Root,
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn have(program: &str) -> bool {
    Command::new(program).arg("-V").output().is_ok()
}

/// Fail with an actionable message when FUSE cannot work on this machine.
pub fn check_available() -> Result<()> {
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::Usage(
            "FUSE is not available: /dev/fuse is missing (install fuse3: `apt-get install fuse3`, and load the \
             fuse kernel module)"
                .into(),
        ));
    }
    if !is_root() && !have("fusermount3") && !have("fusermount") {
        return Err(Error::Usage(
            "FUSE is not available: fusermount3 is missing (install fuse3: `apt-get install fuse3`)".into(),
        ));
    }
    Ok(())
}

/// Mount `fs` at `mountpoint`; the returned session serves requests once run.
pub fn session(fs: GarretFs, mountpoint: &Path, access: Access) -> Result<fuser::Session<GarretFs>> {
    let meta = std::fs::metadata(mountpoint)
        .map_err(|e| Error::Usage(format!("mount point {}: {e} (create it with mkdir)", mountpoint.display())))?;
    if !meta.is_dir() {
        return Err(Error::Usage(format!("mount point {} is not a directory", mountpoint.display())));
    }
    if is_mounted(mountpoint) {
        return Err(Error::Usage(format!(
            "{} is already a mount point; unmount it first (`garret umount {}`)",
            mountpoint.display(),
            mountpoint.display()
        )));
    }
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("garret".into()),
        fuser::MountOption::Subtype("garret".into()),
        // The kernel checks the archived permission bits, so allow_other does not expose
        // files to users the originals were closed to.
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    cfg.acl = match access {
        Access::Owner => fuser::SessionACL::Owner,
        Access::All => fuser::SessionACL::All,
        Access::Root => fuser::SessionACL::RootAndOwner,
    };
    cfg.n_threads = Some(4);
    fuser::Session::new(fs, mountpoint, &cfg).map_err(|e| {
        Error::Usage(format!(
            "mounting at {}: {e} (is it already a mount point? try `garret umount`)",
            mountpoint.display()
        ))
    })
}

/// Whether `path` is a mount point, per /proc/self/mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    // A mount whose server died cannot be stat'ed (ENOTCONN): fall back to the plain absolute path.
    let Some(path) = std::fs::canonicalize(path).ok().or_else(|| std::path::absolute(path).ok()) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| Path::new(&unescape(m)) == path)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmount a garret (or any FUSE) mount point.
pub fn unmount(mountpoint: &Path) -> Result<()> {
    if !is_mounted(mountpoint) {
        return Err(Error::Usage(format!("{} is not a mount point", mountpoint.display())));
    }
    let mut tried = Vec::new();
    for prog in ["fusermount3", "fusermount"] {
        match Command::new(prog).arg("-u").arg(mountpoint).output() {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => tried.push(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            Err(_) => {}
        }
    }
    if is_root() {
        match rustix::mount::unmount(mountpoint, rustix::mount::UnmountFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(e) => tried.push(format!("umount: {e}")),
        }
    }
    Err(Error::Usage(format!(
        "could not unmount {}: {}",
        mountpoint.display(),
        if tried.is_empty() { "fusermount3 is missing (install fuse3)".to_string() } else { tried.join("; ") }
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(super::unescape(r"/mnt/a\040b\134c"), "/mnt/a b\\c");
        assert_eq!(super::unescape(r"/x\04"), r"/x\04");
    }
}
