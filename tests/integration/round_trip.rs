//! Round trip: a tree with every kind of entry extracts identical in content and metadata.

use crate::support::*;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

pub fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let t = rustix::fs::Timespec { tv_sec: sec, tv_nsec: nsec as _ };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps { last_access: t, last_modification: t },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Build the test tree; returns the number of entries.
pub fn build_tree(root: &Path, big: bool) -> usize {
    fs::create_dir_all(root).unwrap();
    let mut n = 0;
    // 40 directories of 50 small files, some empty, varied modes and nanosecond mtimes.
    for d in 0..40 {
        let dir = root.join(format!("dir{d:02}"));
        fs::create_dir(&dir).unwrap();
        n += 1;
        for f in 0..50 {
            let p = dir.join(format!("file{f:03}.txt"));
            let body = if f % 10 == 0 { vec![] } else { format!("dir {d} file {f}\n").repeat(f * 7 + d).into_bytes() };
            fs::write(&p, body).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode([0o644, 0o600, 0o755, 0o640][f % 4])).unwrap();
            set_mtime(&p, 1_700_000_000 + (d * 100 + f) as i64, 123_456_789 + f as i64);
            n += 1;
        }
    }
    let special = root.join("special");
    fs::create_dir(&special).unwrap();
    n += 1;
    if big {
        fs::write(special.join("random-64M"), xorshift(64 << 20, 7)).unwrap();
        let sp = fs::File::create(special.join("sparse-1G")).unwrap();
        sp.set_len(1 << 30).unwrap();
        use std::os::unix::fs::FileExt;
        sp.write_all_at(b"start", 0).unwrap();
        sp.write_all_at(b"middle of a sparse file", 512 << 20).unwrap();
        sp.write_all_at(b"end", (1 << 30) - 3).unwrap();
        n += 2;
    }
    // symlinks: relative, dangling, absolute
    std::os::unix::fs::symlink("../dir00/file001.txt", special.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", special.join("dangling")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", special.join("abs-link")).unwrap();
    n += 3;
    // hardlink groups: three names of one file across directories, two of another
    fs::write(special.join("hl-a"), b"hardlinked content\n").unwrap();
    fs::hard_link(special.join("hl-a"), special.join("hl-b")).unwrap();
    fs::hard_link(special.join("hl-a"), root.join("dir05/hl-c")).unwrap();
    fs::write(special.join("hl2-x"), xorshift(100_000, 3)).unwrap();
    fs::hard_link(special.join("hl2-x"), special.join("hl2-y")).unwrap();
    n += 5;
    // FIFO
    rustix::fs::mknodat(
        rustix::fs::CWD,
        special.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    n += 1;
    // awkward names
    let names: Vec<Vec<u8>> = vec![
        b"caf\xe9 latin1".to_vec(),
        b"with space".to_vec(),
        b"with\nnewline".to_vec(),
        b"tab\there".to_vec(),
        vec![b'x'; 255],
        "unicode-\u{263a}".as_bytes().to_vec(),
        b"-starts-with-dash".to_vec(),
        b"back\\slash".to_vec(),
    ];
    for name in &names {
        fs::write(special.join(OsStr::from_bytes(name)), name).unwrap();
        n += 1;
    }
    // deep nesting
    let mut deep = root.join("deep");
    for i in 0..60 {
        deep = deep.join(format!("level{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), b"deep").unwrap();
    n += 62; // "deep", 60 levels, "bottom"
             // extended attributes (where the filesystem has them)
    let xf = special.join("with-xattrs");
    fs::write(&xf, b"x").unwrap();
    n += 1;
    let _ = rustix::fs::lsetxattr(&xf, "user.garret.test", b"value \x00\xff", rustix::fs::XattrFlags::empty());
    let _ = rustix::fs::lsetxattr(&xf, "user.empty", b"", rustix::fs::XattrFlags::empty());
    if is_root() {
        let owned = special.join("owned");
        fs::write(&owned, b"owned by someone else").unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            &owned,
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(5678)),
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        n += 1;
    }
    // directory metadata last (creating children changes it)
    fs::set_permissions(root.join("dir07"), fs::Permissions::from_mode(0o750)).unwrap();
    for e in walkdir::WalkDir::new(root).contents_first(true) {
        let e = e.unwrap();
        if e.file_type().is_dir() {
            set_mtime(e.path(), 1_600_000_000, 987_654_321);
        }
    }
    n
}

#[test]
fn round_trip_every_kind_of_entry() {
    let env = Env::new();
    env.init("repokey");
    let n = build_tree(&env.path("src"), true);
    assert!(n >= 2000, "tree has {n} entries");
    let s = env.create_json("a1", &["src"], &[]);
    assert!(s["archive"]["stats"]["nfiles"].as_u64().unwrap() >= 2000);
    // --privileged: device nodes and setid bits too (the tree has a character device as root)
    env.extract_to("a1", "out", &["--privileged"]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
    // the sparse file stayed sparse
    let md = fs::metadata(env.path("out/src/special/sparse-1G")).unwrap();
    assert_eq!(md.len(), 1 << 30);
    assert!(md.blocks() * 512 < 1 << 20, "sparse file takes {} bytes on disk", md.blocks() * 512);
    // listing shows every entry
    let list = env.run(&["list", "--json-lines", &env.archive("a1")]).ok();
    assert_eq!(list.stdout.lines().count(), n + 1, "one line per item plus the root directory");
    let hl = list.stdout.lines().filter(|l| l.contains("\"type\":\"h\"")).count();
    assert_eq!(hl, 3, "later names of hardlinked files are stored as links");
}

#[test]
fn extract_subtree_with_strip_components() {
    let env = Env::new();
    env.init("none");
    build_tree(&env.path("src"), false);
    env.create_json("a", &["src"], &[]);
    env.extract_to("a", "out", &["--strip-components", "1", "src/dir03"]).ok();
    assert_same_tree(&env.path("src/dir03"), &env.path("out/dir03"));
    assert!(!env.path("out/dir04").exists());
    // --exclude on extract: a file pattern and a directory (with everything below it)
    env.extract_to("a", "out3", &["src", "--exclude", "*.txt", "-e", "src/dir12"]).ok();
    assert!(env.path("out3/src/dir10").is_dir() && !env.path("out3/src/dir12").exists());
    assert_eq!(fs::read_dir(env.path("out3/src/dir10")).unwrap().count(), 0, "*.txt files left out");
    // a later hardlink name extracted without its first name gets the content
    env.extract_to("a", "out2", &["src/dir05/hl-c"]).ok();
    assert_eq!(fs::read(env.path("out2/src/dir05/hl-c")).unwrap(), b"hardlinked content\n");
}

#[test]
fn absolute_source_paths_are_stored_relative() {
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("abs/x")).unwrap();
    fs::write(env.path("abs/x/f"), b"data").unwrap();
    let abs = env.path("abs").display().to_string();
    env.create_json("a", &[&abs], &[]);
    let list = env.run(&["list", "--short", &env.archive("a")]).ok();
    let rel = abs.trim_start_matches('/');
    assert!(list.stdout.lines().any(|l| l == format!("{rel}/x/f")), "{}", list.stdout);
    env.extract_to("a", "out", &[&format!("{rel}/x")]).ok();
    assert_eq!(fs::read(env.path("out").join(rel).join("x/f")).unwrap(), b"data");
}

#[test]
fn excluded_directories_are_not_descended() {
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src/db/pgdata/base")).unwrap();
    fs::write(env.path("src/db/pgdata/base/1"), b"x").unwrap();
    fs::write(env.path("src/db/dump.sql"), b"dump").unwrap();
    // An unreadable directory inside the excluded one would produce a warning if walked.
    fs::create_dir_all(env.path("src/db/pgdata/locked")).unwrap();
    fs::set_permissions(env.path("src/db/pgdata/locked"), fs::Permissions::from_mode(0o000)).unwrap();
    let r = env.run(&["create", "--list", &env.archive("a"), "src", "--exclude", "**/pgdata"]).ok();
    assert!(r.stderr.contains("x src/db/pgdata"), "{}", r.stderr);
    let list = env.run(&["list", "--short", &env.archive("a")]).ok();
    assert!(!list.stdout.contains("pgdata"), "{}", list.stdout);
    assert!(list.stdout.contains("src/db/dump.sql"));
    fs::set_permissions(env.path("src/db/pgdata/locked"), fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory swapped for a symlink after its parent was listed (a user planting a link to
/// somewhere they cannot read, while root's nightly backup runs) is archived as the symlink it now
/// is; nothing behind the link is read.
#[test]
fn a_directory_swapped_for_a_symlink_during_the_walk_is_not_followed() {
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src/sub")).unwrap();
    fs::write(env.path("src/sub/mine"), b"mine").unwrap();
    fs::create_dir_all(env.path("secret")).unwrap();
    fs::write(env.path("secret/key"), b"not yours").unwrap();
    let (child, flag) = env.spawn_paused("dir-listed:1", &["create", &env.archive("a"), "src"]);
    // src is listed (sub is a directory in that listing); now sub becomes a link to secret.
    fs::rename(env.path("src/sub"), env.path("sub.moved")).unwrap();
    std::os::unix::fs::symlink(env.path("secret"), env.path("src/sub")).unwrap();
    fs::remove_file(&flag).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().unwrap_or(2) <= 1, "{stderr}");
    let listed = env.run(&["list", "--short", &env.archive("a")]).ok().stdout;
    assert!(!listed.contains("key"), "a file behind the planted link was archived:\n{listed}");
    env.extract_to("a", "out", &[]).ok();
    let sub = fs::symlink_metadata(env.path("out/src/sub")).unwrap();
    assert!(sub.file_type().is_symlink(), "src/sub is archived as what it is now: a symlink");
}

/// A regular file replaced by a FIFO between the walk's stat and its open (a log rotated into a
/// named pipe, say) must not hang the nightly run waiting for a writer: the file is reported and
/// skipped, the rest archived, exit 1.
#[test]
fn a_file_swapped_for_a_fifo_during_the_walk_does_not_hang_the_create() {
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src")).unwrap();
    fs::write(env.path("src/log"), b"first lines").unwrap();
    let (mut child, flag) = env.spawn_paused("file-stated:1", &["create", &env.archive("a"), "src"]);
    fs::remove_file(env.path("src/log")).unwrap();
    let made = std::process::Command::new("mkfifo").arg(env.path("src/log")).status().unwrap();
    assert!(made.success());
    fs::remove_file(&flag).unwrap();
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("create hung on the FIFO that replaced src/log");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("src/log") && stderr.contains("replaced by a FIFO"), "{stderr}");
    let listed = env.run(&["list", "--short", &env.archive("a")]).ok().stdout;
    assert_eq!(listed.trim(), "src", "only the directory is archived");
}

#[test]
fn init_json_names_the_new_repository() {
    let env = Env::new();
    let r = env.run(&["init", "--json", "-e", "repokey", "--kdf-memory", "64", &env.repo_str()]).ok();
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    let config: serde_json::Value = serde_json::from_slice(&fs::read(env.repo().join("config")).unwrap()).unwrap();
    assert_eq!(j["id"], config["id"]);
    assert_eq!(j["encryption"], "repokey");
    assert_eq!(j["format_version"], config["version"]);
    assert_eq!(j["repository"].as_str().map(Path::new), Some(env.repo().as_path()));
}
