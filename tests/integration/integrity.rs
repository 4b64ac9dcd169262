//! Integrity: corrupted pack bytes are detected and named, never returned as data.

use crate::support::*;
use std::fs;
use std::os::unix::fs::FileExt;

#[test]
fn flipped_byte_in_pack_fails_that_blob_with_its_name() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/victim"), xorshift(200_000, 1)).unwrap();
    fs::write(env.path("src/bystander"), xorshift(200_000, 2)).unwrap();
    env.create_json("a", &["src"], &[]);
    let (pack, offset, id) = {
        let repo = open_repo(&env);
        let victim = items(&repo, "a").into_iter().find(|i| i.path == b"src/victim").unwrap();
        let id = victim.chunks[0].0;
        let loc = repo.index().lookup(&id).unwrap().unwrap();
        (garret::repository::Repository::pack_key(&loc.pack), loc.offset, id)
    };
    let f = fs::OpenOptions::new().write(true).read(true).open(env.repo().join(&pack)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset + 1000).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], offset + 1000).unwrap();
    drop(f);
    let r = env.extract_to("a", "out", &[]).code(2);
    assert!(r.stderr.contains(&id.hex()) && r.stderr.contains("integrity error"), "{}", r.stderr);
    assert!(r.stderr.contains("src/victim"), "{}", r.stderr);
    assert!(!env.path("out/src/victim").exists(), "a file with wrong content must not be left behind");
    assert_eq!(fs::read(env.path("out/src/bystander")).unwrap(), fs::read(env.path("src/bystander")).unwrap());
}

#[test]
fn deleted_index_is_rebuilt_from_packs() {
    let env = Env::new();
    env.init("repokey");
    crate::round_trip::build_tree(&env.path("src"), false);
    env.create_json("a", &["src"], &[]);
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = fs::remove_file(env.repo().join(f));
    }
    env.extract_to("a", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
    // garbage in place of the index is replaced too
    fs::write(env.repo().join("index.sqlite"), b"garbage garbage garbage garbage garbage garbage garbage").unwrap();
    let _ = fs::remove_file(env.repo().join("index.sqlite-wal"));
    env.extract_to("a", "out2", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out2/src"));
}

/// An index rebuilt from more blobs than one rebuild transaction takes (2^18 rows) is complete:
/// every blob of a file cut into 64-byte chunks is found again and verified, the file restores
/// exactly, and the next create of the same data stores nothing new.
#[test]
fn an_index_of_several_rebuild_batches_is_complete() {
    let env = Env::new();
    env.init("none");
    fs::create_dir(env.path("src")).unwrap();
    let blocks = 300_000;
    fs::write(env.path("src/f"), xorshift(blocks * 64, 3)).unwrap();
    env.create_json("a", &["src"], &["--chunker-params", "fixed,64"]);
    let indexed = |env: &Env| {
        let repo = open_repo(env);
        (repo.index().blob_count().unwrap(), repo.index().pack_names().unwrap())
    };
    let before = indexed(&env);
    assert!(before.0 > blocks as u64, "{}", before.0);
    fs::remove_file(env.repo().join("index.sqlite")).unwrap();
    let r = env.run(&["check", "--verify-data", "--json", &env.repo_str()]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["complete"], true, "{v}");
    assert!(v["blobs_checked"].as_u64().unwrap() >= blocks as u64, "{v}");
    assert!(indexed(&env) == before, "the same blobs in the same packs");
    env.extract_to("a", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
    let b = env.create_json("b", &["src"], &["--chunker-params", "fixed,64", "--files-cache", "disabled"]);
    assert_eq!(b["archive"]["stats"]["deduplicated_size"], 0, "{b}");
}

#[test]
fn manifest_rollback_is_refused_until_adopted() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), b"one").unwrap();
    env.create_json("a1", &["src"], &[]);
    let saved = env.path("saved-manifests");
    copy_dir(&env.repo().join("manifests"), &saved);
    env.create_json("a2", &["src"], &[]);
    // an attacker (or a stale copy) puts the old manifest back
    fs::remove_dir_all(env.repo().join("manifests")).unwrap();
    copy_dir(&saved, &env.repo().join("manifests"));
    let r = env.run(&["list", &env.repo_str()]).code(2);
    assert!(r.stderr.contains("rollback"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1);
    let r = env.run(&["adopt", "--json", &env.repo_str()]).ok();
    let adopted: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(adopted["repository"], env.repo_str());
    assert!(adopted["manifest_seq"].as_u64().is_some(), "{adopted}");
    let r = env.run(&["list", "--short", &env.repo_str()]).ok();
    assert_eq!(r.stdout.trim(), "a1");
}

/// Two copies of one repository (an rsync'd offsite copy) each get an archive from another
/// client: every client that sees both is told the histories diverged (exit 2, one line, nothing
/// written) until it adopts one, whether the other copy is at the same manifest number or ahead.
/// Clients merely behind on one history, by a few commits or by more than the kept manifests,
/// are not alarmed, and a copy written apart works as a repository of its own.
#[test]
fn copies_written_apart_are_reported_as_diverged_until_adopted() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), b"one").unwrap();
    env.create_json("a1", &["src"], &[]);
    let copy = env.path("offsite");
    copy_tree(&env.repo(), &copy);
    let copy_str = copy.display().to_string();
    // Client b writes to the copy, client a (env's own) to the original.
    let as_b = |args: &[&str]| {
        Run::from(env.cmd().env("GARRET_SECURITY_DIR", env.path("security-b")).args(args).output().unwrap())
    };
    fs::write(env.path("src/f"), b"two, in the copy").unwrap();
    as_b(&["create", &format!("{copy_str}::b2"), "src"]).ok();
    fs::write(env.path("src/f"), b"two, in the original").unwrap();
    env.create_json("a2", &["src"], &[]);
    let manifests = |repo: &std::path::Path| {
        immutable_files(repo).into_iter().filter(|(n, _)| n.starts_with("manifests/")).collect::<Vec<_>>()
    };
    let (original_before, copy_before) = (manifests(&env.repo()), manifests(&copy));
    // Same manifest number, other content.
    let r = env.run(&["create", &format!("{copy_str}::a3"), "src"]).code(2);
    assert!(r.stderr.contains("diverged") && r.stderr.contains("#3"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    // Ahead, on the other history.
    env.create_json("a3", &["src"], &[]);
    let original_4 = fs::read(env.repo().join("manifests/0000000000000004")).unwrap();
    let r = as_b(&["list", &env.repo_str()]).code(2);
    assert!(r.stderr.contains("diverged") && r.stderr.contains("adopt"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert_eq!(manifests(&copy), copy_before, "a refused client wrote nothing");
    assert_eq!(manifests(&env.repo()).len(), original_before.len() + 1);
    // A third client, behind the original by a few commits and then by more than the manifests
    // kept, follows it without alarm.
    let as_c = |args: &[&str]| {
        Run::from(env.cmd().env("GARRET_SECURITY_DIR", env.path("security-c")).args(args).output().unwrap())
    };
    as_c(&["list", &env.repo_str()]).ok();
    for n in 4..=5 {
        env.create_json(&format!("a{n}"), &["src"], &[]);
    }
    as_c(&["list", &env.repo_str()]).ok();
    for n in 6..=12 {
        env.create_json(&format!("a{n}"), &["src"], &[]);
    }
    as_c(&["list", &env.repo_str()]).ok();
    // An rsync of the original into the copy that got only manifest #4 across: b's own #3 is
    // still there, but #4 does not follow from it.
    let partial = copy.join("manifests/0000000000000004");
    fs::write(&partial, &original_4).unwrap();
    let r = as_b(&["list", &copy_str]).code(2);
    assert!(r.stderr.contains("diverged"), "{}", r.stderr);
    fs::remove_file(&partial).unwrap();
    as_b(&["list", &copy_str]).ok();
    // Adopting the copy makes it client a's repository; it holds what b wrote there, intact.
    env.run(&["adopt", &copy_str]).ok();
    let r = env.run(&["list", "--short", &copy_str]).ok();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), ["a1", "b2"]);
    env.run(&["check", "--verify-data", &copy_str]).ok();
    let out = env.path("out");
    fs::create_dir(&out).unwrap();
    env.run_in(&out, &["extract", &format!("{copy_str}::b2")]).ok();
    assert_eq!(fs::read(out.join("src/f")).unwrap(), b"two, in the copy");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Copy `from` into `to` recursively (files and directories only), as `rsync -a` would, skipping
/// what already exists.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else if !dest.exists() {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// An offsite copy taken while a backup commits, in rsync's order (`config`, `data/`, then
/// `index.sqlite`, `key`, `manifests/`): the archive committed during the copy names packs the
/// copy lacks. The copy must still open; every archive committed before the copy began restores;
/// `check` names the incomplete one instead of passing it; and the next copy completes it.
#[test]
fn a_copy_taken_during_a_commit_keeps_every_earlier_archive_and_names_the_late_one() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/old"), xorshift(400_000, 1)).unwrap();
    env.create_json("a0", &["src"], &[]);
    let (repo, copy) = (env.repo(), env.path("offsite"));
    fs::create_dir(&copy).unwrap();
    fs::copy(repo.join("config"), copy.join("config")).unwrap();
    copy_tree(&repo.join("data"), &copy.join("data"));
    fs::write(env.path("src/new"), xorshift(400_000, 2)).unwrap();
    env.create_json("a1", &["src"], &[]);
    for f in ["index.sqlite", "key"] {
        fs::copy(repo.join(f), copy.join(f)).unwrap();
    }
    copy_tree(&repo.join("manifests"), &copy.join("manifests"));

    // Another machine opens the copy (its own client state).
    let other = |dir: &std::path::Path, args: &[&str]| {
        fs::create_dir_all(dir).unwrap();
        let c = env.cmd().env("GARRET_SECURITY_DIR", env.path("other")).current_dir(dir).args(args).output();
        Run::from(c.unwrap())
    };
    let (here, copy_s) = (env.path(""), copy.display().to_string());
    let r = other(&here, &["list", "--short", &copy_s]);
    assert!(r.code <= 1, "{}", r.stderr);
    assert_eq!(r.stdout, "a0\na1\n");
    let r = other(&here, &["check", &copy_s]).code(2);
    // Here even a1's archive object is in a pack the copy lacks.
    assert!(r.stderr.contains("archive \"a1\""), "{}", r.stderr);
    assert!(!r.stderr.contains("\"a0\""), "a0 is whole: {}", r.stderr);
    let out = env.path("out0");
    other(&out, &["extract", &format!("{copy_s}::a0")]).ok();
    assert_eq!(fs::read(out.join("src/old")).unwrap(), xorshift(400_000, 1));
    assert!(!out.join("src/new").exists());

    // The next run of the copy brings the packs it missed.
    copy_tree(&repo.join("data"), &copy.join("data"));
    other(&here, &["check", "--verify-data", &copy_s]).ok();
    let out = env.path("out1");
    other(&out, &["extract", &format!("{copy_s}::a1")]).ok();
    assert_eq!(fs::read(out.join("src/new")).unwrap(), xorshift(400_000, 2));
}

/// Files under `repo/data`, relative to `repo`.
fn data_files(repo: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for d in fs::read_dir(repo.join("data")).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            out.push(f.unwrap().path().strip_prefix(repo).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

/// `compact --json`'s stats.
fn compact_stats(env: &Env, extra: &[&str]) -> serde_json::Value {
    let repo = env.repo_str();
    let r = env.run(&[&["compact", "--json"], extra, &[&repo]].concat()).ok();
    serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()["stats"].clone()
}

/// A repository whose archive "keep" shares every pack with the deleted archive "both", so that
/// compact rewrites them.
fn half_garbage_repository(env: &Env) {
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/keep"), xorshift(3 << 20, 10)).unwrap();
    fs::write(env.path("src/gone"), xorshift(3 << 20, 20)).unwrap();
    env.create_json("both", &["src"], &[]);
    fs::remove_file(env.path("src/gone")).unwrap();
    env.create_json("keep", &["src"], &[]);
    env.run(&["delete", &env.archive("both")]).ok();
}

/// An offsite copy taken while `compact` rewrites packs, in rsync's worst order: the copy lists
/// `data/` before compact writes the new packs and copies the files after compact is done. Every
/// archive committed before the copy began must restore from it, so the rewritten packs stay in
/// `data/` (condemned, unindexed) until a compact after the grace period deletes them.
#[test]
fn a_copy_taken_while_compact_rewrites_packs_keeps_every_archive() {
    let env = Env::new();
    half_garbage_repository(&env);
    let repo = env.repo();
    let listed = data_files(&repo);
    let s = compact_stats(&env, &[]);
    let rewritten = s["packs_rewritten"].as_u64().unwrap();
    assert!(rewritten >= 1, "{s}");
    assert_eq!(s["packs_condemned"], rewritten, "{s}");
    assert!(s["next_deletion"].is_string(), "{s}");
    // Packs with nothing live (here the deleted archive's own metadata) go at once: no archive
    // the copy can hold names them.
    let deleted_at_once = s["packs_deleted"].as_u64().unwrap();

    let copy = env.path("offsite");
    fs::create_dir(&copy).unwrap();
    for f in ["config", "key"] {
        fs::copy(repo.join(f), copy.join(f)).unwrap();
    }
    for f in &listed {
        fs::create_dir_all(copy.join(f).parent().unwrap()).unwrap();
        let _ = fs::copy(repo.join(f), copy.join(f));
    }
    copy_tree(&repo.join("manifests"), &copy.join("manifests"));
    let copy_s = copy.display().to_string();
    let other = |dir: &std::path::Path, args: &[&str]| {
        fs::create_dir_all(dir).unwrap();
        let c = env.cmd().env("GARRET_SECURITY_DIR", env.path("other")).current_dir(dir).args(args).output();
        Run::from(c.unwrap())
    };
    other(&env.path(""), &["check", "--verify-data", &copy_s]).ok();
    let out = env.path("out-copy");
    other(&out, &["extract", &format!("{copy_s}::keep")]).ok();
    assert_eq!(fs::read(out.join("src/keep")).unwrap(), xorshift(3 << 20, 10));

    // `info` says where the space went.
    let info = |env: &Env| -> serde_json::Value {
        serde_json::from_str(&env.run(&["info", "--json", &env.repo_str()]).ok().stdout).unwrap()
    };
    let i = info(&env);
    assert_eq!(i["condemned"]["packs"], rewritten, "{i}");
    assert!(i["condemned"]["bytes"].as_u64().unwrap() > 3 << 20, "{i}");
    assert!(i["condemned"]["oldest"].is_string(), "{i}");
    // Within the grace period a compact deletes nothing, and check does not take the condemned
    // packs for unindexed ones.
    let s = compact_stats(&env, &[]);
    assert_eq!((&s["packs_deleted"], &s["packs_condemned"]), (&0.into(), &rewritten.into()), "{s}");
    let r = env.run(&["check", &env.repo_str()]).ok();
    assert!(!r.stderr.contains("not indexed"), "{}", r.stderr);
    // After it, the condemned packs go, and with them their record.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let s = compact_stats(&env, &["--grace", "1S"]);
    assert_eq!((&s["packs_deleted"], &s["packs_condemned"]), (&rewritten.into(), &0.into()), "{s}");
    let gone = listed.iter().filter(|f| !repo.join(f).exists()).count() as u64;
    assert_eq!(gone, rewritten + deleted_at_once);
    assert_eq!(fs::read_dir(repo.join("condemned")).unwrap().count(), 0);
    assert_eq!(info(&env)["condemned"]["packs"], 0);
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    env.extract_to("keep", "out", &[]).ok();
    assert_eq!(fs::read(env.path("out/src/keep")).unwrap(), xorshift(3 << 20, 10));
}

/// A condemned pack is deleted only while its blobs are stored elsewhere. When the new pack that
/// holds them is lost, the condemned one is kept, indexed again, and the archive restores from it.
#[test]
fn a_condemned_pack_whose_copies_are_lost_is_kept_and_serves_again() {
    let env = Env::new();
    half_garbage_repository(&env);
    let repo = env.repo();
    let before = data_files(&repo);
    let s = compact_stats(&env, &[]);
    assert!(s["packs_rewritten"].as_u64().unwrap() >= 1, "{s}");
    // Lose every pack the compact wrote; what is left of `before` is what it condemned.
    for f in data_files(&repo) {
        if !before.contains(&f) {
            fs::remove_file(repo.join(f)).unwrap();
        }
    }
    let condemned = data_files(&repo);
    let r = env.run(&["compact", "--grace", "0", &env.repo_str()]).code(1);
    assert!(r.stderr.contains("stored nowhere else; it is kept"), "{}", r.stderr);
    assert_eq!(data_files(&repo), condemned);
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    env.extract_to("keep", "out", &[]).ok();
    assert_eq!(fs::read(env.path("out/src/keep")).unwrap(), xorshift(3 << 20, 10));
}

/// `check --repair` rebuilds the index from every pack in `data/`, condemned ones included (they
/// may hold the last copy of something). The next compact sorts them out again: what it deletes
/// is stored elsewhere, and the kept archive stays whole at every step.
#[test]
fn condemned_packs_indexed_again_by_repair_are_sorted_out_by_compact() {
    let env = Env::new();
    half_garbage_repository(&env);
    let s = compact_stats(&env, &[]);
    assert!(s["packs_condemned"].as_u64().unwrap() >= 1, "{s}");
    let r = env.run(&["check", "--repair", &env.repo_str()]).ok();
    assert!(!r.stderr.contains("not indexed"), "{}", r.stderr);
    for extra in [&[][..], &["--grace", "0"]] {
        compact_stats(&env, extra);
        env.run(&["check", "--verify-data", &env.repo_str()]).ok();
        let out = format!("out{}", extra.len());
        env.extract_to("keep", &out, &[]).ok();
        assert_eq!(fs::read(env.path(&out).join("src/keep")).unwrap(), xorshift(3 << 20, 10));
    }
    let s = compact_stats(&env, &[]);
    assert_eq!(
        (&s["packs_condemned"], &s["packs_deleted"], &s["packs_rewritten"]),
        (&0.into(), &0.into(), &0.into()),
        "{s}"
    );
    assert_eq!(fs::read_dir(env.repo().join("condemned")).unwrap().count(), 0);
}
