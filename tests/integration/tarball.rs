//! export-tar read back by GNU tar, import-tar of GNU tar output, and a whole borg repository
//! migrated with tools/migrate-from-borg.sh.

use crate::support::*;
use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

/// A tree with what tar must carry: long names, xattrs, hardlinks, a symlink, a FIFO, modes,
/// nanosecond mtimes, an empty and a multi-chunk file.
fn make_tree(s: &Path, xattrs: bool, whole_seconds: bool) {
    let long_dir = "d".repeat(120);
    let long_name = format!("{}-{}", "n".repeat(200), "end");
    fs::create_dir_all(s.join(&long_dir).join("sub")).unwrap();
    fs::create_dir_all(s.join("private")).unwrap();
    fs::write(s.join("small"), b"hello tar\n").unwrap();
    fs::write(s.join("empty"), b"").unwrap();
    fs::write(s.join(&long_dir).join("sub").join(&long_name), b"deep and long").unwrap();
    fs::write(s.join("big"), xorshift(6 << 20, 3)).unwrap();
    fs::hard_link(s.join("small"), s.join("private/hard")).unwrap();
    fs::hard_link(s.join("big"), s.join(&long_dir).join("hard-big")).unwrap();
    std::os::unix::fs::symlink(format!("{long_dir}/sub/{long_name}"), s.join("long-link")).unwrap();
    fs::set_permissions(s.join("private"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(s.join("empty"), fs::Permissions::from_mode(0o600)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        s.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    if xattrs {
        rustix::fs::setxattr(s.join("small"), "user.checksum", b"abc123", rustix::fs::XattrFlags::empty()).unwrap();
        rustix::fs::setxattr(s.join(&long_dir), "user.dir", b"on a dir", rustix::fs::XattrFlags::empty()).unwrap();
    }
    let nanos = if whole_seconds { 0 } else { 987_654_321 };
    for e in walkdir::WalkDir::new(s).contents_first(true) {
        crate::round_trip::set_mtime(e.unwrap().path(), 1_690_000_000, nanos);
    }
}

fn gnu_tar(args: &[&str], dir: &Path) {
    let out = Command::new("tar").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "tar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn export_tar_is_read_back_by_gnu_tar_with_identical_content_and_metadata() {
    let env = Env::new();
    env.init("repokey");
    make_tree(&env.path("src"), true, false);
    env.create_json("a", &["src"], &[]);

    // Plain file, to standard output, and through the gzip filter chosen by the extension.
    let tarfile = env.path("a.tar");
    let r = env.run(&["export-tar", "--json", &env.archive("a"), &tarfile.display().to_string()]).ok();
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(j["archive"], "a");
    // file content once per inode: a hardlink's data is in the tar once
    let mut seen = std::collections::HashSet::new();
    let unique: u64 = walkdir::WalkDir::new(env.path("src"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file() && seen.insert(std::os::unix::fs::MetadataExt::ino(m)))
        .map(|m| m.len())
        .sum();
    assert_eq!(j["bytes"].as_u64(), Some(unique), "{j}");
    assert!(j["items"].as_u64().unwrap() > 3, "{j}");
    let r = env.run(&["export-tar", "--json", &env.archive("a"), "-"]);
    assert_eq!(r.code, 2, "--json with - is refused: {}", r.stderr);
    assert!(r.stdout.is_empty(), "nothing written to standard output");
    let out = env.cmd().args(["export-tar", &env.archive("a"), "-"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, fs::read(&tarfile).unwrap(), "stdout and file exports are the same bytes");
    env.run(&["export-tar", &env.archive("a"), &env.path("a.tar.gz").display().to_string()]).ok();

    for (name, flag) in [("a.tar", "-xpf"), ("a.tar.gz", "-xzpf")] {
        let dest = env.path(&format!("from-{name}"));
        fs::create_dir_all(&dest).unwrap();
        gnu_tar(
            &["--xattrs", "--xattrs-include=*", "--numeric-owner", flag, &env.path(name).display().to_string()],
            &dest,
        );
        assert_same_tree(&env.path("src"), &dest.join("src"));
    }
    // GNU tar sees PAX headers, hardlink entries and the long names.
    let list = Command::new("tar").args(["-tvf", &tarfile.display().to_string()]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    // (walk order makes src/private/hard the first name)
    assert!(list.contains("src/small link to src/private/hard"), "{list}");
    assert!(list.contains(&"n".repeat(200)), "long name listed in full");

    // Selected paths, excludes and strip-components.
    let part = env.path("part.tar");
    env.run(&[
        "export-tar",
        "--strip-components",
        "1",
        "-e",
        "src/private",
        &env.archive("a"),
        &part.display().to_string(),
        "src/small",
        "src/private",
        "src/big",
    ])
    .ok();
    let list = Command::new("tar").args(["-tf", &part.display().to_string()]).output().unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&list.stdout).lines().map(String::from).collect();
    names.sort();
    assert_eq!(names, vec!["big", "small"]);
}

/// Small files are loaded a group at a time: thousands of them (more than one group), files
/// above the small-file size between them, files left out by --exclude and files whose content
/// repeats must all come out exactly; a damaged small file stops the export naming it.
#[test]
fn export_tar_of_many_small_files_is_exact_and_a_damaged_one_is_named() {
    let env = Env::new();
    env.init("repokey");
    let s = env.path("src");
    for d in 0..10 {
        fs::create_dir_all(s.join(format!("d{d}"))).unwrap();
        for f in 0..500 {
            let body = if f % 100 == 7 { "the same in many files\n".to_string() } else { format!("file {d}/{f}\n") };
            fs::write(s.join(format!("d{d}/f{f:03}")), body).unwrap();
        }
        fs::write(s.join(format!("d{d}/big")), xorshift(3 << 20, d + 1)).unwrap();
    }
    env.create_json("a", &["src"], &[]);
    let t = env.path("a.tar");
    env.run(&["export-tar", "--exclude", "src/d3", &env.archive("a"), &t.display().to_string()]).ok();
    let dest = env.path("x");
    fs::create_dir_all(&dest).unwrap();
    gnu_tar(&["-xf", &t.display().to_string()], &dest);
    fs::remove_dir_all(s.join("d3")).unwrap();
    assert_same_tree(&s, &dest.join("src"));

    let repo = open_repo(&env);
    let it = items(&repo, "a").into_iter().find(|i| i.path == b"src/d6/f250").unwrap();
    let loc = repo.index().lookup(&it.chunks[0].0).unwrap().unwrap();
    drop(repo);
    let pack = env.repo().join(garret::repository::Repository::pack_key(&loc.pack));
    let f = fs::OpenOptions::new().read(true).write(true).open(&pack).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, loc.offset + 20).unwrap();
    f.write_all_at(&[b[0] ^ 1], loc.offset + 20).unwrap();
    // The small files are stored in bundles: the flipped byte damages every file of its bundle,
    // and the export stops at the first of them it meets.
    let repo = open_repo(&env);
    let (entries, _) = repo.read_pack_header(&loc.pack).unwrap();
    let damaged: Vec<String> = entries.iter().filter(|e| e.offset == loc.offset).map(|e| e.id.hex()).collect();
    drop(repo);
    assert!(damaged.contains(&it.chunks[0].0.hex()));
    let r = env.run(&["export-tar", &env.archive("a"), &env.path("b.tar").display().to_string()]).code(2);
    assert!(damaged.iter().any(|id| r.stderr.contains(id)), "names a damaged chunk: {}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

#[test]
fn export_tar_of_a_hardlink_whose_first_name_is_left_out_carries_the_data() {
    let env = Env::new();
    env.init("none");
    make_tree(&env.path("src"), false, false);
    env.create_json("a", &["src"], &[]);
    let t = env.path("only-link.tar");
    env.run(&["export-tar", &env.archive("a"), &t.display().to_string(), "src/private"]).ok();
    let dest = env.path("x");
    fs::create_dir_all(&dest).unwrap();
    gnu_tar(&["-xpf", &t.display().to_string()], &dest);
    assert_eq!(fs::read(dest.join("src/private/hard")).unwrap(), b"hello tar\n");
}

#[test]
fn import_tar_of_gnu_tar_output_extracts_to_the_same_tree() {
    let env = Env::new();
    env.init("repokey");
    make_tree(&env.path("src"), true, false);
    // PAX (nanosecond mtimes, xattrs) and GNU format (long names as ././@LongLink, whole seconds).
    gnu_tar(&["--xattrs", "--format=pax", "-cf", "pax.tar", "src"], env.dir.path());
    env.run(&["import-tar", &env.archive("pax"), &env.path("pax.tar").display().to_string()]).ok();
    env.extract_to("pax", "out-pax", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out-pax/src"));

    let gnu = env.path("gnu");
    make_tree(&gnu.join("src"), false, true);
    gnu_tar(&["--format=gnu", "-czf", "../gnu.tar.gz", "src"], &gnu);
    let r = env.run(&["import-tar", "--json", &env.archive("gnu"), &env.path("gnu.tar.gz").display().to_string()]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    // small, empty, big and the long-named file; their second names are hardlinks
    assert_eq!(v["archive"]["stats"]["nfiles"].as_u64(), Some(4), "{}", r.stdout);
    env.extract_to("gnu", "out-gnu", &[]).ok();
    assert_same_tree(&gnu.join("src"), &env.path("out-gnu/src"));
    // The content deduplicates against the first import: same data, no new data chunks.
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();

    // Streams from standard input too, with --timestamp.
    let tar = fs::File::open(env.path("pax.tar")).unwrap();
    let out = env
        .cmd()
        .args(["import-tar", "--timestamp", "2020-01-02T03:04:05", &env.archive("stdin"), "-"])
        .stdin(Stdio::from(tar))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = env.run(&["list", "--json", &env.repo_str()]).ok();
    assert!(list.stdout.contains("2020-01-02"), "{}", list.stdout);
}

#[test]
fn import_tar_refuses_bad_and_truncated_input_without_creating_an_archive() {
    let env = Env::new();
    env.init("none");
    make_tree(&env.path("src"), false, false);
    gnu_tar(&["-czf", "good.tar.gz", "src"], env.dir.path());
    let good = fs::read(env.path("good.tar.gz")).unwrap();
    fs::write(env.path("cut.tar.gz"), &good[..good.len() / 2]).unwrap();
    fs::write(env.path("junk.tar"), b"this is not a tar file at all, but it is long enough to look at. ".repeat(20))
        .unwrap();
    let r = env.run(&["import-tar", &env.archive("cut"), &env.path("cut.tar.gz").display().to_string()]).code(2);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    let r = env.run(&["import-tar", &env.archive("junk"), &env.path("junk.tar").display().to_string()]).code(2);
    assert!(r.stderr.contains("tar"), "{}", r.stderr);
    let r = env.run(&["import-tar", &env.archive("gone"), &env.path("missing.tar").display().to_string()]).code(2);
    assert!(r.stderr.contains("missing.tar"), "{}", r.stderr);
    // Cut exactly after a complete entry (header + padded data), before the next header: it still
    // parses as a tar, but without the end-of-archive block it must not pass for a whole one.
    let b = env.path("boundary");
    fs::create_dir_all(&b).unwrap();
    fs::write(b.join("a"), vec![7u8; 1000]).unwrap();
    fs::write(b.join("b"), vec![8u8; 1000]).unwrap();
    gnu_tar(&["--format=ustar", "-cf", "../whole.tar", "a", "b"], &b);
    let whole = fs::read(env.path("whole.tar")).unwrap();
    assert_eq!(&whole[..1], b"a", "first entry is a");
    fs::write(env.path("boundary.tar"), &whole[..512 + 1024]).unwrap();
    let r = env.run(&["import-tar", &env.archive("boundary"), &env.path("boundary.tar").display().to_string()]).code(2);
    assert!(r.stderr.contains("cut short") && r.stderr.lines().count() == 1, "{}", r.stderr);
    env.run(&["import-tar", &env.archive("whole"), &env.path("whole.tar").display().to_string()]).ok();
    env.run(&["delete", &env.archive("whole")]).ok();
    let list = env.run(&["list", "--short", &env.repo_str()]).ok();
    assert_eq!(list.stdout.trim(), "", "no archive from bad input");
    // A tar with a '..' entry imports the rest and warns (exit 1).
    let evil = env.path("evil");
    fs::create_dir_all(evil.join("a")).unwrap();
    fs::write(evil.join("a/ok"), b"fine").unwrap();
    gnu_tar(&["-cf", "../evil.tar", "--absolute-names", "a/ok", "a/../a/ok"], &evil);
    let r = env.run(&["import-tar", &env.archive("evil"), &env.path("evil.tar").display().to_string()]).code(1);
    assert!(r.stderr.contains(".."), "{}", r.stderr);
    let items = env.run(&["list", "--short", &env.archive("evil")]).ok();
    assert_eq!(items.stdout.trim(), "a/ok");
}

#[test]
fn a_whole_borg_repository_migrates_with_the_tools_script() {
    if !borg_installed() {
        return;
    }
    let env = Env::new();
    env.init("repokey");
    let borg_repo = env.path("borg");
    let borg = |args: &[&str]| env.borg(args);
    borg(&["init", "-e", "repokey", &borg_repo.display().to_string()]);
    let s = env.path("src");
    make_tree(&s, false, true);
    borg(&["create", "--timestamp", "2026-11-20T01:00:00", &format!("{}::night-1", borg_repo.display()), "src"]);
    fs::write(s.join("small"), b"second night\n").unwrap();
    fs::write(s.join("new"), xorshift(100_000, 9)).unwrap();
    crate::round_trip::set_mtime(&s.join("small"), 1_690_000_100, 0);
    crate::round_trip::set_mtime(&s.join("new"), 1_690_000_100, 0);
    crate::round_trip::set_mtime(&s, 1_690_000_100, 0);
    let second = snapshot(&s);
    borg(&["create", "--timestamp", "2026-11-21T01:00:00", &format!("{}::night-2", borg_repo.display()), "src"]);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/migrate-from-borg.sh");
    let run_script = || {
        Command::new("bash")
            .arg(&script)
            .arg(&borg_repo)
            .arg(env.repo())
            .current_dir(env.dir.path())
            .env("GARRET", bin())
            .env("GARRET_PASSPHRASE", PASSPHRASE)
            .env("GARRET_SECURITY_DIR", env.path("security"))
            .env("GARRET_KEYS_DIR", env.path("keys"))
            .env("BORG_PASSPHRASE", "borg pass")
            .env("BORG_BASE_DIR", env.path("borg-home"))
            .output()
            .unwrap()
    };
    let out = run_script();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 archive(s) migrated"));
    // Re-running skips what is there.
    let again = run_script();
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 archive(s) migrated, 2 already present"));

    // Each migrated archive extracts to exactly what borg itself extracts.
    for name in ["night-1", "night-2"] {
        let from_borg = env.path(&format!("borg-{name}"));
        fs::create_dir_all(&from_borg).unwrap();
        let out = Command::new("borg")
            .args(["extract", &format!("{}::{name}", borg_repo.display())])
            .current_dir(&from_borg)
            .env("BORG_PASSPHRASE", "borg pass")
            .env("BORG_BASE_DIR", env.path("borg-home"))
            .output()
            .unwrap();
        assert!(out.status.success());
        env.extract_to(name, &format!("garret-{name}"), &[]).ok();
        assert_same_tree(&from_borg.join("src"), &env.path(&format!("garret-{name}/src")));
    }
    assert_eq!(snapshot(&env.path("garret-night-2/src")), second);
    let list = env.run(&["list", "--json", &env.repo_str()]).ok();
    assert!(list.stdout.contains("2026-11-20") && list.stdout.contains("2026-11-21"), "{}", list.stdout);
}
