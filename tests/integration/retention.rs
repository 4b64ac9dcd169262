//! Retention: prune with borg's semantics (checked against borg itself when installed), delete,
//! rename, compact, and crashes during all of them.

use crate::support::*;
use std::collections::BTreeSet;
use std::fs;

fn names(env: &Env) -> Vec<String> {
    env.run(&["list", "--short", &env.repo_str()]).ok().stdout.lines().map(String::from).collect()
}

/// Archive times (UTC, borg's --timestamp format): same-day pairs, consecutive days, gaps of
/// months, a year boundary and an ISO-week boundary.
const TIMES: &[&str] = &[
    "2024-12-30T10:00:00",
    "2025-01-02T10:00:00",
    "2025-03-15T08:00:00",
    "2025-06-01T23:30:00",
    "2025-06-02T00:30:00",
    "2025-09-20T12:00:00",
    "2025-12-31T23:59:00",
    "2026-01-01T00:01:00",
    "2026-02-10T04:00:00",
    "2026-02-10T22:00:00",
    "2026-05-05T05:05:05",
    "2026-08-01T06:00:00",
    "2026-10-26T03:00:00",
    "2026-10-27T03:00:00",
    "2026-11-01T01:30:00",
    "2026-11-01T03:00:00",
    "2026-11-09T03:00:00",
    "2026-11-15T03:00:00",
    "2026-11-16T03:00:00",
    "2026-11-17T03:00:00",
    "2026-11-18T03:00:00",
    "2026-11-19T03:00:00",
    "2026-11-20T03:00:00",
];

const POLICIES: &[&[&str]] = &[
    &["--keep-daily", "7"],
    &["--keep-weekly", "4"],
    &["--keep-monthly", "6", "--keep-yearly", "2"],
    &["--keep-last", "3", "--keep-daily", "2", "--keep-weekly", "2", "--keep-monthly", "-1"],
    &["--keep-hourly", "5", "--keep-yearly", "-1"],
    &["--keep-daily", "7", "--keep-weekly", "52", "--keep-monthly", "12", "--keep-yearly", "3"],
    &["--keep-within", "3w", "--keep-monthly", "2"],
    &["--keep-daily", "30"],
    &["--keep-minutely", "4", "--keep-secondly", "1"],
    &["--prefix", "db-", "--keep-daily", "3"],
    &["-a", "files-*", "--keep-weekly", "3"],
];

fn archive_name(i: usize) -> String {
    format!("{}-{i:02}", if i % 3 == 0 { "db" } else { "files" })
}

/// The archives prune keeps, parsed from `--list --dry-run` output (borg's format).
fn kept(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("Keeping archive"))
        .filter_map(|l| l.split("):").nth(1).and_then(|r| r.split_whitespace().next()).map(String::from))
        .collect()
}

#[test]
fn prune_keeps_exactly_what_borg_keeps() {
    let env = Env::new();
    env.init("none");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), b"x").unwrap();
    for (i, t) in TIMES.iter().enumerate() {
        env.run(&["create", "--timestamp", t, &env.archive(&archive_name(i)), "src"]).ok();
    }
    let have_borg = std::process::Command::new("borg").arg("--version").output().is_ok_and(|o| o.status.success());
    let borg_repo = env.path("borg-repo");
    let borg = |args: &[&str]| {
        let o = std::process::Command::new("borg")
            .args(args)
            .env("BORG_BASE_DIR", env.path("borg-base"))
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
            .env("TZ", "America/New_York")
            .current_dir(env.dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "borg {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    if have_borg {
        borg(&["init", "-e", "none", &borg_repo.display().to_string()]);
        for (i, t) in TIMES.iter().enumerate() {
            borg(&["create", "--timestamp", t, &format!("{}::{}", borg_repo.display(), archive_name(i)), "src"]);
        }
    } else {
        eprintln!(
            "SKIP part of prune_keeps_exactly_what_borg_keeps: borg is not installed (apt-get install borgbackup)"
        );
    }
    for policy in POLICIES {
        let mut args = vec!["prune", "--dry-run", "--list"];
        args.extend_from_slice(policy);
        let repo = env.repo_str();
        args.push(&repo);
        let r = env.cmd().env("TZ", "America/New_York").args(&args).output().unwrap();
        assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
        let ours = kept(&String::from_utf8_lossy(&r.stderr));
        assert!(!ours.is_empty(), "{policy:?}");
        if have_borg {
            let mut bargs = vec!["prune", "--dry-run", "--list"];
            bargs.extend_from_slice(policy);
            let br = borg_repo.display().to_string();
            bargs.push(&br);
            let theirs = kept(&borg(&bargs));
            assert_eq!(ours, theirs, "policy {policy:?}: garret keeps {ours:?}, borg keeps {theirs:?}");
        }
    }
    // the seed cron line, for real this time
    let before = names(&env);
    env.run(&[
        "prune",
        "--verbose",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "52",
        "--keep-monthly",
        "12",
        "--keep-yearly",
        "3",
        &env.repo_str(),
    ])
    .ok();
    let after = names(&env);
    assert!(after.len() < before.len() && !after.is_empty());
}

#[test]
fn prune_bad_input_changes_nothing() {
    let env = Env::new();
    env.init("none");
    fs::create_dir(env.path("src")).unwrap();
    env.create_json("a", &["src"], &[]);
    env.create_json("b", &["src"], &[]);
    let before = immutable_files(&env.repo());
    for args in [
        vec!["prune"],
        vec!["prune", "--keep-within", "2x"],
        vec!["prune", "--keep-within", "0d"],
        vec!["prune", "--keep-daily", "-5"],
        vec!["prune", "--keep-daily", "x"],
        vec!["prune", "--keep-last", "1", "-a", "["],
    ] {
        let mut a = args.clone();
        let repo = env.repo_str();
        a.push(&repo);
        let r = env.run(&a);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(
            r.stderr
                .trim()
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with("For more") && !l.starts_with("Usage"))
                .count(),
            1,
            "{args:?}: {}",
            r.stderr
        );
    }
    // an unknown name is borg's warning, and there is nothing else to delete
    let r = env.run(&["delete", &env.archive("nope")]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let r = env.run(&["delete", &env.repo_str()]);
    assert_eq!(r.code, 2, "deleting a whole repository is refused");
    let r = env.run(&["delete", "--sort-by", "name", &env.repo_str()]);
    assert_eq!(r.code, 2, "sorting alone selects every archive: refused too");
    assert_eq!(immutable_files(&env.repo()), before);
    assert_eq!(names(&env), vec!["a", "b"]);
}

#[test]
fn delete_rename_and_deletions_survive_index_rebuild() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), b"data").unwrap();
    for n in ["db-1", "db-2", "files-1", "files-2"] {
        env.create_json(n, &["src"], &[]);
    }
    let deleted = |r: &Run| -> (Vec<String>, bool) {
        let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
        let n = j["deleted"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap().to_string()).collect();
        (n, j["dry_run"].as_bool().unwrap())
    };
    let r = env.run(&["delete", "--dry-run", "--json", "-a", "db-*", &env.repo_str()]).ok();
    assert_eq!(deleted(&r), (vec!["db-1".to_string(), "db-2".to_string()], true));
    assert_eq!(names(&env).len(), 4);
    let r = env.run(&["delete", "--json", "-a", "db-*", &env.repo_str()]).ok();
    assert_eq!(deleted(&r), (vec!["db-1".to_string(), "db-2".to_string()], false));
    assert_eq!(names(&env), vec!["files-1", "files-2"]);
    // borg's --first/--last select by archive time
    let r = env.run(&["delete", "--dry-run", "--json", "--first", "1", &env.repo_str()]).ok();
    assert_eq!(deleted(&r), (vec!["files-1".to_string()], true));
    let r = env.run(&["delete", "--dry-run", "--json", "--last", "1", "-P", "files-", &env.repo_str()]).ok();
    assert_eq!(deleted(&r), (vec!["files-2".to_string()], true));
    env.run(&["delete", &env.archive("files-1")]).ok();
    let r = env.run(&["rename", "--json", &env.archive("files-2"), "renamed"]).ok();
    assert_eq!(r.stdout.trim(), r#"{"new":"renamed","old":"files-2"}"#);
    assert_eq!(names(&env), vec!["renamed"]);
    let r = env.run(&["rename", &env.archive("renamed"), "bad/name"]);
    assert_eq!(r.code, 2);
    // the index is a cache: rebuilding it resurrects nothing
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = fs::remove_file(env.repo().join(f));
    }
    assert_eq!(names(&env), vec!["renamed"]);
    env.extract_to("renamed", "out", &[]).ok();
    assert_eq!(fs::read(env.path("out/src/f")).unwrap(), b"data");
    let info = env.run(&["info", "--json", &env.archive("renamed")]).ok().stdout;
    assert!(info.contains("\"name\": \"renamed\""), "{info}");
}

/// The tree of night `day`: a stable part, a part that changes every night, and files that come
/// and go.
fn night_tree(root: &std::path::Path, day: usize) {
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root.join("stable")).unwrap();
    fs::create_dir_all(root.join("daily")).unwrap();
    fs::write(root.join("stable/base.bin"), xorshift(3 << 20, 1)).unwrap();
    fs::write(root.join("daily/dump.bin"), xorshift(2 << 20, 1000 + day as u64)).unwrap();
    fs::write(root.join(format!("daily/log-{day}.txt")), format!("night {day}\n").repeat(1000)).unwrap();
    // shared by two consecutive nights: pruning one leaves live data in its pack (a rewrite)
    fs::write(root.join("daily/pair.bin"), xorshift(1 << 20, 5000 + (day / 2) as u64)).unwrap();
    // fixed times, so a regenerated tree compares equal to the archived one
    for e in walkdir::WalkDir::new(root).contents_first(true) {
        crate::round_trip::set_mtime(e.unwrap().path(), 1_790_000_000 + day as i64, 0);
    }
}

#[test]
fn thirty_nights_pruned_to_seven_are_as_small_as_a_fresh_repository() {
    let env = Env::new();
    env.init("repokey");
    for day in 1..=30 {
        night_tree(&env.path("src"), day);
        let ts = format!("2026-10-{day:02}T03:00:00");
        env.run(&["create", "--timestamp", &ts, &env.archive(&format!("night-{day:02}")), "src"]).ok();
    }
    let r = env.run(&["prune", "--keep-daily", "7", "--compact", "--json", &env.repo_str()]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["compact"]["packs_deleted"].as_u64().unwrap() > 0);
    // The packs it rewrote stay, condemned, until a compact after the grace period (0 here).
    assert!(v["compact"]["packs_condemned"].as_u64().unwrap() > 0, "{}", v["compact"]);
    let r = env.run(&["compact", "--grace", "0", "--json", &env.repo_str()]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["stats"]["packs_condemned"], 0, "{}", v["stats"]);
    let kept = names(&env);
    assert_eq!(kept, (24..=30).map(|d| format!("night-{d:02}")).collect::<Vec<_>>());
    // a fresh repository holding only the kept nights
    let fresh = env.path("fresh");
    env.run(&["init", "-e", "repokey", "--kdf-memory", "64", &fresh.display().to_string()]).ok();
    for day in 24..=30 {
        night_tree(&env.path("src"), day);
        env.run(&["create", &format!("{}::n{day}", fresh.display()), "src"]).ok();
    }
    let (ours, theirs) = (du(&env.repo().join("data")), du(&fresh.join("data")));
    assert!((ours as f64) < theirs as f64 * 1.10, "pruned+compacted {ours} bytes vs fresh {theirs}");
    // and every kept night still restores
    night_tree(&env.path("src"), 27);
    env.extract_to("night-27", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
}

#[test]
fn compact_rewrites_only_what_the_threshold_asks() {
    let env = Env::new();
    env.init("none");
    fs::create_dir(env.path("src")).unwrap();
    // one pack per archive: 6 MiB kept + 2 MiB that only archive "b" has
    fs::write(env.path("src/keep"), xorshift(6 << 20, 1)).unwrap();
    env.create_json("a", &["src"], &[]);
    fs::write(env.path("src/extra"), xorshift(2 << 20, 2)).unwrap();
    env.create_json("b", &["src"], &[]);
    let compact = |threshold: &str, dry: bool| -> serde_json::Value {
        let repo = env.repo_str();
        let mut args = vec!["compact", "--json", "--threshold", threshold, &repo];
        if dry {
            args.insert(1, "--dry-run");
        }
        let r = env.run(&args).ok();
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()["stats"].clone()
    };
    // Nothing deleted: nothing to free, whatever the threshold (pack headers are not garbage).
    let s = compact("0", false);
    assert_eq!(
        (&s["packs_deleted"], &s["packs_rewritten"], &s["garbage_kept"]),
        (&0.into(), &0.into(), &0.into()),
        "{s}"
    );
    env.run(&["delete", &env.archive("b")]).ok();
    // b's own pack holds its extra file and tree: wholly garbage, deleted at any threshold
    let s = compact("100", true);
    assert_eq!(s["packs_rewritten"], 0);
    assert!(s["packs_deleted"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["bytes_rewritten"], 0);
    let s = compact("100", false);
    assert_eq!(s["bytes_rewritten"], 0, "{s}");
    assert!(s["bytes_freed"].as_u64().unwrap() >= 2 << 20, "{s}");
    let s = compact("0", false);
    assert_eq!(s["packs_deleted"], 0);
    env.extract_to("a", "out", &[]).ok();
    assert_eq!(fs::read(env.path("out/src/keep")).unwrap(), xorshift(6 << 20, 1));
}

/// Crash points of prune + compact (each injected once), then real kill -9 at several moments:
/// kept archives always survive intact and the next run completes the work.
#[test]
fn crashes_during_prune_and_compact_never_lose_a_kept_archive() {
    let mut points: Vec<(Option<&str>, u64)> = [
        "before-manifest",
        "manifest-written",
        "object-synced:1",
        "object-synced:2",
        "pack-written:1",
        "pack-indexed:1",
        "compact-rewritten",
        "compact-unindexed",
        "compact-deleted:1",
        "compact-deleted:2",
        "compact-deleted:3",
        "compact-deleted:4",
        "compact-deleted:5",
        "compact-deleted:6",
        "compact-deleted:7",
    ]
    .iter()
    .map(|s| (Some(*s), 0))
    .collect();
    points.extend([5u64, 15, 30, 60, 120].iter().map(|ms| (None, *ms)));
    let env = Env::new();
    env.init("repokey");
    let mut day = 0;
    let mut crashed = 0;
    for (site, kill_ms) in &points {
        // four more nights, then prune to the last 3 and compact, interrupted
        for _ in 0..4 {
            day += 1;
            night_tree(&env.path("src"), day);
            // distinct seconds: keep-last is borg's keep-secondly
            let ts = format!("2026-09-{:02}T{:02}:00:00", 1 + day / 24, day % 24);
            env.run(&["create", "--timestamp", &ts, &env.archive(&format!("night-{day:03}")), "src"]).ok();
        }
        let repo = env.repo_str();
        let args = ["prune", "--keep-last", "3", "--compact", &repo];
        match site {
            Some(site) => {
                let r = env.cmd().env("GARRET_CRASH_AT", site).args(args).output().unwrap();
                if r.status.code().is_none() {
                    crashed += 1;
                } else {
                    eprintln!("crash point {site} not reached");
                }
            }
            None => {
                let mut child = env.cmd().args(args).stderr(std::process::Stdio::null()).spawn().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(*kill_ms));
                let _ = child.kill();
                if !child.wait().unwrap().success() {
                    crashed += 1;
                }
            }
        }
        // every archive the manifest lists restores exactly (the newest three at least)
        let listed = names(&env);
        assert!(listed.len() >= 3, "{site:?}: {listed:?}");
        for name in listed.iter().rev().take(3) {
            let d: usize = name.trim_start_matches("night-").parse().unwrap();
            night_tree(&env.path("src"), d);
            let out = format!("out-{d}");
            env.extract_to(name, &out, &[]).ok();
            assert_same_tree(&env.path("src"), &env.path(&out).join("src"));
            fs::remove_dir_all(env.path(&out)).unwrap();
        }
        // the interrupted work completes on the next run
        env.run(&["prune", "--keep-last", "3", "--compact", &env.repo_str()]).ok();
        assert_eq!(names(&env).len(), 3);
    }
    assert!(crashed >= 18, "only {crashed} of {} crash points were reached", points.len());
    // nothing is left that compact would still free
    let r = env.run(&["compact", "--json", "--dry-run", &env.repo_str()]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["stats"]["packs_deleted"], 0, "{v}");
}

/// Pack files under data/ (relative keys).
fn data_packs(env: &Env) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for d in fs::read_dir(env.repo().join("data")).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            out.insert(f.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// A reader that located its blobs just before a compact in another process moved them and
/// deleted their pack reads them from their new pack (the look-up-again path), at exactly that
/// moment: the reader (export-tar) is paused by a test hook between locating and reading. Without
/// the look-up-again path this test fails with "No such file or directory" (checked).
#[test]
fn a_read_located_before_a_compact_moved_its_blobs_still_succeeds() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    let big = xorshift(3 << 20, 31);
    fs::write(env.path("src/big"), &big).unwrap();
    fs::write(env.path("src/gone"), xorshift(2 << 20, 32)).unwrap();
    env.create_json("a0", &["src"], &[]);
    fs::remove_file(env.path("src/gone")).unwrap();
    env.create_json("a1", &["src"], &[]);
    env.run(&["delete", &env.archive("a0")]).ok();
    let before = data_packs(&env);

    let (child, flag) = env.spawn_paused("blobs-located", &["export-tar", &env.archive("a1"), "out.tar"]);
    // The reader has located its blobs; now a compact moves them and deletes their old pack.
    env.run(&["compact", &env.repo_str()]).ok();
    let after = data_packs(&env);
    assert!(before.difference(&after).count() > 0, "compact deleted no pack: the test proves nothing");
    fs::remove_file(&flag).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mut tar = tar::Archive::new(fs::File::open(env.path("out.tar")).unwrap());
    let mut got = None;
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().as_os_str() == "src/big" {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut b).unwrap();
            got = Some(b);
        }
    }
    assert!(got.as_deref() == Some(&big[..]), "src/big is missing from the export or differs");
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
}

/// `list` and `info` take borg's archive filters and `list` borg's `--format`, so that scripts
/// written for borg (`borg list --last 1 --format '{archive}'`) keep working.
#[test]
fn list_and_info_select_and_format_archives_like_borg() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), b"twelve bytes").unwrap();
    std::os::unix::fs::symlink("f", env.path("src/l")).unwrap();
    // created out of time order: the listing is by archive time, not by creation
    for (name, t) in
        [("db-2", "2026-11-24T03:00:00"), ("projects-1", "2026-11-23T01:00:00"), ("db-1", "2026-11-22T03:00:00")]
    {
        env.run(&["create", "--timestamp", t, &env.archive(name), "src"]).ok();
    }
    let repo = env.repo_str();
    let lines = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["list"];
        a.extend_from_slice(args);
        a.push(&repo);
        env.run(&a).ok().stdout.lines().map(String::from).collect()
    };
    assert_eq!(lines(&["--short"]), ["db-1", "projects-1", "db-2"]);
    assert_eq!(lines(&["--short", "-P", "db-", "--last", "1"]), ["db-2"]);
    assert_eq!(lines(&["--short", "--glob-archives", "projects-*"]), ["projects-1"]);
    assert_eq!(lines(&["--short", "--sort-by", "name", "--first", "2"]), ["db-1", "db-2"]);
    assert_eq!(
        lines(&["--format", "{archive:<12}|{archive:.4}|{comment}{NL}", "--last", "2"]),
        ["projects-1  |proj|", "db-2        |db-2|"]
    );
    let items = env.run(&["list", "--format", "{type} {size:>4} {path}{extra}{NL}", &env.archive("db-1")]).ok();
    assert_eq!(
        items.stdout, "d    0 src\n-   12 src/f\nl    1 src/l -> f\n",
        "a symlink shows its target's length, as ls -l"
    );
    let info = env.run(&["info", "--json", "--last", "2", &repo]).ok();
    let v: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
    let shown: Vec<&str> = v["archives"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(shown, ["projects-1", "db-2"]);
    assert_eq!(v["archives"][1]["stats"]["nfiles"], 1);
    let text = env.run(&["info", "-P", "db-", &repo]).ok();
    assert_eq!(text.stdout.matches("Archive name: db-").count(), 2);
    // bad input: one line, exit 2
    for args in [
        vec!["list", "--format", "{bogus}", &repo],
        vec!["list", "--sort-by", "size", &repo],
        vec!["list", "--last", "1", &env.archive("db-1")],
        vec!["info", "-P", "db-", "-a", "db-*", &repo],
    ] {
        let r = env.run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
    }
}
