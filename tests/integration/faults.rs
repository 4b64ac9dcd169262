//! Real faults and file systems from outside the process: a disk that fills up (a loop-mounted
//! 16 MB ext4), a failing fsync injected by strace, and repositories on loop-mounted XFS and
//! btrfs. Tests that need root, loop devices, mkfs tools or strace print a SKIP line when they
//! cannot run; `.ci/run` installs what they need.

use crate::support::*;
use std::fs;
use std::process::Command;

/// Mount a fresh 16 MB ext4 at `mnt`; `None` (with a SKIP line) where that is impossible.
fn small_disk(env: &Env, mnt: &std::path::Path) -> Option<LoopMount> {
    loop_disk(env, mnt, "ext4", 16 << 20, "loop")
}

/// Mount a fresh `bytes`-sized file system of type `fs_type` (mkfs.`fs_type`) at `mnt` with mount
/// options `options` (at least "loop"); its image is `<fs_type>.img` in `env`. `None` (with a SKIP
/// line) where that is impossible.
fn loop_disk(env: &Env, mnt: &std::path::Path, fs_type: &str, bytes: u64, options: &str) -> Option<LoopMount> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP {fs_type} loop mount: needs root");
        return None;
    }
    let img = env.path(&format!("{fs_type}.img"));
    fs::File::create(&img).unwrap().set_len(bytes).unwrap();
    let force = if fs_type == "ext4" { ["-q", "-F"] } else { ["-q", "-f"] };
    let ok = Command::new(format!("mkfs.{fs_type}")).args(force).arg(&img).status().is_ok_and(|s| s.success());
    fs::create_dir_all(mnt).unwrap();
    if !ok || !Command::new("mount").args(["-o", options]).arg(&img).arg(mnt).status().is_ok_and(|s| s.success()) {
        eprintln!("SKIP {fs_type} loop mount: cannot make or loop-mount an image here (mkfs.{fs_type}, loop devices)");
        return None;
    }
    Some(LoopMount(mnt.to_path_buf()))
}

/// What a power cut would leave of the disk image `ext4.img` of [`loop_disk`] (mounted with a long
/// journal commit interval): a copy taken now, before anything else is written back, mounted at
/// `name` in `env`.
fn power_cut(env: &Env, name: &str) -> (LoopMount, std::path::PathBuf) {
    let img = env.path(&format!("{name}.img"));
    let copied = Command::new("cp").arg("--sparse=always").arg(env.path("ext4.img")).arg(&img).status().unwrap();
    assert!(copied.success());
    let at = env.path(name);
    fs::create_dir_all(&at).unwrap();
    assert!(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&at).status().unwrap().success());
    (LoopMount(at.clone()), at)
}

/// A power cut right after commands returned: everything they reported done must be on the disk,
/// the key file and the client state included (a key file left empty makes every backup
/// unreadable). The disk is a loop-mounted ext4 whose journal commits only every 300 s, so a copy
/// of its image taken right after the commands holds only what they synced: what an abrupt power
/// loss leaves. Two cuts: after init and a first create, and after a passphrase change and a
/// second create.
#[test]
fn a_power_cut_after_the_commands_loses_nothing_they_reported_done() {
    let env = Env::new();
    let Some(d) = CutDisk::new(&env, 64 << 20) else { return };
    let disk = d.disk.clone();
    let on = |root: &std::path::Path, pass: &str| {
        let mut c = d.cmd(root);
        c.env("GARRET_PASSPHRASE", pass);
        c
    };
    let run = |c: &mut Command, args: &[&str]| Run::from(c.args(args).output().expect("spawn garret")).ok();
    let repo_on = CutDisk::repo;
    let state_of = |root: &std::path::Path, id: &std::ffi::OsStr| {
        String::from_utf8(fs::read(root.join("security").join(id).join("state.json")).unwrap()).unwrap()
    };
    // Every archive named restores byte for byte, and the repository checks clean.
    let verify = |root: &std::path::Path, pass: &str, archives: &[&str]| {
        let repo = repo_on(root);
        let list = run(&mut on(root, pass), &["list", "--short", &repo]);
        assert_eq!(list.stdout.lines().collect::<Vec<_>>(), archives);
        run(&mut on(root, pass), &["check", "--verify-data", &repo]);
        let out = env.path(&format!("out-{}", archives.len()));
        fs::create_dir_all(&out).unwrap();
        run(on(root, pass).current_dir(&out), &["extract", &format!("{repo}::{}", archives[archives.len() - 1])]);
        assert_same_tree(&env.path("src"), &out.join("src"));
    };

    fs::create_dir_all(env.path("src")).unwrap();
    fs::write(env.path("src/one"), xorshift(3 << 20, 71)).unwrap();
    let repo = repo_on(&disk);
    run(&mut on(&disk, "old"), &["init", "-e", "keyfile", "--kdf-memory", "64", &repo]);
    run(&mut on(&disk, "old"), &["create", &format!("{repo}::first"), "src"]);
    // The recovery kit, written to the same disk.
    run(&mut on(&disk, "old"), &["key", "export", &repo, &disk.join("kit.json").display().to_string()]);
    let id = fs::read_dir(disk.join("keys")).unwrap().map(|e| e.unwrap().file_name()).find(|n| n != "lock").unwrap();
    let (first_cut, at) = power_cut(&env, "cut1");
    assert!(fs::metadata(at.join("keys").join(&id)).unwrap().len() > 0, "the key file did not survive the power cut");
    let kit = fs::read(at.join("kit.json")).unwrap_or_default();
    assert_eq!(kit, fs::read(disk.join("kit.json")).unwrap(), "the exported key did not survive the power cut");
    assert_eq!(state_of(&at, &id), state_of(&disk, &id), "the client state did not survive the power cut");
    verify(&at, "old", &["first"]);
    drop(first_cut);

    run(on(&disk, "old").env("GARRET_NEW_PASSPHRASE", "new"), &["key", "change-passphrase", &repo]);
    fs::write(env.path("src/two"), xorshift(1 << 20, 72)).unwrap();
    run(&mut on(&disk, "new"), &["create", &format!("{repo}::second"), "src"]);
    let (_second_cut, at) = power_cut(&env, "cut2");
    assert_eq!(state_of(&at, &id), state_of(&disk, &id), "the client state did not survive the power cut");
    verify(&at, "new", &["first", "second"]);
    // The next night's create goes on, whatever lock file the cut left behind.
    run(&mut on(&at, "new"), &["create", &format!("{}::third", repo_on(&at)), "src"]);
}

/// A power cut at each commit step of create and compact: the process aborts at the step, then the
/// disk image is copied as in the test above, so whatever the run had not synced is lost. The copy
/// opens, every archive committed before the cut restores byte for byte, `check --verify-data`
/// finds no damage, and the next create works (it breaks the dead writer's lock).
#[test]
fn a_power_cut_at_each_commit_step_keeps_every_committed_archive() {
    for (command, site) in [
        ("create", "pack-written:1"),
        ("create", "pack-indexed:1"),
        ("create", "before-manifest"),
        ("create", "manifest-written"),
        // The default grace keeps rewritten packs (condemned); `--grace 0` deletes them now.
        ("compact", "compact-condemned"),
        ("compact", "compact-rewritten"),
        ("compact", "compact-unindexed"),
        ("compact-now", "compact-rewritten"),
        ("compact-now", "compact-unindexed"),
        ("compact-now", "compact-deleted"),
    ] {
        let env = Env::new();
        let disk = env.path("disk");
        let Some(mounted) = loop_disk(&env, &disk, "ext4", 96 << 20, "loop,commit=300") else { return };
        let repo = disk.join("repo").display().to_string();
        for (dir, seed, size) in [("keep", 81, 2 << 20), ("gone", 82, 3 << 20), ("new", 83, 4 << 20)] {
            fs::create_dir_all(env.path(dir)).unwrap();
            fs::write(env.path(dir).join("data"), xorshift(size, seed)).unwrap();
            fs::write(env.path(dir).join("text"), format!("{dir}\n").repeat(1000)).unwrap();
        }
        env.run(&["init", "-e", "repokey", "--kdf-memory", "64", &repo]).ok();
        // "both" shares its pack with "keep": deleting it leaves that pack part garbage.
        env.run(&["create", &format!("{repo}::both"), "keep", "gone"]).ok();
        env.run(&["create", &format!("{repo}::keep"), "keep"]).ok();
        let mut expected = vec!["both", "keep"];
        let crashing = match command {
            "create" => vec!["create".to_string(), format!("{repo}::new"), "new".into()],
            _ => {
                env.run(&["delete", &format!("{repo}::both")]).ok();
                expected = vec!["keep"];
                let mut args = vec!["compact".to_string(), "--threshold".into(), "0".into(), repo.clone()];
                if command == "compact-now" {
                    args.extend(["--grace".into(), "0".into()]);
                }
                args
            }
        };
        let r = env.cmd().env("GARRET_CRASH_AT", site).args(&crashing).output().unwrap();
        assert!(r.status.code().is_none(), "{site}: not aborted: {}", String::from_utf8_lossy(&r.stderr));
        if site == "manifest-written" {
            expected.push("new");
        }
        let (_unmount, at) = power_cut(&env, "after");
        drop(mounted);
        let repo = at.join("repo").display().to_string();
        let list = env.run(&["list", "--short", &repo]).ok();
        assert_eq!(list.stdout.lines().collect::<Vec<_>>(), expected, "{site}");
        env.run(&["check", "--verify-data", &repo]).ok();
        for name in &expected {
            let out = env.path(&format!("out-{name}"));
            env.run_in(&out, &["extract", &format!("{repo}::{name}")]).ok();
            let dirs: &[&str] = match *name {
                "both" => &["keep", "gone"],
                n => &[if n == "new" { "new" } else { "keep" }],
            };
            for d in dirs {
                assert_same_tree(&env.path(d), &out.join(d));
            }
        }
        env.run(&["create", &format!("{repo}::after"), "new"]).ok();
        env.run(&["check", &repo]).ok();
    }
}

/// Stop every thread of process `pid` (SIGSTOP) and wait until each one is stopped: a thread
/// inside a system call (an fsync, a direct write) stops only when the call has completed, so
/// afterwards nothing of it is in flight.
fn stop_all(pid: u32) {
    let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::STOP).unwrap();
    // A process that ended just before the signal is a zombie, and stays one: nothing of it is
    // in flight either.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        let running: Vec<String> = tasks
            .filter_map(|t| fs::read_to_string(t.ok()?.path().join("stat")).ok())
            .filter(|stat| {
                let state = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
                !(state.starts_with('T') || state.starts_with('t') || state.starts_with('Z') || state.starts_with('X'))
            })
            .collect();
        if running.is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "process {pid} did not stop: {running:?}");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// A loop-mounted ext4 whose journal commits only every 300 s, holding a repository (`repo`) and
/// the client's state, cache and keys, so that a power cut takes both.
struct CutDisk<'e> {
    env: &'e Env,
    disk: std::path::PathBuf,
    _mounted: LoopMount,
}

impl<'e> CutDisk<'e> {
    fn new(env: &'e Env, bytes: u64) -> Option<Self> {
        let disk = env.path("disk");
        let mounted = loop_disk(env, &disk, "ext4", bytes, "loop,commit=300")?;
        Some(CutDisk { env, disk, _mounted: mounted })
    }

    /// The repository on the disk mounted at `root` (the disk itself or a cut's copy).
    fn repo(root: &std::path::Path) -> String {
        root.join("repo").display().to_string()
    }

    fn cmd(&self, root: &std::path::Path) -> Command {
        let mut c = self.env.cmd();
        c.env("GARRET_KEYS_DIR", root.join("keys"))
            .env("GARRET_SECURITY_DIR", root.join("security"))
            .env("GARRET_CACHE_DIR", root.join("cache"));
        c
    }

    /// garret with `args` in `dir`, as the client whose files are on `root`; it must succeed.
    fn run(&self, root: &std::path::Path, dir: &std::path::Path, args: &[&str]) -> Run {
        fs::create_dir_all(dir).unwrap();
        Run::from(self.cmd(root).current_dir(dir).args(args).output().expect("spawn garret")).ok()
    }

    fn packs(&self) -> std::collections::BTreeSet<std::ffi::OsString> {
        let data = fs::read_dir(self.disk.join("repo/data")).unwrap().flatten();
        data.flat_map(|d| fs::read_dir(d.path()).unwrap().flatten().map(|e| e.file_name())).collect()
    }

    /// Run garret with `args` on the disk and cut the power while it runs: once early, then each
    /// time its pack files change (a pack written, or deleted), up to seven times. A cut stops every
    /// thread of the process, copies the disk image (see [`power_cut`]) and lets it go on. The
    /// command must succeed; returns the cuts' mounted copies.
    fn cut_while(&self, args: &[&str]) -> Vec<(LoopMount, std::path::PathBuf)> {
        let mut child = self
            .cmd(&self.disk)
            .current_dir(self.env.path(""))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut cuts = Vec::new();
        let mut seen = self.packs();
        for k in 0..7 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            while k > 0 && self.packs() == seen && child.try_wait().unwrap().is_none() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            stop_all(child.id());
            seen = self.packs();
            cuts.push(power_cut(self.env, &format!("cut{k}")));
            let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
            rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?} went on: {}", String::from_utf8_lossy(&out.stderr));
        cuts
    }
}

/// Power cuts at moments of a running create, not only at its commit steps (see
/// [`CutDisk::cut_while`]). Each copy must open with the archive committed before intact and
/// checking clean, the interrupted archive whole or absent, and must take a new archive.
#[test]
fn power_cuts_while_a_create_runs_keep_every_committed_archive() {
    let env = Env::new();
    let Some(d) = CutDisk::new(&env, 256 << 20) else { return };
    fs::create_dir_all(env.path("first")).unwrap();
    fs::write(env.path("first/data"), xorshift(1 << 20, 91)).unwrap();
    fs::create_dir_all(env.path("big")).unwrap();
    for i in 0..40u64 {
        fs::write(env.path(&format!("big/{i:02}")), xorshift(2 << 20, 100 + i)).unwrap();
        fs::write(env.path(&format!("big/{i:02}.txt")), format!("line {i}\n").repeat(20_000)).unwrap();
    }
    let (here, repo) = (env.path(""), CutDisk::repo(&d.disk));
    d.run(&d.disk, &here, &["init", "-e", "repokey", "--kdf-memory", "64", &repo]);
    d.run(&d.disk, &here, &["create", &format!("{repo}::first"), "first"]);
    let cuts = d.cut_while(&["create", &format!("{repo}::big"), "big"]);
    assert!(cuts.len() >= 5, "only {} cuts: the create was too short to cut", cuts.len());
    let mut whole = 0;
    for (k, (_unmount, at)) in cuts.iter().enumerate() {
        let repo = CutDisk::repo(at);
        let list = d.run(at, &here, &["list", "--short", &repo]).stdout;
        let names: Vec<&str> = list.lines().collect();
        assert!(names == ["first"] || names == ["first", "big"], "cut {k}: {names:?}");
        whole += usize::from(names.len() == 2);
        d.run(at, &here, &["check", "--verify-data", &repo]);
        for name in &names {
            let dest = env.path(&format!("out-{k}-{name}"));
            d.run(at, &dest, &["extract", &format!("{repo}::{name}")]);
            assert_same_tree(&env.path(name), &dest.join(name));
        }
        d.run(at, &here, &["create", &format!("{repo}::after"), "first"]);
        d.run(at, &here, &["check", &repo]);
    }
    eprintln!("{} cuts, {whole} after the commit", cuts.len());
}

/// Power cuts at moments of a running compact, the one command that deletes packs. Every pack
/// holds blobs of a deleted archive and of the kept one, so compact rewrites them all; each
/// copy must still restore the kept archive exactly, check clean and take a new archive.
#[test]
fn power_cuts_while_compact_runs_keep_every_kept_archive() {
    let env = Env::new();
    let Some(d) = CutDisk::new(&env, 256 << 20) else { return };
    fs::create_dir_all(env.path("mixed")).unwrap();
    for i in 0..24u64 {
        fs::write(env.path(&format!("mixed/{i:02}-keep")), xorshift(2 << 20, 200 + i)).unwrap();
        fs::write(env.path(&format!("mixed/{i:02}-gone")), xorshift(2 << 20, 300 + i)).unwrap();
    }
    let (here, repo) = (env.path(""), CutDisk::repo(&d.disk));
    d.run(&d.disk, &here, &["init", "-e", "repokey", "--kdf-memory", "64", &repo]);
    d.run(&d.disk, &here, &["create", &format!("{repo}::all"), "mixed"]);
    d.run(&d.disk, &here, &["create", &format!("{repo}::keep"), "mixed", "--exclude", "*-gone"]);
    d.run(&d.disk, &here, &["delete", &format!("{repo}::all")]);
    let before = d.packs();
    let cuts = d.cut_while(&["compact", "--threshold", "0", "--grace", "0", &repo]);
    let after = d.packs();
    // What the kept archive holds, for comparison (moved, so times and modes stay the same).
    fs::create_dir_all(env.path("expected/mixed")).unwrap();
    for i in 0..24u64 {
        let name = format!("mixed/{i:02}-keep");
        fs::rename(env.path(&name), env.path(&format!("expected/{name}"))).unwrap();
    }
    // Nearly every pack goes (the kept archive's metadata pack stays, and may share its pack).
    let stayed = before.intersection(&after).count();
    assert!(before.len() >= 8 && stayed <= 2, "{} packs, {stayed} not rewritten", before.len());
    assert!(cuts.len() >= 3, "only {} cuts: compact was too short to cut", cuts.len());
    for (k, (_unmount, at)) in cuts.iter().enumerate() {
        let repo = CutDisk::repo(at);
        let list = d.run(at, &here, &["list", "--short", &repo]).stdout;
        assert_eq!(list.lines().collect::<Vec<_>>(), ["keep"], "cut {k}");
        d.run(at, &here, &["check", "--verify-data", &repo]);
        let dest = env.path(&format!("out-{k}"));
        d.run(at, &dest, &["extract", &format!("{repo}::keep")]);
        assert_same_tree(&env.path("expected/mixed"), &dest.join("mixed"));
        d.run(at, &here, &["compact", &repo]);
        d.run(at, &here, &["create", &format!("{repo}::after"), "expected"]);
        d.run(at, &here, &["check", &repo]);
    }
    eprintln!("{} cuts of compact", cuts.len());
}

/// garret with `args` and [`Env::cmd`]'s environment, run under `strace -f -qq` with `strace_args`.
fn under_strace(env: &Env, strace_args: &[&str], args: &[&str]) -> std::process::Output {
    let garret = env.cmd();
    let mut c = Command::new("strace");
    c.env_clear().args(["-f", "-qq"]).args(strace_args).arg(bin()).args(args);
    for (k, v) in garret.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    if let Some(dir) = garret.get_current_dir() {
        c.current_dir(dir);
    }
    c.stdin(std::process::Stdio::null()).output().expect("spawn strace")
}

struct LoopMount(std::path::PathBuf);
impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_mid_create_fails_cleanly_and_recovers() {
    let env = Env::new();
    let mnt = env.path("mnt");
    let Some(_m) = small_disk(&env, &mnt) else { return };
    let repo = mnt.join("repo").display().to_string();
    env.run(&["init", "-e", "repokey", "--kdf-memory", "64", &repo]).ok();
    fs::create_dir_all(env.path("small")).unwrap();
    fs::write(env.path("small/f"), xorshift(2 << 20, 1)).unwrap();
    env.run(&["create", &format!("{repo}::small"), "small"]).ok();
    // 40 MB of incompressible data cannot fit
    fs::create_dir_all(env.path("big")).unwrap();
    for i in 0..5 {
        fs::write(env.path(&format!("big/f{i}")), xorshift(8 << 20, 10 + i)).unwrap();
    }
    let r = env.run(&["create", &format!("{repo}::big"), "big"]).code(2);
    // ENOSPC hits a pack write or the index cache, depending on timing
    assert!(r.stderr.contains("No space left on device") || r.stderr.contains("disk is full"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    // still a valid repository with its earlier archive
    let list = env.run(&["list", "--short", &repo]).ok().stdout;
    assert_eq!(list.trim(), "small");
    env.run(&["check", &repo]).code(0);
    env.run_in(&env.path("out"), &["extract", &format!("{repo}::small")]).ok();
    assert_eq!(fs::read(env.path("out/small/f")).unwrap(), xorshift(2 << 20, 1));
    // packs written before the disk filled are unreferenced: compact frees them, and a create
    // that fits succeeds
    env.run(&["compact", &repo]).ok();
    fs::remove_file(env.path("big/f0")).unwrap();
    for i in 1..4 {
        fs::remove_file(env.path(&format!("big/f{i}"))).unwrap();
    }
    env.run(&["create", &format!("{repo}::big"), "big"]).ok();
    env.run(&["check", "--verify-data", &repo]).ok();
}

#[test]
fn fsync_failure_injected_by_strace_loses_only_that_pack() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("SKIP fsync_failure_injected_by_strace: strace is not installed (apt-get install strace)");
        return;
    }
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), xorshift(3 << 20, 3)).unwrap();
    env.create_json("first", &["src"], &[]);
    let before = immutable_files(&env.repo());
    fs::write(env.path("src/g"), xorshift(3 << 20, 4)).unwrap();
    // fsync #1 is the lock file's, #2 the first pack's: that one fails with EIO
    let o = under_strace(
        &env,
        &["-o", "/dev/null", "-e", "trace=fsync", "-e", "inject=fsync:error=EIO:when=2"],
        &["create", &env.archive("second"), "src"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("fsync") && err.contains("Input/output error"), "{err}");
    let manifests =
        |v: Vec<(String, u64)>| v.into_iter().filter(|(n, _)| n.starts_with("manifests")).collect::<Vec<_>>();
    assert_eq!(manifests(immutable_files(&env.repo())), manifests(before), "nothing was committed");
    assert!(fs::read_dir(env.repo().join("tmp")).unwrap().next().is_none(), "no temporary file is left");
    // whatever pack is left is whole (the failed one was removed, not trusted)
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    env.create_json("second", &["src"], &[]);
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    env.extract_to("second", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
}

/// An offsite copy on read-only media lists, checks and restores (the index cache lives in memory).
#[test]
fn repository_on_read_only_media_restores() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP repository_on_read_only_media_restores: needs root for a read-only bind mount");
        return;
    }
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), xorshift(1 << 20, 8)).unwrap();
    env.create_json("a", &["src"], &[]);
    // an rsync-style copy without the index cache, mounted read-only
    let copy = env.path("copy");
    let o = Command::new("cp").arg("-a").arg(env.repo()).arg(&copy).status().unwrap();
    assert!(o.success());
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = fs::remove_file(copy.join(f));
    }
    let ro = env.path("ro");
    fs::create_dir(&ro).unwrap();
    let bound = Command::new("mount").arg("--bind").arg(&copy).arg(&ro).status().is_ok_and(|s| s.success())
        && Command::new("mount").args(["-o", "remount,ro,bind"]).arg(&ro).status().is_ok_and(|s| s.success());
    if !bound {
        let _ = Command::new("umount").arg(&ro).status();
        eprintln!("SKIP repository_on_read_only_media_restores: cannot make a read-only bind mount here");
        return;
    }
    let _m = LoopMount(ro.clone());
    let ro_s = ro.display().to_string();
    let r = env.run(&["list", "--short", &ro_s]).ok();
    assert_eq!(r.stdout.trim(), "a");
    env.run(&["check", "--verify-data", &ro_s]).ok();
    env.run_in(&env.path("out"), &["extract", &format!("{ro_s}::a")]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
    // writing is refused with a clear error, and the media stays untouched
    let r = env.run(&["create", &format!("{ro_s}::b"), "src"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
}

#[test]
fn disk_full_during_extract_stops_with_one_error_line() {
    let env = Env::new();
    let mnt = env.path("mnt");
    let Some(_m) = small_disk(&env, &mnt) else { return };
    env.init("none");
    let s = env.path("src");
    fs::create_dir_all(&s).unwrap();
    // 24 MB of incompressible data and many small files cannot fit a 16 MB disk
    for i in 0..3 {
        fs::write(s.join(format!("big{i}")), xorshift(8 << 20, 20 + i)).unwrap();
    }
    for i in 0..300 {
        fs::write(s.join(format!("small{i:03}")), xorshift(20_000, 100 + i)).unwrap();
    }
    env.create_json("a", &["src"], &[]);
    let r = env.run_in(&mnt.join("out"), &["extract", &env.archive("a")]).code(2);
    assert_eq!(r.stderr.lines().count(), 1, "stops at the first full-disk error: {}", r.stderr);
    assert!(r.stderr.contains("No space left on device") && r.stderr.contains("free space"), "{}", r.stderr);
    // The repository is untouched: the same archive restores where there is room.
    env.extract_to("a", "roomy", &[]).ok();
    assert_same_tree(&s, &env.path("roomy/src"));
}

/// Packs go out with direct I/O on XFS and btrfs as on ext4 (covered by the backend's unit tests),
/// and what was written reads back: `check --verify-data`, then a byte-exact extract.
#[test]
fn packs_on_xfs_and_btrfs_are_written_direct_and_read_back() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("SKIP packs_on_xfs_and_btrfs: strace is not installed (apt-get install strace)");
        return;
    }
    for fs_type in ["xfs", "btrfs"] {
        let env = Env::new();
        let mnt = env.path("mnt");
        // 300 MiB: mkfs.btrfs refuses images under about 110 MiB
        let Some(_m) = loop_disk(&env, &mnt, fs_type, 300 << 20, "loop") else { continue };
        let repo = mnt.join("repo").display().to_string();
        env.run(&["init", "-e", "repokey", "--kdf-memory", "64", &repo]).ok();
        fs::create_dir_all(env.path("src/d")).unwrap();
        fs::write(env.path("src/big"), xorshift(5 << 20, 41)).unwrap();
        for i in 0..20 {
            fs::write(env.path(&format!("src/d/small{i}")), xorshift(3000 + i * 1000, 50 + i as u64)).unwrap();
        }
        let trace = env.path("fcntl.trace");
        let o = under_strace(
            &env,
            &["-e", "trace=fcntl", "-o", &trace.display().to_string()],
            &["create", &format!("{repo}::a"), "src"],
        );
        assert_eq!(o.status.code(), Some(0), "{fs_type}: {}", String::from_utf8_lossy(&o.stderr));
        let t = fs::read_to_string(&trace).unwrap();
        assert!(t.contains("F_SETFL, O_WRONLY|O_DIRECT"), "{fs_type}: no pack was written with O_DIRECT:\n{t}");
        env.run(&["check", "--verify-data", &repo]).ok();
        env.run_in(&env.path("out"), &["extract", &format!("{repo}::a")]).ok();
        assert_same_tree(&env.path("src"), &env.path("out/src"));
    }
}
