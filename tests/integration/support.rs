//! Test helpers: a scratch directory with its own repository, client dirs and environment, a
//! runner for the built binary, and a tree comparator (content and metadata).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const PASSPHRASE: &str = "correct horse battery staple";

pub struct Env {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
    #[track_caller]
    pub fn code(self, c: i32) -> Run {
        assert_eq!(self.code, c, "expected exit {c}\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_garret")
}

impl Env {
    pub fn new() -> Env {
        Env { dir: tempfile::Builder::new().prefix("garret-test").tempdir().expect("tempdir") }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }
    pub fn repo_str(&self) -> String {
        self.repo().display().to_string()
    }
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("GARRET_PASSPHRASE", PASSPHRASE)
            .env("GARRET_SECURITY_DIR", self.path("security"))
            .env("GARRET_KEYS_DIR", self.path("keys"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd().args(args).output().expect("spawn garret"))
    }
    /// `run` with `input` on standard input.
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        use std::io::Write;
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn garret");
        // A garret that refuses its arguments exits without reading: a broken pipe is its answer.
        if let Err(e) = child.stdin.take().unwrap().write_all(input) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "writing garret's stdin: {e}");
        }
        Run::from(child.wait_with_output().unwrap())
    }
    pub fn run_in(&self, dir: &Path, args: &[&str]) -> Run {
        std::fs::create_dir_all(dir).unwrap();
        Run::from(self.cmd().current_dir(dir).args(args).output().expect("spawn garret"))
    }
    /// `garret init` with the cheapest allowed KDF (tests run it many times).
    pub fn init(&self, mode: &str) {
        self.run(&["init", "-e", mode, "--kdf-memory", "64", &self.repo_str()]).ok();
    }
    pub fn archive(&self, name: &str) -> String {
        format!("{}::{name}", self.repo_str())
    }
    /// create with --json; returns the parsed summary.
    pub fn create_json(&self, name: &str, paths: &[&str], extra: &[&str]) -> serde_json::Value {
        let a = self.archive(name);
        let mut args = vec!["create", "--json", &a];
        args.extend_from_slice(paths);
        args.extend_from_slice(extra);
        let r = self.run(&args).ok();
        serde_json::from_str(&r.stdout).expect("create --json output")
    }
    /// Start garret with `args`, paused by the `GARRET_PAUSE_AT` hook at `site`; returns once it
    /// waits there. Removing the returned flag file lets it go on.
    pub fn spawn_paused(&self, site: &str, args: &[&str]) -> (std::process::Child, PathBuf) {
        self.spawn_paused_with_flag(site, "paused", args)
    }
    /// [`spawn_paused`](Self::spawn_paused) with its own flag file `flag` (several processes
    /// paused at once).
    pub fn spawn_paused_with_flag(&self, site: &str, flag: &str, args: &[&str]) -> (std::process::Child, PathBuf) {
        self.spawn_paused_in(self.dir.path(), site, flag, args)
    }
    /// [`spawn_paused_with_flag`](Self::spawn_paused_with_flag) run in directory `dir`.
    pub fn spawn_paused_in(&self, dir: &Path, site: &str, flag: &str, args: &[&str]) -> (std::process::Child, PathBuf) {
        let flag = self.path(flag);
        let child = self
            .cmd()
            .current_dir(dir)
            .env("GARRET_PAUSE_AT", site)
            .env("GARRET_PAUSE_FILE", &flag)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn garret");
        let t = std::time::Instant::now();
        while !flag.exists() {
            assert!(t.elapsed() < std::time::Duration::from_secs(30), "garret {args:?} never reached {site}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        (child, flag)
    }
    pub fn extract_to(&self, name: &str, dest: &str, extra: &[&str]) -> Run {
        let a = self.archive(name);
        let mut args = vec!["extract", &a];
        args.extend_from_slice(extra);
        self.run_in(&self.path(dest), &args)
    }
}

/// Total bytes of the regular files under `p`.
pub fn du(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Pack files in `data/` of the repository at `repo`.
pub fn pack_count(repo: &Path) -> usize {
    walkdir::WalkDir::new(repo.join("data"))
        .min_depth(2)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .count()
}

/// Names of the immutable files of a repository (packs, manifests, config, key).
pub fn immutable_files(repo: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = walkdir::WalkDir::new(repo)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(repo).unwrap().display().to_string(), e.metadata().unwrap().len()))
        .filter(|(n, _)| !n.starts_with("index.sqlite") && n != "lock")
        .collect();
    v.sort();
    v
}

pub fn xorshift(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// One entry's observable state.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub size: u64,
    pub content: Option<[u8; 32]>,
    pub target: Option<Vec<u8>>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Index of the hardlink group (first path of the group), for files with nlink > 1.
    pub link_group: Option<Vec<u8>>,
    pub rdev: u64,
}

fn xattrs_of(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let mut out = BTreeMap::new();
    let Ok(n) = rustix::fs::llistxattr(p, &mut names[..]) else {
        return out;
    };
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let mut val = vec![0u8; 65536];
        if let Ok(l) = rustix::fs::lgetxattr(p, OsStr::from_bytes(name), &mut val[..]) {
            out.insert(name.to_vec(), val[..l].to_vec());
        }
    }
    out
}

/// Every entry below `root`, keyed by relative path bytes.
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    let mut groups: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_file() {
            "file"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "chardev"
        } else {
            "other"
        };
        let content = if ft.is_file() {
            let mut h = blake3::Hasher::new();
            h.update_reader(std::fs::File::open(e.path()).unwrap()).unwrap();
            Some(*h.finalize().as_bytes())
        } else {
            None
        };
        let link_group = if !ft.is_dir() && md.nlink() > 1 {
            Some(groups.entry((md.dev(), md.ino())).or_insert_with(|| rel.clone()).clone())
        } else {
            None
        };
        out.insert(
            rel,
            Entry {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                size: if ft.is_dir() { 0 } else { md.len() },
                content,
                target: if ft.is_symlink() {
                    Some(std::fs::read_link(e.path()).unwrap().as_os_str().as_bytes().to_vec())
                } else {
                    None
                },
                xattrs: if ft.is_symlink() { BTreeMap::new() } else { xattrs_of(e.path()) },
                link_group,
                rdev: if ft.is_char_device() || ft.is_block_device() { md.rdev() } else { 0 },
            },
        );
    }
    out
}

#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path) {
    let sa = snapshot(a);
    let sb = snapshot(b);
    let ka: Vec<_> = sa.keys().collect();
    let kb: Vec<_> = sb.keys().collect();
    if ka != kb {
        let only_a: Vec<_> =
            sa.keys().filter(|k| !sb.contains_key(*k)).map(|k| String::from_utf8_lossy(k)).take(10).collect();
        let only_b: Vec<_> =
            sb.keys().filter(|k| !sa.contains_key(*k)).map(|k| String::from_utf8_lossy(k)).take(10).collect();
        panic!("trees differ in names: only in source {only_a:?}, only in copy {only_b:?}");
    }
    for (k, ea) in &sa {
        let eb = &sb[k];
        // A symlink's own mode is always 0777 on Linux and cannot be set.
        assert_eq!(ea, eb, "entry {:?} differs", String::from_utf8_lossy(k));
    }
}

/// Open the env's repository through the library (read-only).
pub fn open_repo(env: &Env) -> garret::repository::Repository {
    open_repo_at(env, &env.repo())
}

pub fn open_repo_at(env: &Env, repo: &Path) -> garret::repository::Repository {
    let pf = || Ok(PASSPHRASE.as_bytes().to_vec());
    garret::repository::Repository::open(
        repo,
        garret::repository::OpenOptions {
            passphrase: &pf,
            client: garret::repository::ClientDirs {
                security: env.path("security"),
                keys: env.path("keys"),
                key_file: None,
            },
            write_lock: None,
            adopt: false,
        },
    )
    .expect("open repository")
}

/// The items of archive `name`.
pub fn items(repo: &garret::repository::Repository, name: &str) -> Vec<garret::archive::item::Item> {
    let entry = garret::archive::lookup(repo, name).unwrap().clone();
    let a = garret::archive::Archive::load(repo, &entry).unwrap();
    a.items(repo).map(|i| i.unwrap()).collect()
}

/// SHA-256 of a file's content, by `sha256sum` (large files without reading them into memory).
pub fn sha(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(out.status.success(), "sha256sum {}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split(' ').next().unwrap().to_string()
}

/// Whether borg is installed (CI installs it); prints a SKIP line for the calling test if not.
pub fn borg_installed() -> bool {
    let there = Command::new("borg").arg("--version").output().is_ok();
    if !there {
        eprintln!("SKIP: borg is not installed (apt-get install borgbackup)");
    }
    there
}

impl Env {
    /// Run borg in this environment's directory (passphrase "borg pass", its own home); the
    /// command must succeed. Its standard output.
    pub fn borg(&self, args: &[&str]) -> String {
        self.borg_output(args).0
    }

    /// [`Env::borg`], returning standard output and standard error.
    pub fn borg_output(&self, args: &[&str]) -> (String, String) {
        let out = Command::new("borg")
            .args(args)
            .current_dir(self.dir.path())
            .env("BORG_PASSPHRASE", "borg pass")
            .env("BORG_BASE_DIR", self.path("borg-home"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "borg {args:?}: {err}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), err)
    }
}
