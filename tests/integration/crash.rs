//! Crashes during create (injected aborts at each commit step, and real kill -9 at random
//! moments): earlier archives still list and extract identically, the next create succeeds, and
//! it reuses the packs the killed run made durable.

use crate::support::*;
use std::fs;
use std::time::Duration;

fn setup() -> Env {
    let env = Env::new();
    env.init("repokey");
    crate::round_trip::build_tree(&env.path("base"), false);
    env.create_json("base", &["base"], &[]);
    fs::create_dir(env.path("big")).unwrap();
    // ~56 MiB of incompressible data: several packs
    for i in 0..7 {
        fs::write(env.path(&format!("big/f{i}")), xorshift(8 << 20, 100 + i)).unwrap();
    }
    env
}

#[track_caller]
fn assert_base_intact(env: &Env, tag: &str) {
    let r = env.run(&["list", "--short", &env.repo_str()]).ok();
    assert!(r.stdout.lines().any(|l| l == "base"), "{tag}: {}", r.stdout);
    let out = format!("out-{tag}");
    env.extract_to("base", &out, &[]).ok();
    assert_same_tree(&env.path("base"), &env.path(&out).join("base"));
    fs::remove_dir_all(env.path(&out)).unwrap();
}

#[test]
fn injected_crash_at_every_commit_step() {
    for site in [
        "object-synced:1",
        "pack-written:1",
        "pack-indexed:2",
        "object-synced:4",
        "before-manifest",
        "manifest-written",
    ] {
        let env = setup();
        let a = env.archive("big");
        let r = env.cmd().env("GARRET_CRASH_AT", site).args(["create", &a, "big"]).output().unwrap();
        assert!(
            r.status.code().is_none(),
            "{site}: the run must have been aborted: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(env.repo().join("lock").exists(), "{site}: a killed writer leaves its lock");
        assert_base_intact(&env, site.split(':').next().unwrap());
        let listed = env.run(&["list", "--short", &env.repo_str()]).ok().stdout;
        let committed = listed.lines().any(|l| l == "big");
        assert_eq!(committed, site == "manifest-written", "{site}: archive visible only after its manifest: {listed}");
        // the next create succeeds (breaking the dead writer's lock) and restores exactly
        let name = if committed { "big2" } else { "big" };
        let s = env.create_json(name, &["big"], &[]);
        let added = s["archive"]["stats"]["deduplicated_size"].as_u64().unwrap();
        if ["pack-indexed:2", "pack-indexed:3", "object-synced:4", "pack-written:3", "before-manifest"].contains(&site)
        {
            // durable packs of the killed run were reused
            assert!(added < 40 << 20, "{site}: the rerun stored {added} bytes again");
        }
        env.extract_to(name, "out", &[]).ok();
        assert_same_tree(&env.path("big"), &env.path("out/big"));
    }
}

#[test]
fn kill_9_at_random_moments() {
    let env = setup();
    let a = env.archive("big");
    // Delays spread over the run (a create of this data takes a fraction of a second to seconds).
    for (i, ms) in [5u64, 40, 90, 150, 250, 400].iter().enumerate() {
        let mut child = env
            .cmd()
            .args(["create", &a, "big"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        assert_base_intact(&env, &format!("kill{i}"));
        if status.success() {
            // finished before the kill: remove nothing, just use another name next time
            break;
        }
    }
    let listed = env.run(&["list", "--short", &env.repo_str()]).ok().stdout;
    let name = if listed.lines().any(|l| l == "big") { "big-again" } else { "big" };
    env.create_json(name, &["big"], &[]);
    env.extract_to(name, "out", &[]).ok();
    assert_same_tree(&env.path("big"), &env.path("out/big"));
}
