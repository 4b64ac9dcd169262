//! Bundles (repo-format.md section 8.1): small files stored and compressed together. They must
//! restore byte for byte, be checked member by member, free the space of deleted files at
//! compact, and stay out of version-1 repositories, which must keep working as they are.

use crate::support::*;
use garret::id::Id;
use garret::pack::PackEntry;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

/// `n` small text files of distinct content under `dir`, 1 to 12 KiB each.
fn small_files(dir: &Path, n: usize, seed: u64) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let noise = xorshift(16, seed.wrapping_add(2 * i as u64));
        let line = format!("fn item_{i}() -> u32 {{ {} }} // {:?}\n", i * 7, noise);
        let body = line.repeat(1 + (i * 37) % 120);
        fs::write(dir.join(format!("f{i:04}.rs")), body).unwrap();
    }
}

/// Every pack header of the repository, by pack name.
fn headers(env: &Env) -> HashMap<String, Vec<PackEntry>> {
    let repo = open_repo(env);
    let names = repo.index().pack_names().unwrap();
    names.into_iter().map(|n| (n.clone(), repo.read_pack_header(&n).unwrap().0)).collect()
}

/// The ids of blobs stored in bundles, and the number of distinct bundles.
fn bundled(env: &Env) -> (HashSet<Id>, usize) {
    let mut ids = HashSet::new();
    let mut spans = HashSet::new();
    for (name, entries) in headers(env) {
        for e in entries.iter().filter(|e| e.within.is_some()) {
            ids.insert(e.id);
            spans.insert((name.clone(), e.offset));
        }
    }
    (ids, spans.len())
}

/// The data chunk ids of the files of archive `name`, by path.
fn file_chunks(env: &Env, name: &str) -> HashMap<String, Vec<Id>> {
    let repo = open_repo(env);
    items(&repo, name)
        .into_iter()
        .filter(|i| !i.chunks.is_empty())
        .map(|i| (String::from_utf8_lossy(&i.path).into_owned(), i.chunks.iter().map(|c| c.0).collect()))
        .collect()
}

#[test]
fn small_files_are_bundled_and_restore_byte_for_byte() {
    let env = Env::new();
    env.init("repokey");
    small_files(&env.path("src/a"), 400, 11);
    fs::write(env.path("src/big"), xorshift(3 << 20, 13)).unwrap();
    let out = env.create_json("one", &["src"], &[]);
    let (ids, bundles) = bundled(&env);
    // 400 files of 1 to 12 KiB (about 2.5 MB) in bundles of up to 512 KiB: a handful of bundles,
    // not one envelope per file; the 3 MiB file is chunks of its own.
    assert!(ids.len() >= 390, "{} of 400 small files bundled", ids.len());
    assert!((4..=40).contains(&bundles), "{bundles} bundles");
    let big: HashSet<Id> = file_chunks(&env, "one")["src/big"].iter().copied().collect();
    assert!(big.is_disjoint(&ids), "large chunks are not bundled");
    // Stored sizes: every byte of every envelope (data and item stream) counted once, shared
    // out among members.
    let stats = &out["archive"]["stats"];
    let dedup = stats["deduplicated_size"].as_u64().unwrap();
    let data_bytes: u64 = headers(&env)
        .values()
        .flat_map(|entries| {
            let mut spans: Vec<(u64, u32)> =
                entries.iter().filter(|e| e.kind != 3).map(|e| (e.offset, e.length)).collect();
            spans.sort_unstable();
            spans.dedup();
            spans
        })
        .map(|s| s.1 as u64)
        .sum();
    assert_eq!(dedup, data_bytes, "deduplicated size against the envelopes in the packs");
    env.extract_to("one", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
    let r = env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    assert!(!r.stderr.contains("error"), "{}", r.stderr);
    // A second run stores nothing new: the bundled files deduplicate one by one.
    let again = env.create_json("two", &["src"], &["--files-cache", "disabled"]);
    assert_eq!(again["archive"]["stats"]["deduplicated_size"].as_u64(), Some(0));
}

#[test]
fn a_damaged_bundle_is_reported_for_each_file_in_it_and_no_other() {
    let env = Env::new();
    env.init("repokey");
    small_files(&env.path("src"), 300, 21);
    env.create_json("one", &["src"], &[]);
    // Flip one byte in the middle of one bundle's envelope.
    let (name, offset, length, members) = headers(&env)
        .into_iter()
        .find_map(|(name, entries)| {
            let first = entries.iter().find(|e| e.within.is_some())?.clone();
            let members: HashSet<Id> =
                entries.iter().filter(|e| e.within.is_some() && e.offset == first.offset).map(|e| e.id).collect();
            Some((name, first.offset, first.length, members))
        })
        .expect("a bundle");
    assert!(members.len() > 1);
    let file = env.repo().join("data").join(&name[..2]).join(&name);
    let mut bytes = fs::read(&file).unwrap();
    bytes[(offset + length as u64 / 2) as usize] ^= 0x20;
    fs::write(&file, &bytes).unwrap();
    let r = env.run(&["check", "--verify-data", "--json", &env.repo_str()]);
    assert_eq!(r.code, 2, "damage found: {}\n{}", r.stdout, r.stderr);
    let reported: HashSet<String> = r
        .stderr
        .lines()
        .chain(r.stdout.lines())
        .flat_map(|l| members.iter().filter(move |id| l.contains(&id.hex())).map(|id| id.hex()))
        .collect();
    assert_eq!(reported.len(), members.len(), "every file of the bundle is named:\n{}", r.stderr);
    // Files outside the damaged bundle still restore; those inside fail, one by one.
    let chunks = file_chunks(&env, "one");
    let r = env.extract_to("one", "out", &[]);
    assert_ne!(r.code, 0);
    let mut restored = 0;
    for (path, ids) in &chunks {
        let hit = ids.iter().any(|id| members.contains(id));
        let out = env.path("out").join(path);
        if hit {
            assert!(!out.exists() || fs::read(&out).unwrap() != fs::read(env.path(path)).unwrap(), "{path}");
        } else {
            assert_eq!(fs::read(&out).unwrap(), fs::read(env.path(path)).unwrap(), "{path}");
            restored += 1;
        }
    }
    assert_eq!(restored, chunks.len() - members.len());
    // Repair zero-fills the files of the damaged bundle, salvages every other bundle and blob of
    // its pack into a new pack, and leaves a repository that checks clean; every other file
    // still restores exactly.
    let r = env.run(&["check", "--repair", "--verify-data", &env.repo_str()]).code(1);
    assert!(r.stderr.contains("repaired: one: src/"), "{}", r.stderr);
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    let r = env.extract_to("one", "out2", &[]).code(1);
    assert!(r.stderr.contains("damaged file"), "{}", r.stderr);
    for (path, ids) in &chunks {
        let got = fs::read(env.path("out2").join(path)).unwrap();
        let want = fs::read(env.path(path)).unwrap();
        if ids.iter().any(|id| members.contains(id)) {
            assert_eq!(got.len(), want.len(), "{path} keeps its length");
        } else {
            assert_eq!(got, want, "{path}");
        }
    }
}

#[test]
fn compact_frees_the_deleted_files_of_a_bundle_and_keeps_the_others() {
    let env = Env::new();
    env.init("repokey");
    small_files(&env.path("src"), 300, 31);
    env.create_json("old", &["src"], &[]);
    let all = file_chunks(&env, "old");
    // Half the files go; the next archive keeps the other half, deduplicated into the same bundles.
    let mut gone: HashSet<Id> = HashSet::new();
    for (i, (path, ids)) in all.iter().enumerate() {
        if i % 2 == 0 {
            fs::remove_file(env.path(path)).unwrap();
            gone.extend(ids.iter().copied());
        }
    }
    env.create_json("new", &["src"], &[]);
    env.run(&["delete", &env.archive("old")]).ok();
    let before = du(&env.repo().join("data"));
    let r = env.run(&["compact", "--grace", "0", "--threshold", "0", "--json", &env.repo_str()]).ok();
    let after = du(&env.repo().join("data"));
    assert!(after * 10 < before * 7, "data {before} -> {after} bytes after compact: {}", r.stdout);
    // No pack lists a deleted file any more, and no bundle holds its bytes: every member of
    // every bundle is a live file.
    let listed: HashSet<Id> = headers(&env).values().flatten().map(|e| e.id).collect();
    assert!(listed.is_disjoint(&gone), "deleted files still listed after compact");
    let (bundled_now, _) = bundled(&env);
    assert!(bundled_now.len() >= 140, "the kept files stay bundled: {}", bundled_now.len());
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    env.extract_to("new", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
}

#[test]
fn a_version_1_repository_is_read_and_written_without_bundles() {
    let env = Env::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1-repo");
    let r = std::process::Command::new("cp").arg("-r").arg(fixture.join("repo")).arg(env.repo()).status().unwrap();
    assert!(r.success());
    // Written by garret before bundles (format version 1): it lists, restores and checks.
    let list = env.run(&["list", "--short", &env.repo_str()]).ok();
    assert_eq!(list.stdout.trim(), "v1-archive");
    env.extract_to("v1-archive", "out", &[]).ok();
    for f in ["src/tiny", "src/sub/file1.txt", "src/sub/file5.txt"] {
        assert_eq!(fs::read(env.path("out").join(f)).unwrap(), fs::read(fixture.join(f)).unwrap(), "{f}");
    }
    // New small files go in as blobs of their own, and the repository stays version 1.
    small_files(&env.path("src"), 50, 41);
    env.create_json("v1-later", &["src"], &[]);
    assert_eq!(bundled(&env).0.len(), 0, "no bundle in a version-1 repository");
    let config: serde_json::Value = serde_json::from_slice(&fs::read(env.repo().join("config")).unwrap()).unwrap();
    assert_eq!(config["version"], 1);
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    env.extract_to("v1-later", "out2", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out2/src"));
    // And a new repository is version 2.
    let env2 = Env::new();
    env2.init("repokey");
    let config: serde_json::Value = serde_json::from_slice(&fs::read(env2.repo().join("config")).unwrap()).unwrap();
    assert_eq!(config["version"], 2);
}
