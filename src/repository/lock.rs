//! The exclusive writer lock: a `lock` file created with O_EXCL naming its holder, and reader
//! marks of long-running readers.
//!
//! A lock whose holder is a dead process on this host, or a process from before this host's last
//! boot (its pid may belong to another process now), is broken (with a warning); any other holder
//! makes the caller wait up to the given time and then fail naming the holder. A holder on
//! another host that died is only known dead to the user: [`break_locks`] (`garret break-lock`).
//!
//! Breaking is serialized by an advisory `flock` on [`BREAK_FILE`]: two waiters that both saw the
//! same dead holder would otherwise both remove "the" lock file, the second one removing the lock
//! the first had just taken, and two writers would run at once.

use crate::error::{Error, IoContext, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const LOCK_FILE: &str = "lock";
/// Empty file, never removed, held with `flock` by a process breaking a stale lock.
pub const BREAK_FILE: &str = "lock.break";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    hostname: String,
    pid: i32,
    since: String,
    /// The host's boot id when the holder started. A power cut can leave a lock behind (its
    /// removal was never synced), and after the reboot another process may run under its pid.
    /// Missing in the locks of older garret versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
}

impl Holder {
    fn me() -> Holder {
        Holder {
            hostname: hostname(),
            pid: std::process::id() as i32,
            since: chrono::Local::now().to_rfc3339(),
            boot_id: boot_id().map(str::to_owned),
        }
    }

    /// How this holder is known to be gone, if it is: it ran on this host, and before the last
    /// boot or as a process that no longer exists. A holder on another host is never known gone.
    fn gone(&self) -> Option<&'static str> {
        if self.hostname != hostname() {
            return None;
        }
        match (&self.boot_id, boot_id()) {
            (Some(then), Some(now)) if then != now => Some("it was taken before the last reboot"),
            _ if !pid_alive(self.pid) => Some("that process has ended"),
            _ => None,
        }
    }
}

/// This boot's id (Linux: `/proc/sys/kernel/random/boot_id`), `None` where there is none.
fn boot_id() -> Option<&'static str> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        Some(id.trim().to_owned()).filter(|i| !i.is_empty())
    })
    .as_deref()
}

/// The writer lock, held until dropped. Dropping removes the lock file only while it still names
/// this holder: after a `break-lock` another writer's lock may stand there.
pub struct Lock {
    root: PathBuf,
    me: Holder,
}

pub fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

fn pid_alive(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        Some(p) => !matches!(rustix::process::test_kill_process(p), Err(rustix::io::Errno::SRCH)),
        None => false,
    }
}

impl Lock {
    /// Take the lock of the repository at `root`; `warnings` receives a note when a stale lock
    /// is broken.
    pub fn acquire(root: &Path, wait: Duration, warnings: &mut Vec<String>) -> Result<Lock> {
        let path = root.join(LOCK_FILE);
        let me = Holder::me();
        let deadline = Instant::now() + wait;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(&serde_json::to_vec(&me).expect("serializing to memory"))
                        .and_then(|_| f.sync_all())
                        .ctx(|| format!("writing lock {}", path.display()))?;
                    return Ok(Lock { root: root.to_path_buf(), me });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let holder: Option<Holder> =
                        std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
                    if let Some((h, how)) = holder.as_ref().and_then(|h| Some((h, h.gone()?))) {
                        crate::faults::pause_point("stale-lock-seen");
                        if remove_if_held_by(root, h)? {
                            warnings.push(format!(
                                "removed stale lock of process {} on {} (since {}): {how}",
                                h.pid, h.hostname, h.since
                            ));
                        }
                        continue;
                    }
                    if Instant::now() >= deadline {
                        let holder = match holder {
                            Some(h) => format!("process {} on host {} since {}", h.pid, h.hostname, h.since),
                            None => "an unknown process (unreadable lock file)".into(),
                        };
                        return Err(Error::Locked { holder, path });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(Error::io(format!("creating lock {}", path.display()), e)),
            }
        }
    }
}

impl Lock {
    /// Fail unless the lock file still names this holder: after a `break-lock` another writer may
    /// be at work, and what this one would commit or delete could ruin what that one does.
    pub fn check_held(&self) -> Result<()> {
        let path = self.root.join(LOCK_FILE);
        let current: Option<Holder> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if current.as_ref() == Some(&self.me) {
            Ok(())
        } else {
            Err(Error::LockLost { path })
        }
    }
}

/// Remove the lock file if it still names `holder`, under the `flock` of [`BREAK_FILE`]; returns
/// whether it did. Whoever breaks a stale lock second finds it gone or retaken and leaves it
/// alone, and a holder whose lock was broken leaves its successor's in place. On a file system
/// without `flock` the check and the removal are as close together as they can be.
fn remove_if_held_by(root: &Path, holder: &Holder) -> Result<bool> {
    let guard_path = root.join(BREAK_FILE);
    let guard = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&guard_path)
        .ctx(|| format!("opening {}", guard_path.display()))?;
    // Released when `guard` is closed, or by the kernel when this process dies.
    let _ = rustix::fs::flock(&guard, rustix::fs::FlockOperation::LockExclusive);
    let path = root.join(LOCK_FILE);
    let current: Option<Holder> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if current.as_ref() != Some(holder) {
        return Ok(false);
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("removing stale lock {}", path.display()), e)),
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = remove_if_held_by(&self.root, &self.me);
    }
}

/// Directory of reader marks: one file per process that reads the repository for long
/// (`mount`), naming the archives it shows. `compact` keeps those archives' data.
pub const READERS_DIR: &str = "readers";

/// A reader mark's file: its holder, and the ids of the archives the reader shows. A mark of an
/// older garret has no archive list; compact then cannot know what the reader needs.
#[derive(Serialize, Deserialize)]
struct MarkFile {
    #[serde(flatten)]
    holder: Holder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    archives: Option<Vec<String>>,
}

/// A reader mark, removed on drop (a mark of a dead process on this host is stale and ignored).
pub struct ReaderMark {
    path: PathBuf,
    holder: Holder,
}

impl ReaderMark {
    /// Mark the repository at `root` as read by this process, which shows `archives`.
    pub fn create(root: &Path, archives: &[Id]) -> Result<ReaderMark> {
        let dir = root.join(READERS_DIR);
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let holder = Holder::me();
        let path = dir.join(format!("{}.{}", holder.hostname, holder.pid));
        let mark = ReaderMark { path, holder };
        mark.set_archives(archives)?;
        Ok(mark)
    }

    /// Name the archives this reader shows now (written to a temporary file and renamed, so a
    /// compact reads either list whole).
    pub fn set_archives(&self, archives: &[Id]) -> Result<()> {
        let file = MarkFile { holder: self.holder.clone(), archives: Some(archives.iter().map(Id::hex).collect()) };
        let tmp = self.tmp_path();
        std::fs::write(&tmp, serde_json::to_vec(&file).expect("serializing to memory"))
            .and_then(|_| std::fs::rename(&tmp, &self.path))
            .ctx(|| format!("writing reader mark {}", self.path.display()))
    }
}

impl ReaderMark {
    /// Where a replacement of the mark is written before it is renamed over the mark: the
    /// mark's name plus `.tmp`, so that each reader has its own.
    fn tmp_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        self.path.with_file_name(name)
    }
}

impl Drop for ReaderMark {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(self.tmp_path());
    }
}

/// A live reader of the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reader {
    /// Who it is, for messages.
    pub who: String,
    /// The archives it shows; `None` when its mark does not say (an older garret, or a mark
    /// that cannot be read).
    pub archives: Option<Vec<Id>>,
}

/// Live readers of the repository at `root`; stale marks of dead processes on this host are
/// removed. Half-written marks (`.tmp`) are not marks.
pub fn readers(root: &Path) -> Vec<Reader> {
    let Ok(entries) = std::fs::read_dir(root.join(READERS_DIR)) else { return vec![] };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let tmp = e.path().extension().is_some_and(|x| x == "tmp");
        let mark: Option<MarkFile> = std::fs::read(e.path()).ok().and_then(|b| serde_json::from_slice(&b).ok());
        match mark {
            // A replacement its dead writer never renamed is removed like a stale mark.
            Some(m) if m.holder.gone().is_some() => {
                let _ = std::fs::remove_file(e.path());
            }
            _ if tmp => {}
            Some(m) => out.push(Reader {
                who: format!("process {} on host {} since {}", m.holder.pid, m.holder.hostname, m.holder.since),
                archives: m.archives.and_then(|a| a.iter().map(|h| Id::from_hex(h)).collect()),
            }),
            None => out.push(Reader { who: format!("an unknown process ({})", e.path().display()), archives: None }),
        }
    }
    out
}

/// Live readers of the repository at `root`, described for a message.
pub fn live_readers(root: &Path) -> Vec<String> {
    readers(root).into_iter().map(|r| r.who).collect()
}

fn describe(file: &Path) -> String {
    match std::fs::read(file).ok().and_then(|b| serde_json::from_slice::<Holder>(&b).ok()) {
        Some(h) => format!("process {} on host {} since {}", h.pid, h.hostname, h.since),
        None => format!("an unknown process ({})", file.display()),
    }
}

/// Remove the writer lock and every reader mark of the repository at `root`, whoever holds them
/// (`garret break-lock`: for holders that died on another host). Returns what was removed.
pub fn break_locks(root: &Path) -> Result<Vec<String>> {
    if !root.join(super::CONFIG_FILE).is_file() {
        return Err(Error::NotARepository(root.to_path_buf()));
    }
    let mut removed = Vec::new();
    let lock = root.join(LOCK_FILE);
    if lock.exists() {
        let who = describe(&lock);
        match std::fs::remove_file(&lock) {
            Ok(()) => removed.push(format!("writer lock of {who}")),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", lock.display()), e)),
        }
    }
    let dir = root.join(READERS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for e in entries {
        let e = e.ctx(|| format!("listing {}", dir.display()))?;
        let who = describe(&e.path());
        match std::fs::remove_file(e.path()) {
            Ok(()) => removed.push(format!("reader mark of {who}")),
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(Error::io(format!("removing {}", e.path().display()), err)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder_of(root: &Path) -> Option<Holder> {
        std::fs::read(root.join(LOCK_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    #[test]
    fn dropping_a_lock_leaves_a_successors_lock_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut warnings = vec![];
        let lock = Lock::acquire(root, Duration::ZERO, &mut warnings).unwrap();
        assert_eq!(holder_of(root).as_ref(), Some(&lock.me));
        // `break-lock` while this lock is held, then another writer takes the lock.
        std::fs::remove_file(root.join(LOCK_FILE)).unwrap();
        let other = Holder {
            hostname: "elsewhere".into(),
            pid: 4242,
            since: "2026-11-26T00:00:00+00:00".into(),
            boot_id: None,
        };
        std::fs::write(root.join(LOCK_FILE), serde_json::to_vec(&other).unwrap()).unwrap();
        drop(lock);
        assert_eq!(holder_of(root), Some(other), "the successor's lock was removed");
        // Its own lock is removed on drop.
        std::fs::remove_file(root.join(LOCK_FILE)).unwrap();
        drop(Lock::acquire(root, Duration::ZERO, &mut warnings).unwrap());
        assert!(!root.join(LOCK_FILE).exists());
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_lock_from_before_a_reboot_is_stale_even_when_its_pid_is_taken() {
        let Some(now) = boot_id() else { return };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // pid 1 always runs; under this boot's id it is a live holder.
        let live = Holder { pid: 1, boot_id: Some(now.to_owned()), ..Holder::me() };
        std::fs::write(root.join(LOCK_FILE), serde_json::to_vec(&live).unwrap()).unwrap();
        let mut warnings = vec![];
        assert!(matches!(Lock::acquire(root, Duration::ZERO, &mut warnings), Err(Error::Locked { .. })));
        // A lock of an older garret (no boot id) with a live pid is not broken either.
        let old = Holder { boot_id: None, ..live };
        std::fs::write(root.join(LOCK_FILE), serde_json::to_vec(&old).unwrap()).unwrap();
        assert!(matches!(Lock::acquire(root, Duration::ZERO, &mut warnings), Err(Error::Locked { .. })));
        // The same holder written before a reboot is gone, whatever runs as pid 1 now.
        let before = Holder { boot_id: Some("00000000-0000-4000-8000-000000000000".into()), ..old };
        std::fs::write(root.join(LOCK_FILE), serde_json::to_vec(&before).unwrap()).unwrap();
        let lock = Lock::acquire(root, Duration::ZERO, &mut warnings).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("process 1 ") && warnings[0].contains("before the last reboot"), "{warnings:?}");
        assert_eq!(holder_of(root).as_ref(), Some(&lock.me));
        assert_eq!(lock.me.boot_id.as_deref(), Some(now), "a new lock records the boot id");
        // Reader marks from before a reboot are stale too (compact is not held up by them).
        std::fs::create_dir_all(root.join(READERS_DIR)).unwrap();
        std::fs::write(root.join(READERS_DIR).join("x.1"), serde_json::to_vec(&before).unwrap()).unwrap();
        let live_mark = Holder { boot_id: Some(now.to_owned()), ..Holder { pid: 1, ..Holder::me() } };
        std::fs::write(root.join(READERS_DIR).join("x.2"), serde_json::to_vec(&live_mark).unwrap()).unwrap();
        assert_eq!(live_readers(root).len(), 1);
        assert!(!root.join(READERS_DIR).join("x.1").exists());
    }

    #[test]
    fn a_reader_mark_names_the_archives_shown_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        let mark = ReaderMark::create(root, &[a, b]).unwrap();
        let rs = readers(root);
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].archives, Some(vec![a, b]));
        assert!(rs[0].who.contains(&format!("process {} ", std::process::id())), "{}", rs[0].who);
        mark.set_archives(&[b]).unwrap();
        // A half-written replacement is not a mark of its own.
        std::fs::write(mark.tmp_path(), b"{").unwrap();
        let dead = MarkFile { holder: Holder { pid: 999_999_999, ..Holder::me() }, archives: None };
        let dead_tmp = root.join(READERS_DIR).join("dead.999999999.tmp");
        std::fs::write(&dead_tmp, serde_json::to_vec(&dead).unwrap()).unwrap();
        assert_eq!(readers(root).iter().map(|r| r.archives.clone()).collect::<Vec<_>>(), [Some(vec![b])]);
        assert!(!dead_tmp.exists(), "a dead writer's unrenamed replacement is removed");
        assert!(mark.tmp_path().exists(), "a live writer's is left alone");
        // An older garret's mark (no archive list) and a mark that does not parse say nothing.
        let old = Holder { pid: 1, ..Holder::me() };
        std::fs::write(root.join(READERS_DIR).join("old.1"), serde_json::to_vec(&old).unwrap()).unwrap();
        std::fs::write(root.join(READERS_DIR).join("junk.2"), b"not json").unwrap();
        assert_eq!(readers(root).iter().filter(|r| r.archives.is_none()).count(), 2);
        let own_tmp = mark.tmp_path();
        assert_eq!(own_tmp.file_name().unwrap().to_str(), Some(&*format!("{}.{}.tmp", hostname(), std::process::id())));
        drop(mark);
        assert_eq!(readers(root).len(), 2, "the dropped mark is gone");
        assert!(!own_tmp.exists());
    }
}
