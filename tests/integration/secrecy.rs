//! Secrecy: no plaintext in any repository file, keyed ids, secret chunk boundaries.

use crate::support::*;
use std::collections::HashSet;
use std::fs;

#[test]
fn no_plaintext_run_of_16_bytes_in_any_repository_file() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    let mut plain: Vec<Vec<u8>> = vec![];
    for i in 0..20 {
        let marker =
            format!("GARRET-SECRET-MARKER-{i:04}-the quick brown fox jumps over the lazy dog-{i}\n").repeat(50);
        let name = format!("confidential-file-name-marker-{i:04}.txt");
        fs::write(env.path("src").join(&name), &marker).unwrap();
        plain.push(marker.into_bytes());
        plain.push(name.into_bytes());
    }
    let big = xorshift(3 << 20, 1234);
    fs::write(env.path("src/random.bin"), &big).unwrap();
    plain.push(big[..1 << 20].to_vec());
    env.create_json("a", &["src"], &["--compression", "none"]);
    let mut windows: HashSet<&[u8]> = HashSet::new();
    for p in &plain {
        for w in p.windows(16) {
            windows.insert(w);
        }
    }
    let mut checked = 0;
    for e in walkdir::WalkDir::new(env.repo()).into_iter().flatten().filter(|e| e.file_type().is_file()) {
        let bytes = fs::read(e.path()).unwrap();
        checked += 1;
        if let Some(pos) = bytes.windows(16).position(|w| windows.contains(w)) {
            panic!(
                "{} holds plaintext at offset {pos}: {:?}",
                e.path().display(),
                String::from_utf8_lossy(&bytes[pos..pos + 16])
            );
        }
    }
    assert!(checked >= 5, "checked {checked} files");
}

#[test]
fn blob_ids_are_keyed_not_plain_blake3() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    let content = b"content whose plain hash must not be its id".repeat(10);
    fs::write(env.path("src/f"), &content).unwrap();
    env.create_json("a", &["src"], &[]);
    let repo = open_repo(&env);
    let f = items(&repo, "a").into_iter().find(|i| i.path == b"src/f").unwrap();
    assert_eq!(f.chunks.len(), 1);
    let id = f.chunks[0].0;
    assert_ne!(id.0, *blake3::hash(&content).as_bytes());
    assert_eq!(id, repo.keys().blob_id(&content));
}

#[test]
fn two_repositories_cut_the_same_file_differently() {
    let env = Env::new();
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), xorshift(24 << 20, 77)).unwrap();
    let mut cuts = vec![];
    for r in ["r1", "r2"] {
        let repo = env.path(r).display().to_string();
        env.run(&["init", "-e", "repokey", "--kdf-memory", "64", &repo]).ok();
        env.run(&["create", &format!("{repo}::a"), "src"]).ok();
        let opened = open_repo_at(&env, &env.path(r));
        let f = items(&opened, "a").into_iter().find(|i| i.path == b"src/f").unwrap();
        cuts.push(f.chunks.iter().map(|c| c.1).collect::<Vec<_>>());
    }
    assert!(cuts[0].len() > 5);
    assert_ne!(cuts[0], cuts[1], "chunk boundaries must depend on the secret seed");
}

#[test]
fn new_keys_get_the_documented_kdf_parameters() {
    // repo-format.md, "Key file": new keys are wrapped with Argon2id m=80 MiB, t=4, p=4 unless
    // `--kdf-memory` says otherwise; the passes stay at 4 whatever the memory.
    use garret::crypto::keyfile::{KdfAlgorithm, KdfParams, KeyFile};
    let env = Env::new();
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), b"kdf").unwrap();
    for (args, mib) in [(&[][..], 80u32), (&["--kdf-memory", "72"][..], 72)] {
        let repo = env.path(&format!("r{mib}"));
        let r = repo.display().to_string();
        let mut init = vec!["init", "-e", "repokey"];
        init.extend_from_slice(args);
        init.push(&r);
        env.run(&init).ok();
        let kf = KeyFile::parse(&fs::read(repo.join("key")).unwrap()).unwrap();
        let want =
            KdfParams { algorithm: KdfAlgorithm::Argon2id, memory_kib: mib * 1024, iterations: 4, parallelism: 4 };
        assert_eq!(kf.kdf, Some(want));
        env.run(&["create", &format!("{r}::a"), "src"]).ok();
        assert!(env.run(&["list", &r]).ok().stdout.contains('a'));
    }
}
