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
