//! Restores the way admins do them: diff between archives, progress and JSON summaries, PATH
//! arguments that match nothing.

use crate::support::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

#[test]
fn diff_reports_exactly_the_changes_made() {
    let env = Env::new();
    env.init("none");
    let s = env.path("src");
    fs::create_dir_all(s.join("d")).unwrap();
    for f in ["same", "edit", "gone", "chmod", "touch"] {
        fs::write(s.join(f), format!("content of {f}")).unwrap();
    }
    // 12 MiB: at least three chunks whatever the repository's chunker seed (at most 4 MiB each),
    // so a one-byte change cannot touch all of them (at 3 MiB, about 1 % of seeds cut none)
    fs::write(s.join("big"), xorshift(12 << 20, 1)).unwrap();
    std::os::unix::fs::symlink("same", s.join("link")).unwrap();
    for e in walkdir::WalkDir::new(&s).contents_first(true) {
        crate::round_trip::set_mtime(e.unwrap().path(), 1_700_000_000, 0);
    }
    env.create_json("a", &["src"], &[]);
    fs::write(s.join("edit"), "new content of edit, longer").unwrap();
    fs::remove_file(s.join("gone")).unwrap();
    fs::write(s.join("d/new"), "new file").unwrap();
    fs::set_permissions(s.join("chmod"), fs::Permissions::from_mode(0o600)).unwrap();
    let mut big = xorshift(12 << 20, 1);
    big[2 << 20] ^= 1;
    fs::write(s.join("big"), &big).unwrap();
    fs::remove_file(s.join("link")).unwrap();
    std::os::unix::fs::symlink("edit", s.join("link")).unwrap();
    for f in ["same", "chmod", "link"] {
        crate::round_trip::set_mtime(&s.join(f), 1_700_000_000, 0);
    }
    crate::round_trip::set_mtime(&s.join("touch"), 1_700_000_500, 0);
    env.create_json("b", &["src"], &[]);
    let r = env.run(&["diff", "--json-lines", &env.archive("a"), "b"]).ok();
    let got: BTreeMap<String, Vec<String>> = changes(&r.stdout).into_iter().collect();
    let want: BTreeMap<String, Vec<String>> = [
        ("src/edit", vec!["modified", "mtime"]),
        ("src/gone", vec!["removed"]),
        ("src/d/new", vec!["added"]),
        ("src/chmod", vec!["mode"]),
        ("src/touch", vec!["mtime"]),
        ("src/big", vec!["modified", "mtime"]),
        ("src/link", vec!["target"]),
        // directories whose entries changed have new mtimes, which diff reports as borg does
        ("src", vec!["mtime"]),
        ("src/d", vec!["mtime"]),
    ]
    .into_iter()
    .map(|(p, k)| (p.to_string(), k.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(got, want, "{}", r.stdout);
    // times as ISO 8601 strings, as borg's
    let line = r.stdout.lines().find(|l| l.contains("src/touch")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["changes"][0]["old_mtime"], "2023-11-14T22:13:20.000000000Z", "{line}");
    assert_eq!(v["changes"][0]["new_mtime"], "2023-11-14T22:21:40.000000000Z", "{line}");
    // the big file's change is one chunk, not the whole file
    let line = r.stdout.lines().find(|l| l.contains("src/big")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let added = v["changes"][0]["added"].as_u64().unwrap();
    assert!(added <= 8 << 20, "at most the changed chunk and the one after it: {line}");
    // --content-only: no mode or mtime changes
    let r = env.run(&["diff", "--content-only", "--json-lines", &env.archive("a"), "b"]).ok();
    let want = one_each(&[
        ("src/big", "modified"),
        ("src/d/new", "added"),
        ("src/edit", "modified"),
        ("src/gone", "removed"),
        ("src/link", "target"),
    ]);
    assert_eq!(changes(&r.stdout), want, "{}", r.stdout);
    // path filter and text output
    let r = env.run(&["diff", &env.archive("a"), "b", "src/d"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(lines[0].starts_with("[mtime: ") && lines[0].ends_with("] src/d"), "{}", lines[0]);
    assert!(lines[1].contains("added") && lines[1].ends_with(" src/d/new"), "{}", lines[1]);
}

/// diff reads the two archives side by side: it must match paths however far apart the two item
/// orders are, here whole source trees given in the opposite order, with files added and removed
/// at the start, middle and end of each.
#[test]
fn diff_matches_paths_whatever_the_order_of_the_archives() {
    let env = Env::new();
    env.init("none");
    for t in ["x", "y"] {
        fs::create_dir_all(env.path(t)).unwrap();
        for i in 0..40 {
            fs::write(env.path(&format!("{t}/f{i:02}")), format!("{t} {i}")).unwrap();
        }
    }
    for e in walkdir::WalkDir::new(env.path("")).min_depth(1).contents_first(true) {
        crate::round_trip::set_mtime(e.unwrap().path(), 1_700_000_000, 0);
    }
    env.create_json("a", &["x", "y"], &[]);
    let r = env.run(&["diff", "--json-lines", &env.archive("a"), "a"]).ok();
    assert_eq!(r.stdout, "", "an archive against itself");
    for gone in ["x/f00", "x/f20", "y/f39"] {
        fs::remove_file(env.path(gone)).unwrap();
    }
    for new in ["x/f99", "y/a00", "y/f20a"] {
        fs::write(env.path(new), "new").unwrap();
    }
    fs::write(env.path("y/f05"), "y 5, edited").unwrap();
    for e in walkdir::WalkDir::new(env.path("")).min_depth(1).contents_first(true) {
        crate::round_trip::set_mtime(e.unwrap().path(), 1_700_000_000, 0);
    }
    env.create_json("b", &["y", "x"], &[]);
    let r = env.run(&["diff", "--json-lines", &env.archive("a"), "b"]).ok();
    let want = [
        ("x/f00", "removed"),
        ("x/f20", "removed"),
        ("x/f99", "added"),
        ("y/a00", "added"),
        ("y/f05", "modified"),
        ("y/f20a", "added"),
        ("y/f39", "removed"),
    ];
    assert_eq!(changes(&r.stdout), one_each(&want), "{}", r.stdout);
    // and the other way round
    let r = env.run(&["diff", "--json-lines", &env.archive("b"), "a"]).ok();
    let swap = |k| match k {
        "added" => "removed",
        "removed" => "added",
        k => k,
    };
    let back: Vec<_> = want.iter().map(|&(p, k)| (p, swap(k))).collect();
    assert_eq!(changes(&r.stdout), one_each(&back), "{}", r.stdout);
}

/// `diff --json-lines` output as (path, change types) in output order.
fn changes(stdout: &str) -> Vec<(String, Vec<String>)> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let kinds =
                v["changes"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap().to_string()).collect();
            (v["path"].as_str().unwrap().to_string(), kinds)
        })
        .collect()
}

/// Expected [`changes`]: one change type per path.
fn one_each(pairs: &[(&str, &str)]) -> Vec<(String, Vec<String>)> {
    pairs.iter().map(|(p, k)| (p.to_string(), vec![k.to_string()])).collect()
}

#[test]
fn extract_progress_shows_percent_of_the_archive_and_stays_off_by_default() {
    let env = Env::new();
    env.init("none");
    let s = env.path("src");
    fs::create_dir_all(&s).unwrap();
    fs::write(s.join("a"), xorshift(2 << 20, 5)).unwrap();
    fs::write(s.join("b"), xorshift(1 << 20, 6)).unwrap();
    env.create_json("a", &["src"], &[]);
    // Without a terminal and without -p, a cron restore prints nothing.
    let quiet = env.extract_to("a", "quiet", &[]).ok();
    assert_eq!(quiet.stderr, "");
    let r = env.extract_to("a", "loud", &["-p"]).ok();
    let last = r.stderr.lines().last().unwrap_or("");
    assert!(last.contains("100.0%") && last.contains("2 files"), "{}", r.stderr);
    assert_same_tree(&s, &env.path("loud/src"));
    let r = env.extract_to("a", "part", &["-p", "src/b"]).ok();
    assert!(r.stderr.contains("1 files") && r.stderr.contains("written"), "{}", r.stderr);
}

#[test]
fn extract_json_summarizes_the_restore_and_its_damage() {
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src/d")).unwrap();
    fs::write(env.path("src/a"), b"hello").unwrap();
    let big = xorshift(300_000, 7);
    fs::write(env.path("src/b"), &big).unwrap();
    env.create_json("x", &["src"], &[]);
    let r = env.extract_to("x", "out", &["--json"]).ok();
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(j["archive"], "x");
    assert_eq!(j["bytes"], 300_005);
    assert_eq!(j["data_errors"], 0);
    assert_eq!(j["warnings"], false);
    assert!(j["items"].as_u64().unwrap() >= 3, "{j}");
    assert_eq!(fs::read(env.path("out/src/b")).unwrap(), big);
    // --json and --stdout both want standard output
    let r = env.run(&["extract", "--json", "--stdout", &env.archive("x")]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // the pack holding src/b's data is lost: exit 2, and the summary says so
    let pack = {
        let repo = open_repo(&env);
        let it = items(&repo, "x").into_iter().find(|i| i.path == b"src/b").unwrap();
        let loc = repo.index().lookup(&it.chunks[0].0).unwrap().unwrap();
        garret::repository::Repository::pack_key(&loc.pack)
    };
    fs::remove_file(env.repo().join(pack)).unwrap();
    let r = env.extract_to("x", "out2", &["--json"]).code(2);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert!(j["data_errors"].as_u64().unwrap() >= 1, "{j}");
    assert!(r.stderr.contains("could not be restored"), "{}", r.stderr);
}

/// A file with millions of chunks (here a sparse 128 MiB image cut in 64-byte blocks: 2.1 million
/// chunk references, an 84 MB item) is one item spread over thousands of tree chunks. Archives of
/// such files used to be unreadable ("an item larger than 64 MiB", after minutes of decoding):
/// now list, check, diff, extract and a files-cache re-run all work, and the restore is exact.
#[test]
fn a_file_with_millions_of_chunks_round_trips() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    env.init("repokey");
    let s = env.path("src");
    fs::create_dir_all(&s).unwrap();
    let img = s.join("disk.img");
    let f = fs::File::create(&img).unwrap();
    f.set_len(128 << 20).unwrap();
    drop(f);
    let mut f = fs::OpenOptions::new().append(true).open(&img).unwrap();
    std::io::Write::write_all(&mut f, &xorshift(100_000, 9)).unwrap();
    drop(f);
    fs::write(s.join("after"), b"the item after the big one").unwrap();
    let want = sha(&img);
    let json = env.create_json("a", &["src"], &["--chunker-params", "fixed,64"]);
    assert_eq!(json["archive"]["stats"]["nfiles"], 2, "{json}");
    let list = env.run(&["list", "--format", "{size} {path}{NL}", &env.archive("a")]).ok();
    assert!(list.stdout.contains(&format!("{} src/disk.img", (128 << 20) + 100_000)), "{}", list.stdout);
    assert!(list.stdout.contains("26 src/after"), "{}", list.stdout);
    env.run(&["check", &env.repo_str()]).ok();
    // The files cache hands the 2.1 million references to the next archive unread.
    env.create_json("b", &["src"], &["--chunker-params", "fixed,64"]);
    let d = env.run(&["diff", &env.archive("a"), "b"]).ok();
    assert_eq!(d.stdout, "", "{}", d.stdout);
    fs::create_dir_all(env.path("out")).unwrap();
    env.extract_to("b", "out", &[]).ok();
    let back = env.path("out/src/disk.img");
    assert_eq!(sha(&back), want);
    assert!(fs::metadata(&back).unwrap().blocks() * 512 < 4 << 20, "the holes are kept");
    assert_eq!(fs::read(env.path("out/src/after")).unwrap(), b"the item after the big one");
    let tar = env.path("a.tar");
    env.run(&["export-tar", &env.archive("a"), tar.to_str().unwrap()]).ok();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("tar -xOf '{}' src/disk.img | sha256sum", tar.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).split(' ').next().unwrap(), want, "export-tar");
}

/// A PATH that matches nothing in the archive (a typo, a path from another archive) is a
/// warning naming it, exit 1, as borg's "never matched": extract, extract --stdout and
/// export-tar still do the rest; recreate, which keeps only the PATHs given, leaves the archive
/// as it was instead of emptying it.
#[test]
fn a_path_that_matches_nothing_is_a_warning() {
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src/redmine")).unwrap();
    fs::write(env.path("src/redmine/db.sql"), "dump").unwrap();
    fs::write(env.path("src/other"), "other").unwrap();
    env.create_json("a", &["src"], &[]);
    let warned = |r: Run, what: &str| {
        assert_eq!(r.code, 1, "{}", r.stderr);
        let line = format!("garret: warning: src/redmin: no such path in the archive, {what}; `garret list REPO::NAME` shows the archive's paths\n");
        assert_eq!(r.stderr, line);
        r
    };
    warned(env.extract_to("a", "out", &["src/redmin", "src/other"]), "nothing restored for it");
    assert_eq!(fs::read(env.path("out/src/other")).unwrap(), b"other", "the other PATH is restored");
    assert!(!env.path("out/src/redmine").exists());
    let r = warned(
        env.run(&["extract", "--stdout", &env.archive("a"), "src/redmin", "src/redmine/db.sql"]),
        "nothing written for it",
    );
    assert_eq!(r.stdout, "dump");
    warned(env.run(&["export-tar", &env.archive("a"), "a.tar", "src/redmin"]), "nothing exported for it");
    let before = env.run(&["list", "--short", &env.archive("a")]).ok().stdout;
    warned(env.run(&["recreate", &env.archive("a"), "src/redmin"]), "so archive a is left unchanged");
    assert_eq!(env.run(&["list", "--short", &env.archive("a")]).ok().stdout, before);
    env.extract_to("a", "out2", &["src/redmine"]).ok();
    env.run(&["recreate", &env.archive("a"), "src/redmine"]).ok();
    assert_eq!(env.run(&["list", "--short", &env.archive("a")]).ok().stdout, "src/redmine\nsrc/redmine/db.sql\n");
}

/// `extract --list` names each item as borg's does: the path alone, one per line on stderr (the
/// same set of lines as borg's for the same tree), with or without --dry-run.
#[test]
fn extract_list_shows_paths_as_borg() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir_all(env.path("src/d")).unwrap();
    fs::write(env.path("src/a"), b"a").unwrap();
    fs::write(env.path("src/d/b"), b"b").unwrap();
    env.create_json("x", &["src"], &[]);
    let sorted = |s: &str| {
        let mut l: Vec<String> = s.lines().map(String::from).collect();
        l.sort();
        l
    };
    let want = ["src", "src/a", "src/d", "src/d/b"];
    let r = env.run(&["extract", "--dry-run", "--list", &env.archive("x")]).ok();
    assert_eq!(sorted(&r.stderr), want, "{}", r.stderr);
    fs::create_dir(env.path("out")).unwrap();
    let r = env.run_in(&env.path("out"), &["extract", "--list", &env.archive("x")]).ok();
    assert_eq!(sorted(&r.stderr), want, "{}", r.stderr);
    assert_eq!(fs::read(env.path("out/src/d/b")).unwrap(), b"b");
    if borg_installed() {
        let repo = env.path("borg").display().to_string();
        env.borg(&["init", "-e", "repokey", &repo]);
        env.borg(&["create", &format!("{repo}::x"), "src"]);
        let o = std::process::Command::new("borg")
            .args(["extract", "--dry-run", "--list", &format!("{repo}::x")])
            .current_dir(env.dir.path())
            .env("BORG_PASSPHRASE", "borg pass")
            .env("BORG_BASE_DIR", env.path("borg-home"))
            .output()
            .unwrap();
        assert_eq!(sorted(&String::from_utf8_lossy(&o.stderr)), want);
    }
}
