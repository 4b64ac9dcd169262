//! Deduplication: unchanged data adds almost nothing; an insertion adds little.

use crate::support::*;
use std::fs;

#[test]
fn second_create_of_same_tree_adds_under_one_percent() {
    let env = Env::new();
    env.init("repokey");
    crate::round_trip::build_tree(&env.path("src"), false);
    fs::write(env.path("src/big"), xorshift(48 << 20, 11)).unwrap();
    env.create_json("one", &["src"], &[]);
    let before = du(&env.repo());
    let s = env.create_json("two", &["src"], &[]);
    let after = du(&env.repo());
    let added = after.saturating_sub(before);
    assert!((added as f64) < before as f64 * 0.01, "second create added {added} bytes to {before}");
    assert!(s["archive"]["stats"]["deduplicated_size"].as_u64().unwrap() < before / 100);
}

#[test]
fn insertion_in_large_file_adds_under_five_percent() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    let size = 256usize << 20;
    let data = xorshift(size, 5);
    fs::write(env.path("src/f"), &data).unwrap();
    env.create_json("one", &["src"], &[]);
    let before = du(&env.repo());
    let mut changed = data[..size / 2].to_vec();
    changed.extend_from_slice(&xorshift(1 << 20, 99));
    changed.extend_from_slice(&data[size / 2..]);
    fs::write(env.path("src/f"), &changed).unwrap();
    env.create_json("two", &["src"], &[]);
    let added = du(&env.repo()) - before;
    assert!((added as f64) < size as f64 * 0.05, "insertion added {added} bytes");
    env.extract_to("two", "out", &[]).ok();
    assert!(fs::read(env.path("out/src/f")).unwrap() == changed);
}

/// Copies of the same content far apart in one run, while earlier batches are still being
/// compressed on the thread pool: stored once, counted once per reference in the compressed
/// size, and extracted exactly.
#[test]
fn repeated_content_within_one_run_is_stored_once() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    let same = xorshift(3 << 20, 21);
    let mut names = vec![];
    for i in 0..6 {
        // small distinct files between the copies, so the copies fall into different batches
        for j in 0..40 {
            fs::write(env.path(&format!("src/{i}-small-{j}")), xorshift(20_000, 1001 + 2 * (i * 100 + j) as u64))
                .unwrap();
        }
        let name = format!("src/{i}-copy");
        fs::write(env.path(&name), &same).unwrap();
        names.push(name);
    }
    fs::write(env.path("src/other"), xorshift(3 << 20, 22)).unwrap();
    let s = env.create_json("a", &["src"], &[]);
    let stats = &s["archive"]["stats"];
    let (original, compressed, dedup) = (
        stats["original_size"].as_u64().unwrap(),
        stats["compressed_size"].as_u64().unwrap(),
        stats["deduplicated_size"].as_u64().unwrap(),
    );
    let smalls = 6 * 40 * 20_000u64;
    assert_eq!(original, 7 * (3 << 20) + smalls);
    // random data does not compress: stored sizes are the raw sizes plus envelopes and padding
    let unique = 2 * (3 << 20) + smalls;
    assert!(dedup >= unique && dedup < unique + unique / 10, "deduplicated {dedup}, unique {unique}");
    assert!(compressed >= original && compressed < original + original / 10, "compressed {compressed}");
    assert!(compressed > dedup + 4 * (3 << 20), "every copy counts in the compressed size");
    let repo = du(&env.repo());
    assert!(repo < unique + unique / 5, "repository holds {repo} bytes for {unique} unique");
    env.extract_to("a", "out", &[]).ok();
    for n in &names {
        assert!(fs::read(env.path(&format!("out/{n}"))).unwrap() == same, "{n}");
    }
}
