//! Hostile archives, built through the library: nothing is ever written outside the target
//! directory (borg CVE-2026-62268, duplicacy #691/#692).

use crate::support::*;
use garret::archive::item::{ChunkRef, Item, Kind};
use garret::archive::Archive;
use garret::compress::Compression;
use garret::id::ObjectType;
use garret::repository::{ClientDirs, OpenOptions, Repository};
use std::fs;

fn open_writer(env: &Env) -> Repository {
    let pf = || Ok(PASSPHRASE.as_bytes().to_vec());
    Repository::open(
        &env.repo(),
        OpenOptions {
            passphrase: &pf,
            client: ClientDirs { security: env.path("security"), keys: env.path("keys"), key_file: None },
            write_lock: Some(std::time::Duration::from_secs(1)),
            adopt: false,
        },
    )
    .unwrap()
}

fn file(repo: &mut Repository, path: &[u8], content: &[u8]) -> Item {
    let (id, _) = repo.save_blob(ObjectType::Data, content, Compression::None).unwrap();
    let mut it = Item::new(path.to_vec(), Kind::File);
    it.mode = 0o644;
    it.size = content.len() as u64;
    it.chunks = vec![ChunkRef(id, content.len() as u32)];
    it
}

fn symlink(path: &[u8], target: &[u8]) -> Item {
    let mut it = Item::new(path.to_vec(), Kind::Symlink);
    it.mode = 0o777;
    it.target = Some(target.to_vec());
    it
}

fn hardlink(path: &[u8], source: &[u8]) -> Item {
    let mut it = Item::new(path.to_vec(), Kind::Hardlink);
    it.mode = 0o644;
    it.source = Some(source.to_vec());
    it
}

#[test]
fn hostile_archive_writes_nothing_outside_the_target() {
    let env = Env::new();
    env.init("repokey");
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"original").unwrap();
    let outside_b = outside.as_os_str().as_encoded_bytes().to_vec();
    {
        let mut repo = open_writer(&env);
        let mut items = vec![
            file(&mut repo, b"../escaped-dotdot", b"evil"),
            file(&mut repo, b"a/../../escaped-embedded", b"evil"),
            file(&mut repo, &[&outside_b[..], b"/abs"].concat(), b"evil"),
            // symlinked parent: link -> outside, then link/x
            symlink(b"link", &outside_b),
            file(&mut repo, b"link/through-symlink", b"evil"),
            symlink(b"root", b"/"),
            file(&mut repo, b"root/tmp/garret-escape-test", b"evil"),
            // a hardlink whose source runs through the symlink
            hardlink(b"hl", &[b"link/victim"[..].to_vec()].concat()),
            // a normal file that the target already holds as a symlink to the outside
            file(&mut repo, b"preexisting", b"new content"),
            file(&mut repo, b"fine/ok", b"good"),
        ];
        items.insert(0, {
            let mut d = Item::new(b"fine".to_vec(), Kind::Dir);
            d.mode = 0o755;
            d
        });
        Archive::write_items(&mut repo, "evil", &items).unwrap();
    }
    let target = env.path("target");
    fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), target.join("preexisting")).unwrap();
    let r = env.run_in(&target, &["extract", &env.archive("evil")]);
    assert_eq!(r.code, 1, "refusals are warnings: {}", r.stderr);
    // nothing outside changed or appeared
    let mut names: Vec<_> =
        fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["victim"], "files appeared outside the target");
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"original");
    assert!(!env.path("escaped-dotdot").exists() && !env.path("escaped-embedded").exists());
    assert!(!std::path::Path::new("/tmp/garret-escape-test").exists());
    // the pre-existing symlink was replaced by the file, not written through
    let md = fs::symlink_metadata(target.join("preexisting")).unwrap();
    assert!(md.is_file());
    assert_eq!(fs::read(target.join("preexisting")).unwrap(), b"new content");
    assert_eq!(fs::read(target.join("fine/ok")).unwrap(), b"good");
    for needle in ["unsafe path", "refusing to extract through"] {
        assert!(r.stderr.contains(needle), "{needle:?} not in {}", r.stderr);
    }
}

#[test]
fn setid_bits_and_devices_need_explicit_opt_in() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP setid_bits_and_devices_need_explicit_opt_in: needs root");
        return;
    }
    let env = Env::new();
    env.init("none");
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("suid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("suid"), std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    env.create_json("a", &["src"], &[]);
    let r = env.extract_to("a", "plain", &[]).code(1);
    assert!(r.stderr.contains("--privileged"), "{}", r.stderr);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(env.path("plain/src/suid")).unwrap().mode() & 0o7777, 0o755, "setuid dropped");
    assert!(!env.path("plain/src/null").exists(), "no device node without opt-in");
    env.extract_to("a", "priv", &["--privileged"]).ok();
    assert_eq!(fs::metadata(env.path("priv/src/suid")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(fs::symlink_metadata(env.path("priv/src/null")).unwrap().rdev(), rustix::fs::makedev(1, 3));
}
