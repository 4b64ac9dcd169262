//! `recreate`: archives rewritten without what new selection rules leave out; what stays restores
//! byte for byte, a hardlink whose first name goes keeps the content, other archives are
//! untouched, `compact` then frees the space, and a crash leaves the original archive.

use crate::support::*;
use std::fs;

fn tree(env: &Env) {
    let s = env.path("src");
    for d in ["keep", "iso", "cache", "tagged"] {
        fs::create_dir_all(s.join(d)).unwrap();
    }
    fs::write(s.join("keep/a.txt"), b"keep me").unwrap();
    fs::write(s.join("iso/big.iso"), xorshift(3 << 20, 7)).unwrap();
    fs::write(s.join("iso/notes.txt"), b"notes").unwrap();
    fs::write(s.join("cache/CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55\n").unwrap();
    fs::write(s.join("cache/blob"), b"cached").unwrap();
    fs::write(s.join("tagged/.nobackup"), b"").unwrap();
    fs::write(s.join("tagged/x"), b"x").unwrap();
    // Hardlinks both ways: the first name of big.iso goes while a second name stays; a.txt's first
    // name stays while its second goes.
    fs::hard_link(s.join("iso/big.iso"), s.join("keep/z-big-link.iso")).unwrap();
    fs::hard_link(s.join("keep/a.txt"), s.join("iso/a-link.txt")).unwrap();
}

fn listed(env: &Env, name: &str) -> Vec<String> {
    env.run(&["list", "--short", &env.archive(name)]).ok().stdout.lines().map(String::from).collect()
}

#[test]
fn recreate_drops_excluded_paths_and_keeps_the_rest_exact() {
    let env = Env::new();
    env.init("repokey");
    tree(&env);
    env.run(&["create", &env.archive("one"), "src"]).ok();
    env.run(&["create", &env.archive("two"), "src"]).ok();
    let before_two = listed(&env, "two");

    // A dry run counts and changes nothing.
    let r = env.run(&["recreate", "-n", "--json", &env.repo_str(), "-e", "*.iso"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["archives"].as_array().unwrap().len(), 2);
    assert_eq!(v["archives"][0]["dropped"], 2, "{v}");
    assert!(v["archives"][0]["id"].is_null());
    assert!(listed(&env, "one").contains(&"src/iso/big.iso".to_string()));

    env.run(&[
        "recreate",
        &env.archive("one"),
        "-e",
        "src/iso",
        "--exclude-caches",
        "--keep-exclude-tags",
        "--exclude-if-present",
        ".nobackup",
        "--comment",
        "slimmed",
    ])
    .ok();
    assert_eq!(
        listed(&env, "one"),
        [
            "src",
            "src/cache",
            "src/cache/CACHEDIR.TAG",
            "src/keep",
            "src/keep/a.txt",
            "src/keep/z-big-link.iso",
            "src/tagged",
            "src/tagged/.nobackup",
        ]
    );
    assert_eq!(listed(&env, "two"), before_two, "other archives are untouched");
    let info = env.run(&["info", &env.archive("one")]).ok().stdout;
    assert!(info.contains("Comment: slimmed") && info.contains("Recreated by: "), "{info}");
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    fs::create_dir_all(env.path("out")).unwrap();
    env.extract_to("one", "out", &[]).ok();
    assert_eq!(fs::read(env.path("out/src/keep/z-big-link.iso")).unwrap(), xorshift(3 << 20, 7));
    assert_eq!(fs::read(env.path("out/src/keep/a.txt")).unwrap(), b"keep me");
    assert!(!env.path("out/src/iso").exists() && !env.path("out/src/cache/blob").exists());

    // --target keeps the original; without one, every archive is rewritten, and compact then
    // frees the dropped file's space.
    env.run(&["recreate", &env.archive("two"), "--target", "two-slim", "-e", "src/tagged"]).ok();
    assert_eq!(listed(&env, "two"), before_two);
    assert!(!listed(&env, "two-slim").iter().any(|p| p.starts_with("src/tagged")));
    env.run(&["recreate", &env.repo_str(), "-e", "*.iso"]).ok();
    let size = du(&env.repo());
    env.run(&["compact", "--grace", "0", &env.repo_str()]).ok();
    assert!(du(&env.repo()) + (2 << 20) < size, "compact freed the ISO: {} -> {}", size, du(&env.repo()));
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    let r = env.run(&["recreate", "--recompress", "-C", "zstd,9", &env.repo_str()]).code(2);
    assert!(r.stderr.contains("does not rewrite file contents"), "{}", r.stderr);
}

/// A recreate killed before its manifest commit leaves the archive as it was.
#[test]
fn recreate_killed_before_commit_leaves_the_original() {
    let env = Env::new();
    env.init("repokey");
    tree(&env);
    env.run(&["create", &env.archive("one"), "src"]).ok();
    let before = listed(&env, "one");
    let o = env
        .cmd()
        .env("GARRET_CRASH_AT", "before-manifest")
        .args(["recreate", &env.archive("one"), "-e", "src/iso"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(listed(&env, "one"), before);
    env.run(&["check", &env.repo_str()]).ok();
    env.run(&["recreate", &env.archive("one"), "-e", "src/iso"]).ok();
    assert!(!listed(&env, "one").iter().any(|p| p.starts_with("src/iso")));
}
