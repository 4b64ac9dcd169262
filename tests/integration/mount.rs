//! `garret mount` through the kernel's FUSE: every archive browsed with find/stat and compared
//! with its source, ranged reads of a sparse file, concurrent readers, a writer while mounted,
//! signals, umount, and the errors a user can run into.

use crate::support::*;
use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// FUSE needs /dev/fuse (and fusermount3 when not root); `.ci/run` installs fuse3.
fn fuse_usable() -> bool {
    let ok = Path::new("/dev/fuse").exists()
        && (rustix::process::geteuid().is_root() || Command::new("fusermount3").arg("-V").output().is_ok());
    if !ok {
        eprintln!("SKIP: FUSE is not available here (/dev/fuse or fusermount3 missing: apt-get install fuse3)");
    }
    ok
}

fn mounted(p: &Path) -> bool {
    garret::mount::is_mounted(p)
}

/// Unmounts on drop, so a failing test does not leave a mount behind.
struct Mount<'e> {
    env: &'e Env,
    at: PathBuf,
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        if mounted(&self.at) {
            let _ = self.env.run(&["umount", &self.at.display().to_string()]);
        }
    }
}

fn mount<'e>(env: &'e Env, what: &str, at: &str) -> Mount<'e> {
    mount_with(env, &[], what, at)
}

fn mount_with<'e>(env: &'e Env, options: &[&str], what: &str, at: &str) -> Mount<'e> {
    let at = env.path(at);
    fs::create_dir_all(&at).unwrap();
    let at_arg = at.display().to_string();
    let mut args = vec!["mount", "--json"];
    args.extend_from_slice(options);
    args.extend([what, at_arg.as_str()]);
    let r = env.run(&args).ok();
    assert!(mounted(&at), "mount returned but {} is not mounted", at.display());
    // --json: what is mounted where, and which process serves it (alive, detached)
    let summary: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(summary["mountpoint"], at.display().to_string());
    assert_eq!(summary["archive"].as_str(), what.split_once("::").map(|(_, name)| name));
    assert!(summary["archives"].as_u64().unwrap() >= 1, "{summary}");
    let pid = summary["pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "{summary}");
    Mount { env, at }
}

fn set_tree_mtimes(root: &Path, secs: i64) {
    for e in walkdir::WalkDir::new(root).contents_first(true) {
        let e = e.unwrap();
        if !e.path_is_symlink() {
            crate::round_trip::set_mtime(e.path(), secs, 123_456_789);
        }
    }
}

#[test]
fn mount_shows_every_archive_exactly_and_survives_readers_and_writers() {
    if !fuse_usable() {
        return;
    }
    let env = Env::new();
    env.init("repokey");
    let s = env.path("src");
    fs::create_dir_all(s.join("dir/sub")).unwrap();
    fs::create_dir_all(s.join("private")).unwrap();
    fs::write(s.join("small"), b"hello\n").unwrap();
    fs::write(s.join("empty"), b"").unwrap();
    fs::write(s.join("dir/big"), xorshift(9 << 20, 7)).unwrap();
    fs::write(s.join("dir/sub/mid"), xorshift(300_000, 8)).unwrap();
    fs::hard_link(s.join("small"), s.join("dir/hard")).unwrap();
    std::os::unix::fs::symlink("../small", s.join("dir/link")).unwrap();
    rustix::fs::setxattr(s.join("small"), "user.note", b"kept", rustix::fs::XattrFlags::empty()).unwrap();
    fs::set_permissions(s.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(s.join("dir/sub/mid"), fs::Permissions::from_mode(0o640)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        s.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();

    // Three nights, the tree changing in between; remember what each night looked like.
    let mut expected = Vec::new();
    for (night, name) in ["mon", "tue", "wed"].iter().enumerate() {
        if night == 1 {
            let mut big = xorshift(9 << 20, 7);
            big[5 << 20] ^= 0xff;
            fs::write(s.join("dir/big"), big).unwrap();
            fs::write(s.join("dir/new"), b"added on tuesday").unwrap();
        }
        if night == 2 {
            fs::remove_file(s.join("dir/sub/mid")).unwrap();
            fs::write(s.join("small"), b"changed\n").unwrap();
        }
        set_tree_mtimes(&s, 1_700_000_000 + night as i64 * 86_400);
        env.create_json(name, &["src"], &[]);
        expected.push((name.to_string(), snapshot(&s)));
    }

    let m = mount(&env, &env.repo_str(), "mnt");
    let names: Vec<String> = {
        let mut v: Vec<String> =
            fs::read_dir(&m.at).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names, vec!["mon", "tue", "wed"]);

    // find and stat (other processes) see every entry.
    let out = Command::new("find").arg(&m.at).arg("-printf").arg("%y %m %s %n %P\n").output().unwrap();
    assert!(out.status.success(), "find: {}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8_lossy(&out.stdout);
    for (name, snap) in &expected {
        for path in snap.keys() {
            let want = format!("{name}/src/{}", String::from_utf8_lossy(path));
            assert!(listing.lines().any(|l| l.ends_with(&format!(" {want}"))), "find did not list {want}");
        }
    }
    let st = Command::new("stat").arg("-c").arg("%h %i %U %a").arg(m.at.join("mon/src/small")).output().unwrap();
    let st2 = Command::new("stat").arg("-c").arg("%h %i %U %a").arg(m.at.join("mon/src/dir/hard")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&st.stdout), String::from_utf8_lossy(&st2.stdout), "hardlinks share an inode");
    assert!(
        String::from_utf8_lossy(&st.stdout).starts_with("2 "),
        "link count 2: {}",
        String::from_utf8_lossy(&st.stdout)
    );

    // Every archive matches its source by content, mode, owner, mtime, targets, xattrs, links.
    for (name, snap) in &expected {
        let got = snapshot(&m.at.join(name).join("src"));
        assert_eq!(&got, snap, "archive {name} seen through the mount differs from its source");
    }

    // Two processes reading the same large file at once get the same, right bytes.
    let big = m.at.join("tue/src/dir/big");
    let readers: Vec<_> = (0..2)
        .map(|_| Command::new("sha256sum").arg(&big).stdout(std::process::Stdio::piped()).spawn().unwrap())
        .collect();
    let sums: Vec<String> = readers
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(sums[0], sums[1]);
    assert_eq!(sums[0], sha(&s.join("dir/big")), "the tuesday version is the current one");

    // Files map, shared and private.
    assert_maps(&big, &fs::read(s.join("dir/big")).unwrap());

    // A backup written while mounted neither disturbs the view nor is disturbed by it.
    fs::write(s.join("during"), b"written while mounted").unwrap();
    env.create_json("thu", &["src"], &[]);
    assert_eq!(snapshot(&m.at.join("mon/src")), expected[0].1);
    env.run(&["check", &env.repo_str()]).ok();

    // A file cannot be opened for writing; nothing can be created.
    assert!(fs::OpenOptions::new().write(true).open(m.at.join("mon/src/small")).is_err());
    assert!(fs::write(m.at.join("mon/src/newfile"), b"x").is_err());

    let r = env.run(&["umount", "--json", &m.at.display().to_string()]).ok();
    assert_eq!(r.stdout.trim(), serde_json::json!({ "unmounted": m.at.display().to_string() }).to_string());
    assert!(!mounted(&m.at));
    // The mount point is an ordinary empty directory again.
    assert_eq!(fs::read_dir(&m.at).unwrap().count(), 0);
}

/// A foreground `mount -f` that is stopped (and so unmounted) if the test fails early.
struct Foreground(std::process::Child);

impl Drop for Foreground {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let _ = self.0.wait();
        }
    }
}

/// Start `garret mount -f WHAT AT` and wait until it is mounted.
fn mount_foreground(env: &Env, what: &str, at: &Path) -> Foreground {
    fs::create_dir_all(at).unwrap();
    let mut child = Foreground(
        env.cmd()
            .args(["mount", "-f", what, &at.display().to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mounted(at) {
        assert!(Instant::now() < deadline, "foreground mount did not come up");
        assert!(child.0.try_wait().unwrap().is_none(), "mount -f exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn mount_one_archive_reads_a_range_of_a_huge_sparse_file_and_unmounts_on_sigterm() {
    if !fuse_usable() {
        return;
    }
    let env = Env::new();
    env.init("none");
    let s = env.path("src");
    fs::create_dir_all(&s).unwrap();
    let f = fs::File::create(s.join("sparse")).unwrap();
    f.set_len((3 << 30) + (1 << 20)).unwrap();
    f.write_all_at(b"needle", 3 << 30).unwrap();
    drop(f);
    env.create_json("one", &["src"], &[]);

    let at = env.path("mnt");
    let mut child = mount_foreground(&env, &env.archive("one"), &at);
    let child = &mut child.0;
    // With REPO::NAME the root is the archive itself.
    let file = fs::File::open(at.join("src/sparse")).unwrap();
    assert_eq!(file.metadata().unwrap().len(), (3 << 30) + (1 << 20));
    let mut buf = [0u8; 1];
    file.read_exact_at(&mut buf, (3 << 30) + 3).unwrap();
    assert_eq!(&buf, b"d");
    let mut buf = [0u8; 10];
    file.read_exact_at(&mut buf, (3 << 30) - 4).unwrap();
    assert_eq!(&buf, b"\0\0\0\0needle");
    drop(file);

    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "mount -f exits 0 after SIGTERM: {status:?}");
    assert!(!mounted(&at), "SIGTERM unmounted");
}

#[test]
fn mount_and_umount_errors_are_one_clear_line() {
    if !fuse_usable() {
        return;
    }
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src")).unwrap();
    fs::write(env.path("src/f"), b"x").unwrap();
    env.create_json("a", &["src"], &[]);
    let r = env.run(&["mount", &env.repo_str(), &env.path("nowhere").display().to_string()]).code(2);
    assert!(r.stderr.contains("nowhere") && r.stderr.contains("mkdir"), "{}", r.stderr);
    fs::create_dir_all(env.path("mnt")).unwrap();
    let mnt = env.path("mnt").display().to_string();
    let r = env.run(&["mount", "-o", "bogus", &env.repo_str(), &mnt]).code(2);
    assert!(r.stderr.contains("bogus") && r.stderr.lines().count() == 1, "{}", r.stderr);
    let r = env.run(&["mount", &env.archive("nosuch"), &mnt]).code(2);
    assert!(r.stderr.contains("nosuch"), "{}", r.stderr);
    assert!(!mounted(&env.path("mnt")));
    let r = env.run(&["umount", &mnt]).code(2);
    assert!(r.stderr.contains("not a mount point"), "{}", r.stderr);
    // Mounting twice at the same place is refused while the first mount stays intact.
    let m = mount(&env, &env.repo_str(), "mnt");
    let r = env.run(&["mount", &env.repo_str(), &mnt]).code(2);
    assert!(r.stderr.lines().count() == 1, "{}", r.stderr);
    assert_eq!(fs::read(m.at.join("a/src/f")).unwrap(), b"x");
}

#[test]
fn compact_beside_a_mount_keeps_what_it_shows_and_a_killed_mount_does_not_block_it() {
    if !fuse_usable() {
        return;
    }
    let env = Env::new();
    env.init("repokey");
    let s = env.path("src");
    fs::create_dir_all(&s).unwrap();
    fs::write(s.join("old"), xorshift(3 << 20, 41)).unwrap();
    fs::write(s.join("keep"), xorshift(200_000, 43)).unwrap();
    env.create_json("first", &["src"], &[]);
    let first = snapshot(&s);
    fs::remove_file(s.join("old")).unwrap();
    fs::write(s.join("new"), xorshift(1 << 20, 45)).unwrap();
    env.create_json("second", &["src"], &[]);
    let second = snapshot(&s);
    let compact = || {
        let r = env.run(&["compact", "--grace", "0", "--json", &env.repo_str()]).ok();
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()["stats"].clone()
    };

    // A mount of every archive: an archive deleted under it keeps its data, and compact
    // (the nightly `prune --compact`) succeeds.
    let m = mount(&env, &env.repo_str(), "mnt");
    fs::read_dir(m.at.join("first/src")).unwrap().count(); // load the archive into the view
    env.run(&["delete", &env.archive("first")]).ok();
    let st = compact();
    assert_eq!((st["archives_kept_for_readers"].as_u64(), st["packs_deleted"].as_u64()), (Some(1), Some(0)), "{st}");
    assert_eq!(snapshot(&m.at.join("first/src")), first);
    env.run(&["umount", &m.at.display().to_string()]).ok();

    // A mount of `second` alone: compact rewrites the pack that `keep` shares with the deleted
    // archive's `old`, deletes it at once (--grace 0), and the view finds `keep` in its new pack.
    let m = mount(&env, &env.archive("second"), "mnt");
    let st = compact();
    assert_eq!(st["archives_kept_for_readers"], 0, "{st}");
    assert!(st["packs_rewritten"].as_u64() >= Some(1) && st["bytes_freed"].as_u64() >= Some(3 << 20), "{st}");
    assert_eq!(snapshot(&m.at.join("src")), second);
    env.run(&["umount", &m.at.display().to_string()]).ok();
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();

    // A mount killed with -9 leaves a stale mark (and a dead mount point): compact goes ahead.
    let at = env.path("mnt2");
    let mut child = mount_foreground(&env, &env.repo_str(), &at);
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let _ = Command::new("fusermount3").arg("-u").arg(&at).status();
    if mounted(&at) {
        env.run(&["umount", &at.display().to_string()]).ok();
    }
    assert!(!mounted(&at));
    env.run(&["compact", &env.repo_str()]).ok();
    let second = env.path("restore");
    env.extract_to("second", "restore", &[]).ok();
    assert_same_tree(&s, &second.join("src"));
}

/// A delete and a compact that run while a mount opens (after it read the manifest, before its
/// reader mark existed): the mount reads the manifest again once marked, so it never shows an
/// archive whose data that compact freed.
#[test]
fn a_mount_opening_during_a_delete_and_compact_shows_no_freed_archive() {
    if !fuse_usable() {
        return;
    }
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src")).unwrap();
    fs::write(env.path("src/a"), xorshift(1 << 20, 51)).unwrap();
    env.create_json("x", &["src"], &[]);
    fs::write(env.path("src/a"), xorshift(1 << 20, 53)).unwrap();
    env.create_json("y", &["src"], &[]);
    let at = env.path("mnt");
    fs::create_dir_all(&at).unwrap();
    let (child, flag) =
        env.spawn_paused("manifest-loaded", &["mount", "-f", &env.repo_str(), &at.display().to_string()]);
    let child = Foreground(child);
    env.run(&["delete", &env.archive("x")]).ok();
    let r = env.run(&["compact", "--grace", "0", "--json", &env.repo_str()]).ok();
    assert!(r.stdout.contains("\"packs_deleted\": 2"), "x's data and metadata packs: {}", r.stdout);
    fs::remove_file(&flag).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mounted(&at) {
        assert!(Instant::now() < deadline, "the mount did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let shown: Vec<_> = fs::read_dir(&at).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(shown, ["y"], "the mount shows the manifest read after its mark");
    assert_eq!(fs::read(at.join("y/src/a")).unwrap(), xorshift(1 << 20, 53));
    drop(child);
    assert!(!mounted(&at));
}

/// Unmounts a bind mount on drop.
struct BindMount(PathBuf);

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A repository on a read-only medium (an offsite disk mounted read-only) mounts and extracts:
/// no reader mark can be written there, and none is needed, since nothing can compact it.
#[test]
fn a_read_only_repository_mounts_and_extracts() {
    if !fuse_usable() {
        return;
    }
    let env = Env::new();
    env.init("repokey");
    fs::create_dir_all(env.path("src")).unwrap();
    fs::write(env.path("src/f"), xorshift(300_000, 121)).unwrap();
    env.create_json("a", &["src"], &[]);
    let ro = env.path("ro");
    fs::create_dir_all(&ro).unwrap();
    let bind = |args: &[&str]| Command::new("mount").args(args).status().is_ok_and(|s| s.success());
    if !bind(&["--bind", &env.repo_str(), &ro.display().to_string()]) {
        eprintln!("SKIP: a read-only bind mount needs root (mount --bind)");
        return;
    }
    let _bound = BindMount(ro.clone());
    assert!(bind(&["-o", "remount,bind,ro", &ro.display().to_string()]), "remount read-only");
    assert!(fs::write(ro.join("probe"), b"").is_err(), "the repository is read-only");
    let ro_str = ro.display().to_string();
    env.run(&["extract", "--dry-run", &format!("{ro_str}::a")]).ok();
    let m = mount(&env, &ro_str, "mnt");
    assert_eq!(fs::read(m.at.join("a/src/f")).unwrap(), xorshift(300_000, 121));
    env.run(&["umount", &m.at.display().to_string()]).ok();
}

/// This host's name, as reader marks record it.
fn host() -> String {
    String::from_utf8_lossy(&Command::new("uname").arg("-n").output().unwrap().stdout).trim().to_string()
}

/// A reader mark held by this test process (alive, so not stale), naming `archives` (hex ids),
/// or no archive list at all (a mount of an older garret) for `None`.
fn write_mark(env: &Env, archives: Option<&[&str]>) -> PathBuf {
    let dir = env.repo().join("readers");
    fs::create_dir_all(&dir).unwrap();
    let mark = dir.join(format!("{}.{}", host(), std::process::id()));
    let mut json =
        serde_json::json!({"hostname": host(), "pid": std::process::id(), "since": "2026-11-27T03:00:00+00:00"});
    if let Some(ids) = archives {
        json["archives"] = serde_json::json!(ids);
    }
    fs::write(&mark, json.to_string()).unwrap();
    mark
}

/// Archive ids by name, from `list --json`.
fn archive_ids(env: &Env) -> std::collections::HashMap<String, String> {
    let r = env.run(&["list", "--json", &env.repo_str()]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_string(), a["id"].as_str().unwrap().to_string()))
        .collect()
}

/// The content of the one file of the archive object `id`, read whether or not the manifest
/// still names the archive.
fn file_of_archive(env: &Env, id: &str) -> garret::error::Result<Vec<u8>> {
    let repo = open_repo(env);
    let id = garret::id::Id::from_hex(id).unwrap();
    let ar = garret::archive::Archive::load_object(&repo, &id, "archive")?;
    let mut out = Vec::new();
    for item in ar.items(&repo) {
        let item = item?;
        let ids: Vec<_> = item.chunks.iter().map(|c| c.0).collect();
        for data in repo.load_many(garret::id::ObjectType::Data, &ids) {
            out.extend(data?);
        }
    }
    Ok(out)
}

fn compact_json(env: &Env) -> serde_json::Value {
    let r = env.run(&["compact", "--grace", "0", "--json", &env.repo_str()]).ok();
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()["stats"].clone()
}

/// A mount's reader mark names the archives the mount shows. A compact beside it (the nightly
/// `prune --compact` while someone browses a restore) keeps their data even after they left the
/// manifest, frees everything else, and frees theirs once the mount is gone. A mark that names
/// no archives (a mount of an older garret) makes compact refuse and change nothing.
#[test]
fn compact_beside_a_mount_keeps_what_the_mount_shows_and_frees_the_rest() {
    let env = Env::new();
    env.init("none");
    for (name, seed) in [("gone", 71), ("shown", 73), ("kept", 75)] {
        fs::create_dir_all(env.path(name)).unwrap();
        fs::write(env.path(name).join("f"), xorshift(3 << 20, seed)).unwrap();
        env.create_json(name, &[name], &[]);
    }
    let ids = archive_ids(&env);
    let mark = write_mark(&env, Some(&[ids["shown"].as_str(), ids["kept"].as_str()]));
    // `info` names the reader and how many archives it holds.
    let r = env.run(&["info", "--json", &env.repo_str()]).ok();
    let info: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(info["readers"].as_array().map(Vec::len), Some(1), "{info}");
    assert_eq!(info["readers"][0]["archives"], 2, "{info}");
    let r = env.run(&["info", &env.repo_str()]).ok();
    assert!(r.stdout.contains(&format!("Reader: process {} on host", std::process::id())), "{}", r.stdout);
    env.run(&["delete", &env.archive("gone")]).ok();
    env.run(&["delete", &env.archive("shown")]).ok();

    let size = du(&env.repo());
    let st = compact_json(&env);
    assert_eq!(st["archives_kept_for_readers"], 1, "{st}");
    assert!(st["packs_deleted"].as_u64().unwrap() >= 2, "the deleted archive's data and metadata packs: {st}");
    let freed = size - du(&env.repo());
    assert!((3 << 20..6 << 20).contains(&freed), "freed {freed} bytes: one archive's data, not two");
    assert_eq!(file_of_archive(&env, &ids["shown"]).unwrap(), xorshift(3 << 20, 73), "what the mount shows");
    assert!(file_of_archive(&env, &ids["gone"]).is_err(), "the archive no mount shows was freed");

    // A mount of an older garret: compact cannot know what it shows.
    write_mark(&env, None);
    let before = immutable_files(&env.repo());
    let r = env.run(&["compact", "--grace", "0", &env.repo_str()]).code(2);
    assert!(r.stderr.contains("older garret") && r.stderr.contains("garret umount"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert_eq!(immutable_files(&env.repo()), before, "a refused compact changed the repository");

    // Unmounted: the next compact frees what only the mount needed.
    fs::remove_file(&mark).unwrap();
    let size = du(&env.repo());
    let st = compact_json(&env);
    assert_eq!(st["archives_kept_for_readers"], 0, "{st}");
    assert!(size - du(&env.repo()) >= 3 << 20, "{st}");
    assert!(file_of_archive(&env, &ids["shown"]).is_err());
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    env.extract_to("kept", "out", &[]).ok();
    assert_eq!(fs::read(env.path("out/kept/f")).unwrap(), xorshift(3 << 20, 75));
}

/// `check --repair` rebuilds the index from nothing, so it refuses while a reader holds a mark
/// (its lookups would fail meanwhile), changes nothing, and runs once the reader is gone.
#[test]
fn check_repair_refuses_while_a_reader_holds_a_mark() {
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src")).unwrap();
    fs::write(env.path("src/f"), xorshift(100_000, 171)).unwrap();
    env.create_json("a", &["src"], &[]);
    let ids = archive_ids(&env);
    let mark = write_mark(&env, Some(&[ids["a"].as_str()]));
    let before = immutable_files(&env.repo());
    let index = fs::read(env.repo().join("index.sqlite")).unwrap();
    let r = env.run(&["check", "--repair", &env.repo_str()]).code(2);
    assert!(r.stderr.contains("being read by") && r.stderr.contains("break-lock"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert_eq!(immutable_files(&env.repo()), before);
    assert_eq!(fs::read(env.repo().join("index.sqlite")).unwrap(), index, "the index was rebuilt");
    fs::remove_file(&mark).unwrap();
    env.run(&["check", "--repair", &env.repo_str()]).ok();
}

/// A mount that starts while compact runs: compact goes on deleting if the mount shows only
/// archives whose data it keeps, and stops deleting if it cannot tell (the packs it leaves are
/// unindexed garbage, which the next compact deletes).
#[test]
fn a_mount_that_starts_during_compact_stops_its_deletions_only_if_it_may_need_them() {
    let env = Env::new();
    env.init("none");
    let packs = || pack_count(&env.repo());
    for covered in [false, true] {
        fs::create_dir_all(env.path("src")).unwrap();
        fs::write(env.path("src/f"), xorshift(2 << 20, 81 + 2 * covered as u64)).unwrap();
        env.create_json("doomed", &["src"], &[]);
        fs::write(env.path("src/f"), xorshift(1 << 20, 91 + 2 * covered as u64)).unwrap();
        env.create_json("kept", &["src"], &[]);
        env.run(&["delete", &env.archive("doomed")]).ok();
        let before = packs();
        let (child, flag) = env.spawn_paused("compact-rewritten", &["compact", "--grace", "0", &env.repo_str()]);
        let ids = archive_ids(&env);
        let mark = write_mark(&env, covered.then_some(&[ids["kept"].as_str()][..]));
        fs::remove_file(&flag).unwrap();
        let r = Run::from(child.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
        if covered {
            assert!(packs() < before, "a mount showing only current archives stopped the deletions");
        } else {
            assert_eq!(packs(), before, "compact deleted packs a new mount may read");
        }
        fs::remove_file(&mark).unwrap();
        env.run(&["compact", "--grace", "0", &env.repo_str()]).ok();
        env.run(&["check", "--verify-data", &env.repo_str()]).ok();
        env.run(&["delete", &env.archive("kept")]).ok();
    }
}

/// A long-running reader (what mount is) whose blobs a compact in another process moved finds
/// them in their new packs.
#[test]
fn a_reader_opened_before_a_compact_finds_moved_blobs() {
    let env = Env::new();
    env.init("none");
    let s = env.path("src");
    fs::create_dir_all(&s).unwrap();
    fs::write(s.join("garbage-to-be"), xorshift(3 << 20, 51)).unwrap();
    fs::write(s.join("keep"), xorshift(200_000, 52)).unwrap();
    env.create_json("both", &["src"], &[]);
    fs::remove_file(s.join("garbage-to-be")).unwrap();
    env.create_json("keep", &["src"], &[]);
    let reader = open_repo(&env);
    let keep = items(&reader, "keep").into_iter().find(|i| i.path.ends_with(b"/keep")).unwrap();
    let ids: Vec<_> = keep.chunks.iter().map(|c| c.0).collect();
    let before: Vec<_> = ids.iter().map(|id| reader.index().lookup(id).unwrap().unwrap().pack).collect();
    env.run(&["delete", &env.archive("both")]).ok();
    env.run(&["compact", &env.repo_str()]).ok();
    for (id, old) in ids.iter().zip(&before) {
        let now = reader.index().lookup(id).unwrap().unwrap().pack;
        assert_ne!(&now, old, "compact rewrote the pack holding the kept file");
    }
    let data: Vec<u8> = reader
        .load_many(garret::id::ObjectType::Data, &ids)
        .into_iter()
        .flat_map(|r| r.expect("moved blob found again"))
        .collect();
    assert_eq!(data, xorshift(200_000, 52));
    assert!(reader.load_blob(garret::id::ObjectType::Data, &ids[0]).is_ok());
}

/// A mounted file can be memory-mapped, shared (as databases and search tools do) and private
/// (as the loader does), whether the mount opens it for direct I/O or not, and maps to `want`.
fn assert_maps(file: &Path, want: &[u8]) {
    for flags in [rustix::mm::MapFlags::SHARED, rustix::mm::MapFlags::PRIVATE] {
        let f = fs::File::open(file).unwrap();
        // SAFETY: a read-only mapping of a file on a read-only mount, unmapped below.
        let p =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), want.len(), rustix::mm::ProtFlags::READ, flags, &f, 0) }
                .unwrap_or_else(|e| panic!("mmap {flags:?} of {}: {e}", file.display()));
        // SAFETY: the mapping is want.len() bytes long and readable.
        let got = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), want.len()) };
        assert!(got == want, "mapped {flags:?} bytes of {} differ from the source", file.display());
        // SAFETY: unmaps exactly the mapping made above; `got` is not used after.
        unsafe { rustix::mm::munmap(p, want.len()) }.unwrap();
    }
}

/// Bytes of `file` in the page cache (util-linux fincore).
fn cached_bytes(file: &Path) -> u64 {
    let out = Command::new("fincore").args(["--bytes", "--noheadings", "--output", "RES"]).arg(file).output().unwrap();
    assert!(out.status.success(), "fincore: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Whether this kernel can map files opened for direct I/O (Linux 6.6, FUSE_DIRECT_IO_ALLOW_MMAP).
fn kernel_maps_direct_io() -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release.trim().split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
    (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 6)
}

#[test]
fn reads_bypass_the_page_cache_unless_kernel_cache_is_asked_for() {
    if !fuse_usable() {
        return;
    }
    let env = Env::new();
    env.init("repokey");
    fs::create_dir_all(env.path("src")).unwrap();
    let want = xorshift(6 << 20, 11);
    fs::write(env.path("src/file"), &want).unwrap();
    env.create_json("a", &["src"], &[]);
    for (options, at) in [(&[][..], "direct"), (&["-o", "kernel_cache"][..], "cached")] {
        let m = mount_with(&env, options, &env.archive("a"), at);
        let file = m.at.join("src/file");
        // the preferred I/O size is one whole FUSE request, so `cat` and `cp` read 1 MiB at a time
        let blksize = std::os::unix::fs::MetadataExt::blksize(&fs::metadata(&file).unwrap());
        assert_eq!(blksize, 1 << 20, "{at}: st_blksize");
        assert!(fs::read(&file).unwrap() == want, "{at}: content differs");
        let cached = cached_bytes(&file);
        if options.is_empty() {
            if kernel_maps_direct_io() {
                assert_eq!(cached, 0, "direct I/O: nothing of the file in the page cache");
            }
        } else {
            assert!(cached >= want.len() as u64 / 2, "kernel_cache: the file is in the page cache ({cached})");
        }
        assert_maps(&file, &want);
    }
    let r = env
        .run(&["mount", "-o", "kernel_cache,bogus", &env.repo_str(), &env.path("direct").display().to_string()])
        .code(2);
    assert!(r.stderr.contains("kernel_cache") && r.stderr.lines().count() == 1, "{}", r.stderr);
}

/// borg's archive filters choose which archives a repository mount shows.
#[test]
fn mount_shows_the_archives_the_filters_select() {
    if !fuse_usable() {
        return;
    }
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src")).unwrap();
    fs::write(env.path("src/f"), b"x").unwrap();
    for n in ["db-1", "files-1", "db-2"] {
        env.create_json(n, &["src"], &[]);
    }
    let listing = |at: &Path| -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(at).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    {
        let m = mount_with(&env, &["--last", "2"], &env.repo_str(), "m1");
        assert_eq!(listing(&m.at), ["db-2", "files-1"]);
    }
    {
        let m = mount_with(&env, &["-P", "db-"], &env.repo_str(), "m2");
        assert_eq!(listing(&m.at), ["db-1", "db-2"]);
        assert_eq!(fs::read(m.at.join("db-1/src/f")).unwrap(), b"x");
    }
    fs::create_dir_all(env.path("m3")).unwrap();
    let m3 = env.path("m3").display().to_string();
    let r = env.run(&["mount", "--sort-by", "size", &env.repo_str(), &m3]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!mounted(&env.path("m3")));
}

/// borg's selection flags on mount: `--strip-components` and `--exclude`/`--pattern` shape every
/// archive's view (hardlinks included).
#[test]
fn mount_strips_components_and_leaves_out_excluded_paths() {
    if !fuse_usable() {
        return;
    }
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("srv/app/logs")).unwrap();
    fs::write(env.path("srv/app/conf.ini"), b"conf").unwrap();
    fs::write(env.path("srv/app/logs/today.log"), b"log").unwrap();
    fs::hard_link(env.path("srv/app/conf.ini"), env.path("srv/app/conf.bak")).unwrap();
    let touched = Command::new("touch")
        .args(["-a", "-d", "2001-02-03 04:05:06", "srv/app/conf.ini"])
        .current_dir(env.path(""))
        .status();
    assert!(touched.unwrap().success());
    env.run(&["create", "--atime", &env.archive("a"), "srv"]).ok();
    let what = env.archive("a");
    let m = mount_with(&env, &["--strip-components", "1", "--exclude", "srv/app/logs"], &what, "mnt");
    let mut seen: Vec<String> = walk(&m.at);
    seen.sort();
    assert_eq!(seen, ["app", "app/conf.bak", "app/conf.ini"]);
    assert_eq!(fs::read(m.at.join("app/conf.bak")).unwrap(), b"conf");
    use std::os::unix::fs::MetadataExt;
    let conf = fs::metadata(m.at.join("app/conf.ini")).unwrap();
    assert_eq!(conf.nlink(), 2);
    assert_eq!(conf.atime(), 981173106, "the stored access time");
    assert_ne!(conf.mtime(), conf.atime());
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}
