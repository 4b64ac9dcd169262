//! check: every kind of damage is found and named; key export/import/change-passphrase.

use crate::support::*;
use std::fs;
use std::os::unix::fs::FileExt;

fn setup() -> Env {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/victim"), xorshift(300_000, 1)).unwrap();
    fs::write(env.path("src/bystander"), xorshift(300_000, 2)).unwrap();
    env.create_json("a1", &["src"], &[]);
    env.create_json("a2", &["src"], &[]);
    env
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

/// (pack key, offset) of the first chunk of src/victim.
fn victim_location(env: &Env) -> (String, u64, String) {
    let repo = open_repo(env);
    let it = items(&repo, "a1").into_iter().find(|i| i.path == b"src/victim").unwrap();
    let loc = repo.index().lookup(&it.chunks[0].0).unwrap().unwrap();
    (garret::repository::Repository::pack_key(&loc.pack), loc.offset, it.chunks[0].0.hex())
}

/// [`setup`] with one bit flipped inside the first chunk of src/victim.
fn setup_with_damaged_victim() -> Env {
    let env = setup();
    let (pack, offset, _) = victim_location(&env);
    flip(&env.repo().join(&pack), offset + 500);
    env
}

fn flip(path: &std::path::Path, at: u64) {
    let f = fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x01], at).unwrap();
}

#[test]
fn clean_repository_checks_clean_at_every_level() {
    let env = setup();
    env.run(&["check", &env.repo_str()]).ok();
    let r = env.run(&["check", "--verify-data", "--json", &env.repo_str()]).ok();
    let v = json(&r);
    assert_eq!(v["complete"], true);
    assert_eq!(v["archives_checked"], 2);
    assert!(v["bytes_verified"].as_u64().unwrap() > 600_000);
    env.run(&["check", "--repository-only", &env.repo_str()]).ok();
    env.run(&["check", "--archives-only", &env.archive("a1")]).ok();
}

/// `check` counts the blobs no archive refers to: what `compact` would free.
#[test]
fn check_counts_the_blobs_compact_frees() {
    let env = setup();
    let repo = env.repo_str();
    let counts = |env: &Env| {
        let v = json(&env.run(&["check", "--json", &repo]).ok());
        (v["unreferenced_blobs"].as_u64().unwrap(), v["blobs_checked"].as_u64().unwrap())
    };
    assert_eq!(counts(&env).0, 0);
    fs::write(env.path("src/extra"), xorshift(200_000, 3)).unwrap();
    env.create_json("a3", &["src"], &[]);
    assert_eq!(counts(&env).0, 0);
    env.run(&["delete", &env.archive("a3")]).ok();
    let (unreferenced, before) = counts(&env);
    // a3's archive object, its item stream and the chunks of src/extra
    assert!(unreferenced >= 3, "{unreferenced}");
    env.run(&["compact", "--threshold", "0", &repo]).ok();
    let (left, after) = counts(&env);
    assert_eq!((left, before - after), (0, unreferenced));
}

#[test]
fn flipped_blob_byte_is_found_by_verify_data_and_named() {
    let env = setup();
    let (pack, offset, id) = victim_location(&env);
    flip(&env.repo().join(&pack), offset + 500);
    let r = env.run(&["check", "--verify-data", &env.repo_str()]).code(2);
    assert!(r.stderr.contains(&id), "names the blob: {}", r.stderr);
    assert!(
        r.stderr.contains("damaged: a1: src/victim") && r.stderr.contains("damaged: a2: src/victim"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("bystander"), "{}", r.stderr);
}

#[test]
fn flipped_bit_in_pack_header_is_found_by_plain_check() {
    let env = setup();
    let (pack, _, _) = victim_location(&env);
    let p = env.repo().join(&pack);
    let len = fs::metadata(&p).unwrap().len();
    flip(&p, len - 20);
    let r = env.run(&["check", &env.repo_str()]).code(2);
    assert!(r.stderr.contains(pack.rsplit('/').next().unwrap()), "names the pack: {}", r.stderr);
    assert!(r.stderr.contains("src/victim"), "names the files: {}", r.stderr);
}

#[test]
fn truncated_and_deleted_packs_are_found() {
    let env = setup();
    let (pack, _, _) = victim_location(&env);
    let p = env.repo().join(&pack);
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(fs::metadata(&p).unwrap().len() / 2).unwrap();
    drop(f);
    let r = env.run(&["check", &env.repo_str()]).code(2);
    assert!(r.stderr.contains("src/victim"), "{}", r.stderr);
    fs::remove_file(&p).unwrap();
    let r = env.run(&["check", &env.repo_str()]).code(2);
    assert!(r.stderr.contains("src/victim") && r.stderr.contains("a1"), "{}", r.stderr);
}

#[test]
fn damaged_index_is_rebuilt_and_check_is_clean() {
    let env = setup();
    let ix = env.repo().join("index.sqlite");
    let len = fs::metadata(&ix).unwrap().len();
    for at in (100..len).step_by(997) {
        flip(&ix, at);
    }
    let _ = fs::remove_file(env.repo().join("index.sqlite-wal"));
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    env.extract_to("a2", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
}

#[test]
fn max_duration_verifies_in_slices_that_resume() {
    let env = Env::new();
    env.init("none");
    fs::create_dir(env.path("src")).unwrap();
    // many packs: one per archive
    for i in 0..12 {
        fs::write(env.path("src/f"), xorshift(100_000, i)).unwrap();
        env.create_json(&format!("a{i}"), &["src"], &[]);
    }
    let r = env
        .run(&["check", "--verify-data", "--repository-only", "--max-duration", "0", "--json", &env.repo_str()])
        .ok();
    let first = json(&r);
    assert_eq!(first["complete"], false, "{first}");
    let r = env
        .run(&["check", "--verify-data", "--repository-only", "--max-duration", "3600", "--json", &env.repo_str()])
        .ok();
    let second = json(&r);
    assert_eq!(second["complete"], true);
    let full = json(&env.run(&["check", "--verify-data", "--repository-only", "--json", &env.repo_str()]).ok());
    let sum = first["bytes_verified"].as_u64().unwrap() + second["bytes_verified"].as_u64().unwrap();
    assert_eq!(sum, full["bytes_verified"].as_u64().unwrap(), "the two slices cover every pack exactly once");
}

#[test]
fn missing_repository_files_are_diagnosed() {
    let env = setup();
    fs::remove_dir_all(env.repo().join("manifests")).unwrap();
    let r = env.run(&["list", &env.repo_str()]).code(2);
    assert!(r.stderr.contains("no manifest"), "{}", r.stderr);
    let env = setup();
    fs::remove_file(env.repo().join("key")).unwrap();
    let r = env.run(&["list", &env.repo_str()]).code(2);
    assert!(r.stderr.contains("key") && r.stderr.lines().count() == 1, "{}", r.stderr);
}

#[test]
fn key_export_import_paper_and_change_passphrase() {
    let env = setup();
    let repo = env.repo_str();
    let key_file = env.path("key.json").display().to_string();
    let exported = json(&env.run(&["key", "export", "--json", &repo, &key_file]).ok());
    assert_eq!(exported["file"], key_file.as_str());
    assert_eq!(exported["form"], "file");
    assert_eq!(exported["bytes"].as_u64(), Some(fs::metadata(&key_file).unwrap().len()));
    // with --json, standard output is taken: the key cannot go there too
    let r = env.run(&["key", "export", "--json", &repo, "-"]).code(2);
    assert!(r.stdout.is_empty() && r.stderr.contains("--json needs an output FILE"), "{}", r.stderr);
    env.run(&["key", "export", "--paper", &repo, &env.path("key.txt").display().to_string()]).ok();
    let paper = fs::read_to_string(env.path("key.txt")).unwrap();
    assert!(paper.starts_with("garret key v1") && paper.lines().nth(1).unwrap().starts_with("001: "), "{paper}");
    // --qr-html: the key file as a QR code (the very bytes `key export` writes), and the paper form
    env.run(&["key", "export", "--qr-html", &repo, &env.path("key.html").display().to_string()]).ok();
    let html = fs::read_to_string(env.path("key.html")).unwrap();
    let code = qrcode::QrCode::with_error_correction_level(fs::read(&key_file).unwrap(), qrcode::EcLevel::M).unwrap();
    let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(400, 400).build();
    assert!(html.contains(&svg[svg.find("<svg").unwrap()..]) && !html.contains("<?xml"));
    assert!(html.contains(&format!("<pre>{paper}</pre>")), "{html}");
    // the key is lost from the repository: the recovery kit brings it back
    fs::remove_file(env.repo().join("key")).unwrap();
    env.run(&["list", &repo]).code(2);
    env.run(&["key", "import", "--paper", &repo, &env.path("key.txt").display().to_string()]).ok();
    env.run(&["list", &repo]).ok();
    fs::remove_file(env.repo().join("key")).unwrap();
    let imported = json(&env.run(&["key", "import", "--json", &repo, &key_file]).ok());
    assert_eq!(imported["imported"], true);
    assert_eq!(imported["repository"], repo.as_str());
    env.run(&["list", &repo]).ok();
    // a typo in the paper key is caught on its line
    let typo = paper.replacen("001: ", "001: 0", 1).replacen("001: 0", "001: ", 1);
    let mut lines: Vec<String> = typo.lines().map(String::from).collect();
    lines[2] = lines[2].replacen(|c: char| c.is_ascii_hexdigit(), "z", 1);
    fs::write(env.path("typo.txt"), lines.join("\n")).unwrap();
    let r = env.run(&["key", "import", "--paper", &repo, &env.path("typo.txt").display().to_string()]).code(2);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
    // import refuses a key that does not open with the passphrase
    let r = env
        .cmd()
        .env("GARRET_PASSPHRASE", "wrong")
        .args(["key", "import", &repo, &env.path("key.json").display().to_string()])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    // change the passphrase: the old one stops working, the new one works, data unchanged
    let r = env
        .cmd()
        .env("GARRET_NEW_PASSPHRASE", "a new passphrase")
        .args(["key", "change-passphrase", "--json", &repo])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    let changed: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(changed["passphrase_changed"], true);
    env.run(&["list", &repo]).code(2);
    let r = env
        .cmd()
        .env("GARRET_PASSPHRASE", "a new passphrase")
        .args(["extract", &env.archive("a1")])
        .current_dir(env.path(""))
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    // a key exported from another repository is refused
    let other = Env::new();
    other.init("repokey");
    other.run(&["key", "export", &other.repo_str(), &env.path("other.json").display().to_string()]).ok();
    let r = env
        .cmd()
        .env("GARRET_PASSPHRASE", "a new passphrase")
        .args(["key", "import", &repo, &env.path("other.json").display().to_string()])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("belongs to repository"));
}

#[test]
fn keyfile_mode_keeps_the_key_on_the_client() {
    let env = Env::new();
    env.init("keyfile");
    assert!(!env.repo().join("key").exists());
    // One key file (and the empty `lock` its rewrites take, repo-format.md section 15).
    let names: Vec<_> = fs::read_dir(env.path("keys")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.iter().filter(|n| *n != "lock").count(), 1, "{names:?}");
    fs::create_dir(env.path("src")).unwrap();
    env.create_json("a", &["src"], &[]);
    let saved = env.path("kit.json");
    env.run(&["key", "export", &env.repo_str(), &saved.display().to_string()]).ok();
    fs::remove_dir_all(env.path("keys")).unwrap();
    let r = env.run(&["list", &env.repo_str()]).code(2);
    assert!(r.stderr.contains("key import"), "{}", r.stderr);
    env.run(&["key", "import", &env.repo_str(), &saved.display().to_string()]).ok();
    env.run(&["list", &env.repo_str()]).ok();
}

fn pack_files(env: &Env) -> std::collections::BTreeSet<String> {
    immutable_files(&env.repo()).into_iter().map(|(n, _)| n).filter(|n| n.starts_with("data/")).collect()
}

#[test]
fn repair_zero_fills_damaged_files_then_heals_them() {
    let env = setup();
    let victim = fs::read(env.path("src/victim")).unwrap();
    let (pack, offset, _) = victim_location(&env);
    flip(&env.repo().join(&pack), offset + 500);
    let packs_before = pack_files(&env);
    let r = env.run(&["check", "--repair", "--verify-data", &env.repo_str()]).code(1);
    assert!(
        r.stderr.contains("repaired: a1: src/victim") && r.stderr.contains("repaired: a2: src/victim"),
        "{}",
        r.stderr
    );
    // the damaged pack is set aside, not deleted; nothing else disappears
    let after = pack_files(&env);
    let missing: Vec<_> = packs_before.difference(&after).collect();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(env.repo().join("quarantine").join(missing[0].rsplit('/').next().unwrap()).exists());
    // the repository is consistent again, and the rest of each archive restores
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
    let r = env.extract_to("a1", "out", &[]).code(1);
    assert!(r.stderr.contains("damaged file"), "{}", r.stderr);
    assert_eq!(fs::read(env.path("out/src/bystander")).unwrap(), fs::read(env.path("src/bystander")).unwrap());
    let got = fs::read(env.path("out/src/victim")).unwrap();
    assert_eq!(got.len(), victim.len(), "the damaged file keeps its length");
    assert!(got.iter().all(|&b| b == 0) || got != victim);
    let listed = env.run(&["list", "--json-lines", &env.archive("a1")]).ok().stdout;
    assert!(listed.lines().any(|l| l.contains("src/victim") && l.contains("\"healthy\":false")), "{listed}");
    // a new backup of the same file stores the lost chunk again; the next repair heals a1 and a2
    env.create_json("a3", &["src"], &[]);
    let r = env.run(&["check", "--repair", &env.repo_str()]).code(0);
    assert!(r.stderr.contains("healed: a1: src/victim") && r.stderr.contains("healed: a2: src/victim"), "{}", r.stderr);
    fs::remove_dir_all(env.path("out")).unwrap();
    env.extract_to("a1", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
}

#[test]
fn repair_rebuilds_a_deleted_index_with_everything() {
    let env = setup();
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = fs::remove_file(env.repo().join(f));
    }
    env.run(&["check", "--repair", &env.repo_str()]).ok();
    let names = env.run(&["list", "--short", &env.repo_str()]).ok().stdout;
    assert_eq!(names, "a1\na2\n");
    env.run(&["check", "--verify-data", &env.repo_str()]).ok();
}

#[test]
fn repair_survives_being_killed_and_finishes_on_rerun() {
    for site in ["pack-written:1", "pack-indexed:1", "before-manifest", "manifest-written"] {
        let env = setup_with_damaged_victim();
        let r = env
            .cmd()
            .env("GARRET_CRASH_AT", site)
            .args(["check", "--repair", "--verify-data", &env.repo_str()])
            .output()
            .unwrap();
        assert!(r.status.code().is_none(), "{site}: not reached: {}", String::from_utf8_lossy(&r.stderr));
        let r = env.run(&["check", "--repair", "--verify-data", &env.repo_str()]);
        assert!(r.code <= 1, "{site}: {}", r.stderr);
        env.run(&["check", "--verify-data", &env.repo_str()]).ok();
        let r = env.extract_to("a2", "out", &[]).code(1);
        assert!(r.stderr.contains("src/victim"), "{site}: {}", r.stderr);
        assert_eq!(fs::read(env.path("out/src/bystander")).unwrap(), fs::read(env.path("src/bystander")).unwrap());
    }
}

#[test]
fn repair_killed_at_random_moments_then_rerun() {
    for ms in [3u64, 10, 25, 50, 100] {
        let env = setup_with_damaged_victim();
        let mut child = env
            .cmd()
            .args(["check", "--repair", "--verify-data", &env.repo_str()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        let r = env.run(&["check", "--repair", "--verify-data", &env.repo_str()]);
        assert!(r.code <= 1, "{ms} ms: {}", r.stderr);
        // (this once failed unexplained in a full run: say everything if it happens again)
        let c = env.run(&["check", "--verify-data", &env.repo_str()]);
        assert!(
            c.code == 0,
            "{ms} ms: check after the second repair: rc {}: {}\nsecond repair said (rc {}): {}",
            c.code,
            c.stderr,
            r.code,
            r.stderr
        );
        let r = env.extract_to("a1", "out", &[]);
        assert!(r.code <= 1, "{ms} ms: {}", r.stderr);
        assert_eq!(fs::read(env.path("out/src/bystander")).unwrap(), fs::read(env.path("src/bystander")).unwrap());
    }
}

#[test]
fn long_paths_and_long_names_round_trip() {
    let env = Env::new();
    env.init("none");
    // a path just under PATH_MAX (4096): 255-byte names, 15 levels; a 4000-byte link target
    let mut p = env.path("src");
    let room = 4000 - p.as_os_str().len();
    for i in 0..room / 256 {
        p = p.join(format!("{i:02}{}", "d".repeat(253)));
    }
    fs::create_dir_all(&p).unwrap();
    fs::write(p.join("f"), b"deep and long").unwrap();
    std::os::unix::fs::symlink("t".repeat(4000), p.join("long-link")).unwrap();
    assert!(p.as_os_str().len() > 3700, "{}", p.as_os_str().len());
    env.create_json("a", &["src"], &[]);
    env.extract_to("a", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
}

/// Open `names` one after another below `root` (each lookup is one name, so the whole can be
/// longer than PATH_MAX).
fn open_deep(root: &std::path::Path, names: &[String]) -> std::os::fd::OwnedFd {
    use rustix::fs::{Mode, OFlags};
    let mut fd = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    for n in names {
        fd = rustix::fs::openat(&fd, n.as_str(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    }
    fd
}

#[test]
fn trees_deeper_than_path_max_round_trip() {
    use rustix::fs::{Mode, OFlags};
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src")).unwrap();
    // 40 levels of 250-byte names: paths of about 10,000 bytes, well past PATH_MAX (4096)
    let names: Vec<String> = (0..40).map(|i| format!("{i:02}{}", "x".repeat(248))).collect();
    let mut fd = rustix::fs::open(env.path("src"), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    for n in &names {
        rustix::fs::mkdirat(&fd, n.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(&fd, n.as_str(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    }
    let wr = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
    let f = rustix::fs::openat(&fd, "deep-file", wr, Mode::from_raw_mode(0o640)).unwrap();
    rustix::io::write(&f, b"at the bottom of a very deep tree").unwrap();
    let xattr = rustix::fs::fsetxattr(&f, "user.origin", b"deep", rustix::fs::XattrFlags::empty()).is_ok();
    drop(f);
    rustix::fs::symlinkat("deep-file", &fd, "deep-link").unwrap();
    rustix::fs::linkat(&fd, "deep-file", &fd, "deep-hardlink", rustix::fs::AtFlags::empty()).unwrap();

    std::thread::sleep(std::time::Duration::from_millis(1100)); // old enough for the files cache
    let r = env.run(&["create", &env.archive("a"), "src"]).ok();
    assert!(r.stderr.is_empty(), "no warnings expected: {}", r.stderr);
    let listed = env.run(&["list", "--short", &env.archive("a")]).ok().stdout;
    let deepest = format!("src/{}/deep-file", names.join("/"));
    assert!(listed.lines().any(|l| l == deepest), "the deep file is listed under its full path");
    env.extract_to("a", "out", &[]).ok();

    let got = open_deep(&env.path("out/src"), &names);
    let mut buf = vec![0u8; 100];
    let fr = rustix::fs::openat(&got, "deep-file", OFlags::RDONLY, Mode::empty()).unwrap();
    let n = rustix::io::read(&fr, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"at the bottom of a very deep tree");
    let st = rustix::fs::fstat(&fr).unwrap();
    assert_eq!(st.st_mode & 0o7777, 0o640);
    assert_eq!(st.st_nlink, 2, "the hardlink is restored as a hardlink");
    if xattr {
        let mut v = [0u8; 16];
        let n = rustix::fs::fgetxattr(&fr, "user.origin", &mut v).unwrap();
        assert_eq!(&v[..n], b"deep");
    }
    let target = rustix::fs::readlinkat(&got, "deep-link", Vec::new()).unwrap();
    assert_eq!(target.to_bytes(), b"deep-file");

    // An unchanged re-run takes the deep file from the files cache (status U: not read again).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = env.run(&["create", "--list", &env.archive("b"), "src"]).ok();
    assert!(r.stderr.lines().any(|l| l == format!("U {deepest}")), "{}", r.stderr);
}

/// A repair crashed after each of its durable writes (every synced object, pack and index
/// update, and around the manifest), then run again, leaves a repository that checks clean.
#[test]
fn repair_crashed_after_each_write_then_rerun_checks_clean() {
    let mut sites = vec![];
    for n in 1..12 {
        sites.push(format!("object-synced:{n}"));
    }
    for n in 1..4 {
        sites.push(format!("pack-written:{n}"));
        sites.push(format!("pack-indexed:{n}"));
    }
    sites.push("before-manifest".into());
    sites.push("manifest-written".into());
    let mut report = String::new();
    let mut crashed = 0;
    for site in &sites {
        let env = setup_with_damaged_victim();
        let r0 = env
            .cmd()
            .env("GARRET_CRASH_AT", site)
            .args(["check", "--repair", "--verify-data", &env.repo_str()])
            .output()
            .unwrap();
        crashed += r0.status.code().is_none() as usize;
        let r1 = env.run(&["check", "--repair", "--verify-data", &env.repo_str()]);
        let r = env.run(&["check", "--verify-data", &env.repo_str()]);
        if r.code != 0 || r1.code > 1 {
            report.push_str(&format!(
                "{site}: crashed {:?}; repair rc {} stderr {}\ncheck rc {} stderr {}\n\n",
                r0.status.code(),
                r1.code,
                r1.stderr,
                r.code,
                r.stderr
            ));
        }
    }
    assert!(report.is_empty(), "{report}");
    assert!(crashed >= 10, "only {crashed} of {} sites were reached", sites.len());
    eprintln!("repair crashed at {crashed} of {} sites", sites.len());
}

/// borg's archive filters choose which archives the archive level reads (`check --last 1`).
#[test]
fn archive_filters_choose_the_archives_to_check() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("old")).unwrap();
    fs::write(env.path("old/f"), xorshift(100_000, 7)).unwrap();
    env.create_json("old", &["old"], &[]);
    fs::create_dir(env.path("new")).unwrap();
    fs::write(env.path("new/g"), xorshift(100_000, 8)).unwrap();
    env.create_json("new", &["new"], &[]);
    // lose the data pack holding old/f: only the archive "old" is damaged
    let pack = {
        let repo = open_repo(&env);
        let it = items(&repo, "old").into_iter().find(|i| i.path == b"old/f").unwrap();
        let loc = repo.index().lookup(&it.chunks[0].0).unwrap().unwrap();
        garret::repository::Repository::pack_key(&loc.pack)
    };
    fs::remove_file(env.repo().join(pack)).unwrap();
    let repo = env.repo_str();
    let v = json(&env.run(&["check", "--archives-only", "--json", "--last", "1", &repo]).ok());
    assert_eq!(v["archives_checked"], 1);
    let r = env.run(&["check", "--archives-only", "-P", "ol", &repo]).code(2);
    assert!(r.stderr.contains("old/f"), "{}", r.stderr);
    // by name, "new" comes first and "old" last
    env.run(&["check", "--archives-only", "--sort-by", "name", "--first", "1", &repo]).ok();
    let r = env.run(&["check", "--archives-only", "--sort-by", "name", "--last", "1", &repo]).code(2);
    assert!(r.stderr.contains("old/f"), "{}", r.stderr);
    env.run(&["check", "--archives-only", "-a", "n*", &repo]).ok();
    for args in [vec!["check", "--last", "1", &env.archive("new")], vec!["check", "--repair", "--last", "1", &repo]] {
        let r = env.run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("select archives to check"), "{}", r.stderr);
    }
}

/// `delete --stats` of a damaged archive still deletes it: the archive it cannot read is left out
/// of the figures with a warning (exit 1), and so is a deletion whose figures need an archive
/// that cannot be read. `info` of an archive beside a damaged one shows its recorded size, with a
/// warning (exit 1).
#[test]
fn delete_stats_and_info_with_a_damaged_archive_warn() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir_all(env.path("src")).unwrap();
    for n in 1..=3u64 {
        fs::write(env.path(&format!("src/f{n}")), xorshift(3000, n)).unwrap();
        env.run(&["create", &env.archive(&format!("a{n}")), "src"]).ok();
    }
    let (pack, offset, length) = {
        let repo = open_repo(&env);
        let id = garret::archive::lookup(&repo, "a1").unwrap().id;
        let loc = repo.index().lookup(&id).unwrap().unwrap();
        (garret::repository::Repository::pack_key(&loc.pack), loc.offset, loc.length)
    };
    flip(&env.repo().join(&pack), offset + length as u64 / 2);
    // info on a3 cannot tell what a3 alone references (a1 may share it): it shows what a3 added
    // when it was made, and says so (exit 1)
    let r = env.run(&["info", &env.archive("a3")]).code(1);
    assert!(r.stderr.contains("cannot tell what each archive alone references"), "{}", r.stderr);
    assert!(r.stdout.contains("This archive:"), "{}", r.stdout);
    // a2 goes; a1, left, cannot be read, so what a2 frees is not known
    let r = env.run(&["delete", "--stats", &env.archive("a2")]).code(1);
    assert!(r.stderr.contains("the archives are deleted, but their figures are not known"), "{}", r.stderr);
    // a1 goes too, left out of the figures by name
    let r = env.run(&["delete", "--stats", &env.archive("a1")]).code(1);
    assert!(r.stderr.contains("--stats leaves out archive \"a1\""), "{}", r.stderr);
    assert!(r.stderr.contains("Deleted data:"), "{}", r.stderr);
    assert_eq!(env.run(&["list", "--short", &env.repo_str()]).ok().stdout, "a3\n");
}
