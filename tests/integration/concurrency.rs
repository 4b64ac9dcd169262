//! Concurrent runs against one repository: writers queue on the lock (`--lock-wait`), readers run
//! beside them without the lock, and none of them loses, corrupts or half-shows an archive.

use crate::support::*;
use std::fs;
use std::process::{Child, Command, Stdio};

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.cmd().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn garret")
}

#[test]
fn writers_and_readers_at_once_keep_every_archive_whole() {
    let env = Env::new();
    env.init("repokey");
    crate::round_trip::build_tree(&env.path("base"), false);
    env.create_json("base", &["base"], &[]);
    // Four sources that share 12 MiB (stored by whichever writer gets there first) and each hold
    // 12 MiB and a directory of small files of their own.
    let shared = xorshift(12 << 20, 1);
    for i in 0..4u64 {
        let src = env.path(&format!("src{i}"));
        fs::create_dir_all(src.join("small")).unwrap();
        fs::write(src.join("shared.bin"), &shared).unwrap();
        fs::write(src.join("own.bin"), xorshift(12 << 20, 10 + i)).unwrap();
        for f in 0..200 {
            fs::write(src.join(format!("small/f{f}")), format!("source {i} file {f}\n").repeat(f + 1)).unwrap();
        }
    }
    for v in ["victim-1", "victim-2", "victim-3"] {
        env.create_json(v, &["src0/small"], &[]);
    }
    let repo = env.repo_str();
    let wait = ["--lock-wait", "600"];
    let mut writers: Vec<(String, Child)> = Vec::new();
    for i in 0..4 {
        let (a, s) = (env.archive(&format!("c{i}")), format!("src{i}"));
        writers.push((format!("create c{i}"), spawn(&env, &[&wait[..], &["create", &a, &s]].concat())));
    }
    let prune = ["prune", "--keep-last", "1", "--glob-archives", "victim-*", &repo];
    writers.push(("prune".into(), spawn(&env, &[&wait[..], &prune].concat())));
    writers.push(("compact".into(), spawn(&env, &[&wait[..], &["compact", &repo]].concat())));
    let rename = ["rename", &env.archive("victim-3"), "renamed"];
    writers.push(("rename".into(), spawn(&env, &[&wait[..], &rename].concat())));

    // Readers while the writers run: every listing shows `base`, and every restore of it is exact.
    let mut rounds = 0;
    loop {
        let running = writers.iter_mut().filter_map(|(_, c)| c.try_wait().unwrap().is_none().then_some(())).count();
        let r = env.run(&["list", "--short", &repo]).ok();
        assert!(r.stdout.lines().any(|l| l == "base"), "round {rounds}: {}", r.stdout);
        let out = format!("out{rounds}");
        env.extract_to("base", &out, &[]).ok();
        assert_same_tree(&env.path("base"), &env.path(&out).join("base"));
        fs::remove_dir_all(env.path(&out)).unwrap();
        rounds += 1;
        if running == 0 {
            break;
        }
    }
    assert!(rounds >= 2, "the readers never overlapped the writers");
    for (what, c) in writers {
        let o = c.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{what}: {}", String::from_utf8_lossy(&o.stderr));
    }

    let r = env.run(&["list", "--short", &repo]).ok();
    let mut names: Vec<&str> = r.stdout.lines().collect();
    names.sort_unstable();
    // prune ran after the rename (it kept the newest victim left, victim-2) or before it
    let kept = match (names.contains(&"renamed"), names.contains(&"victim-2")) {
        (true, true) => vec!["base", "c0", "c1", "c2", "c3", "renamed", "victim-2"],
        (true, false) => vec!["base", "c0", "c1", "c2", "c3", "renamed"],
        _ => vec!["base", "c0", "c1", "c2", "c3", "victim-3"],
    };
    assert_eq!(names, kept, "{}", r.stdout);
    env.run(&["check", "--verify-data", &repo]).ok();
    for i in 0..4 {
        let out = format!("restored{i}");
        env.extract_to(&format!("c{i}"), &out, &[]).ok();
        assert_same_tree(&env.path(&format!("src{i}")), &env.path(&out).join(format!("src{i}")));
    }
    // the shared content was stored once, whichever writer stored it
    let v: serde_json::Value =
        serde_json::from_str(&env.run(&["info", "--json", &repo]).ok().stdout).expect("info --json");
    let size = v["size_on_disk"].as_u64().expect("size_on_disk");
    assert!(size < (12 << 20) * 5 + (8 << 20), "shared data stored more than once: {size} bytes");
}

fn lock_pid(env: &Env) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(env.repo().join("lock")).ok()?).ok()?;
    v["pid"].as_u64()
}

#[test]
fn two_waiters_breaking_one_stale_lock_do_not_both_write() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), b"some content").unwrap();
    let host = String::from_utf8_lossy(&std::process::Command::new("uname").arg("-n").output().unwrap().stdout)
        .trim()
        .to_string();
    // A writer killed with -9 left its lock; two runs queue on it.
    let dead = format!("{{\"hostname\":\"{host}\",\"pid\":999999999,\"since\":\"2026-11-24T03:00:00+00:00\"}}");
    fs::write(env.repo().join("lock"), dead).unwrap();
    let (a_args, b_args) = (env.archive("a"), env.archive("b"));
    // A judges the lock stale and stops right there; B breaks it, takes the lock and pauses
    // inside its run.
    let (a, a_flag) =
        env.spawn_paused_with_flag("stale-lock-seen", "pause-a", &["create", "--lock-wait", "600", &a_args, "src"]);
    let (b, b_flag) = env.spawn_paused_with_flag("dir-listed", "pause-b", &["create", &b_args, "src"]);
    assert_eq!(lock_pid(&env), Some(b.id() as u64));
    // A goes on: it must see that the lock is B's now and wait, not remove it.
    fs::remove_file(&a_flag).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(lock_pid(&env), Some(b.id() as u64), "A broke the live lock of B");
    fs::remove_file(&b_flag).unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(b.status.code(), Some(0), "{}", String::from_utf8_lossy(&b.stderr));
    assert!(String::from_utf8_lossy(&b.stderr).contains("removed stale lock"));
    assert_eq!(a.status.code(), Some(0), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(!String::from_utf8_lossy(&a.stderr).contains("removed stale lock"));
    let r = env.run(&["list", "--short", &env.repo_str()]).ok();
    assert_eq!(r.stdout, "b\na\n");
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
}

/// Readers beside commits: a reader has loaded manifest n when a create commits n+1 and
/// remembers it. The reader must neither call that a rollback nor, saving its own view after the
/// create, make the client forget n+1.
#[test]
fn a_reader_overtaken_by_a_commit_is_no_rollback_and_forgets_nothing() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir_all(env.path("src")).unwrap();
    fs::write(env.path("src/f"), "one\n").unwrap();
    env.create_json("a0", &["src"], &[]);
    let repo = env.repo_str();
    let (reader, flag) = env.spawn_paused("manifest-loaded", &["list", "--short", &repo]);
    fs::write(env.path("src/f"), "two\n").unwrap();
    env.create_json("a1", &["src"], &[]);
    let state_file = fs::read_dir(env.path("security")).unwrap().next().unwrap().unwrap().path().join("state.json");
    let after_create = fs::read(&state_file).unwrap();
    fs::remove_file(flag).unwrap();
    let r = Run::from(reader.wait_with_output().unwrap()).ok();
    assert_eq!(r.stdout, "a0\n", "the reader lists the manifest it loaded");
    assert_eq!(
        String::from_utf8(fs::read(&state_file).unwrap()).unwrap(),
        String::from_utf8(after_create).unwrap(),
        "the reader set the remembered manifest back"
    );
    let r = env.run(&["list", "--short", &repo]).ok();
    assert_eq!(r.stdout, "a0\na1\n");
}

/// A create whose lock is broken (`break-lock` on a live writer: a stopped process, another host)
/// while it runs must not commit. Here a compact took the lock meanwhile and deleted the packs the
/// create had written (nothing referenced them yet): committing would leave an archive without
/// its data. The create fails instead, and the repository stays whole.
#[test]
fn a_create_whose_lock_was_broken_commits_nothing() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir_all(env.path("src")).unwrap();
    fs::write(env.path("src/old"), xorshift(1 << 20, 30)).unwrap();
    env.create_json("a0", &["src"], &[]);
    fs::write(env.path("src/new"), xorshift(3 << 20, 40)).unwrap();
    let (child, flag) = env.spawn_paused("before-manifest", &["create", &env.archive("a1"), "src"]);
    env.run(&["break-lock", &env.repo_str()]).ok();
    let r = env.run(&["compact", "--grace", "0", "--json", &env.repo_str()]).ok();
    let s: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(s["stats"]["packs_deleted"].as_u64().unwrap() >= 1, "{}", r.stdout);
    fs::remove_file(&flag).unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("lock") && r.stderr.contains("run it again"), "{}", r.stderr);
    assert_eq!(env.run(&["list", "--short", &env.repo_str()]).ok().stdout, "a0\n");
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    // Run again, it stores what it needs.
    env.create_json("a1", &["src"], &[]);
    env.extract_to("a1", "out", &[]).ok();
    assert_eq!(fs::read(env.path("out/src/new")).unwrap(), xorshift(3 << 20, 40));
}

/// The same for a compact: once its lock is broken it unindexes and deletes nothing, because a
/// create that took the lock may have deduplicated against the packs it was about to delete.
#[test]
fn a_compact_whose_lock_was_broken_deletes_nothing() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir_all(env.path("src")).unwrap();
    fs::write(env.path("src/keep"), xorshift(2 << 20, 50)).unwrap();
    fs::write(env.path("src/gone"), xorshift(2 << 20, 60)).unwrap();
    env.create_json("both", &["src"], &[]);
    env.run(&["delete", &env.archive("both")]).ok();
    let packs = || pack_count(&env.repo());
    let before = packs();
    let (child, flag) =
        env.spawn_paused("compact-rewritten", &["compact", "--grace", "0", "--threshold", "0", &env.repo_str()]);
    env.run(&["break-lock", &env.repo_str()]).ok();
    // Meanwhile a create stores the "deleted" data again: it finds it in the packs compact holds.
    env.create_json("again", &["src"], &[]);
    fs::remove_file(&flag).unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("lock"), "{}", r.stderr);
    assert!(packs() >= before, "compact deleted packs after losing its lock");
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    env.extract_to("again", "out", &[]).ok();
    assert_eq!(fs::read(env.path("out/src/gone")).unwrap(), xorshift(2 << 20, 60));
}

/// A restore of an archive that the nightly prune and compact remove while the restore runs:
/// the extract's reader mark keeps the archive's data until it is done (borg would fail the
/// prune on its lock instead), and the next compact frees it.
#[test]
fn an_extract_finishes_while_prune_and_compact_remove_its_archive() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir_all(env.path("src")).unwrap();
    fs::write(env.path("src/old"), xorshift(3 << 20, 111)).unwrap();
    env.create_json("old", &["src"], &[]);
    fs::write(env.path("src/old"), xorshift(1 << 20, 113)).unwrap();
    env.create_json("new", &["src"], &[]);
    for cmd in [&["extract", "--json"][..], &["export-tar"][..]] {
        let name = if cmd[0] == "extract" { "old" } else { "old2" };
        if name == "old2" {
            fs::write(env.path("src/old"), xorshift(3 << 20, 115)).unwrap();
            env.create_json("old2", &["src"], &[]);
        }
        let out = env.path(&format!("out-{name}"));
        fs::create_dir_all(&out).unwrap();
        let archive = env.archive(name);
        let tar = out.join("old.tar").display().to_string();
        let mut args = cmd.to_vec();
        args.push(&archive);
        if cmd[0] == "export-tar" {
            args.push(&tar);
        }
        let (child, flag) = env.spawn_paused_in(&out, "reader-held", "paused", &args);
        env.run(&["delete", &archive]).ok();
        let r = env.run(&["compact", "--grace", "0", "--json", &env.repo_str()]).ok();
        assert!(r.stdout.contains("\"archives_kept_for_readers\": 1"), "{}", r.stdout);
        fs::remove_file(&flag).unwrap();
        let r = Run::from(child.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{cmd:?} of a pruned archive: {}", r.stderr);
        let got = if cmd[0] == "extract" {
            fs::read(out.join("src/old")).unwrap()
        } else {
            let t = Command::new("tar").args(["-xOf", &tar, "src/old"]).output().unwrap();
            assert!(t.status.success());
            t.stdout
        };
        assert_eq!(got, xorshift(3 << 20, if name == "old" { 111 } else { 115 }));
        // Once the reader is gone, the archive's data goes too.
        let size = du(&env.repo());
        let r = env.run(&["compact", "--grace", "0", "--json", &env.repo_str()]).ok();
        assert!(r.stdout.contains("\"archives_kept_for_readers\": 0"), "{}", r.stdout);
        assert!(size - du(&env.repo()) >= 3 << 20);
    }
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
}

/// A check that runs beside the nightly jobs reports no damage that is only their work: packs a
/// compact rewrites or deletes under it, packs a create adds, an archive a prune removes while
/// the check reads it. Paused once after check read the index (before it lists `data/`), once
/// after `--verify-data` listed the packs to read.
#[test]
fn a_check_beside_create_delete_and_compact_reports_no_false_damage() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir_all(env.path("src")).unwrap();
    fs::write(env.path("src/shared"), xorshift(200_000, 131)).unwrap();
    for (round, (site, check)) in [
        ("check-indexed", &["check", "--json"][..]),
        ("check-verify-listed", &["check", "--verify-data", "--json"][..]),
    ]
    .into_iter()
    .enumerate()
    {
        // Garbage in a pack with live data (rewritten by compact), and a pack of garbage alone.
        let seed = 2 * round as u64;
        fs::write(env.path("src/victim"), xorshift(3 << 20, 141 + seed)).unwrap();
        env.create_json("victim", &["src"], &[]);
        fs::remove_file(env.path("src/victim")).unwrap();
        fs::write(env.path("src/kept"), xorshift(1 << 20, 151 + seed)).unwrap();
        env.create_json("kept", &["src"], &[]);
        env.run(&["delete", &env.archive("victim")]).ok();
        let mut args = check.to_vec();
        let repo = env.repo_str();
        args.push(&repo);
        let (child, flag) = env.spawn_paused(site, &args);
        // Meanwhile: the archive being checked is deleted, compact frees the victim's packs, and
        // a create adds packs.
        env.run(&["delete", &env.archive("kept")]).ok();
        let r = env.run(&["compact", "--grace", "0", "--json", &repo]).ok();
        let st: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert!(st["stats"]["packs_deleted"].as_u64() >= Some(2), "{st}");
        assert_eq!(st["stats"]["archives_kept_for_readers"], 1, "{st}");
        fs::write(env.path("src/new"), xorshift(1 << 20, 161 + seed)).unwrap();
        env.create_json(&format!("new{round}"), &["src"], &[]);
        fs::remove_file(&flag).unwrap();
        let r = Run::from(child.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{site}: {}\n{}", r.stderr, r.stdout);
        assert!(r.stderr.is_empty(), "{site}: {}", r.stderr);
        let rep: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(rep["errors"].as_array().map(Vec::len), Some(0), "{rep}");
        assert_eq!(rep["warnings"].as_array().map(Vec::len), Some(0), "{rep}");
    }
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
}
