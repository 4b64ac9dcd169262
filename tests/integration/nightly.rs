//! The nightly run: files cache, dump streams, selection options, placeholders, listing, dry run.

use crate::support::*;
use std::fs;
use std::process::Stdio;

fn list_status(r: &Run) -> Vec<(char, String)> {
    r.stderr
        .lines()
        .filter_map(|l| {
            let mut c = l.chars();
            let s = c.next()?;
            (c.next() == Some(' ')).then(|| (s, l[2..].to_string()))
        })
        .collect()
}

/// Peak resident memory (VmHWM, KiB) of a garret run, read from /proc until it exits.
fn peak_rss_kib(env: &Env, args: &[&str]) -> u64 {
    let mut child = env.cmd().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = fs::read_to_string(&status) {
            if let Some(kib) = s.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                peak = peak.max(kib.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0));
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "garret {args:?}: {st}");
            return peak;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// A file changed ahead of many unchanged ones: the unchanged ones must not queue up behind its
/// chunk (which waits for a batch that unchanged files never fill). Measured against an
/// unchanged re-run of the same tree; before the fix, the 100,000 items queued cost about 30 MiB.
#[test]
fn a_changed_file_ahead_of_many_unchanged_ones_holds_no_queue() {
    let env = Env::new();
    env.init("none");
    for d in 0..100 {
        let dir = env.path(&format!("src/d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            fs::write(dir.join(format!("f{f:03}")), format!("{d} {f}\n")).unwrap();
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(1100)); // past the files cache's window
    let repo = env.repo_str();
    env.run(&["create", &format!("{repo}::a"), "src"]).ok();
    let unchanged = peak_rss_kib(&env, &["create", &format!("{repo}::b"), "src"]);
    fs::write(env.path("src/d00/f000"), "changed").unwrap();
    let changed = peak_rss_kib(&env, &["create", &format!("{repo}::c"), "src"]);
    assert!(changed < unchanged + 12 * 1024, "peak RSS {changed} KiB after one change, {unchanged} KiB unchanged");
    let r = env.run(&["diff", "--json-lines", &env.archive("b"), "c"]).ok();
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
}

/// One chunk slow to seal (a large one compressing on one core) must not hold up the rest: the
/// other core goes on sealing later chunks and their packs are written meanwhile. The first
/// sealing job is paused by a test hook until packs from later ones are on disk; a pipeline that
/// stores sealed chunks strictly in order would wait for it with both cores idle, write nothing
/// and fail here. The archive must still round-trip exactly.
#[test]
fn a_chunk_slow_to_seal_does_not_hold_up_the_others() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir_all(env.path("src")).unwrap();
    for f in 0..24u64 {
        fs::write(env.path(&format!("src/f{f:02}")), xorshift(1 << 20, 2 * f + 1)).unwrap();
    }
    let flag = env.path("paused");
    let mut child = env
        .cmd()
        .env("GARRET_PAUSE_AT", "seal-job:1")
        .env("GARRET_PAUSE_FILE", &flag)
        // Two workers even on a one-core machine: one is held at the hook.
        .env("RAYON_NUM_THREADS", "2")
        .args(["create", &env.archive("a"), "src"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let packs = || pack_count(&env.repo());
    let t = std::time::Instant::now();
    while !(flag.exists() && packs() >= 2) {
        if t.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("with the first sealing job held, {} packs were written (paused: {})", packs(), flag.exists());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    fs::remove_file(&flag).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    env.extract_to("a", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
}

#[test]
fn files_cache_skips_unchanged_files_and_notices_changes() {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/same"), xorshift(3 << 20, 1)).unwrap();
    fs::write(env.path("src/edit"), b"version one").unwrap();
    // old enough for the cache to trust its timestamps
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = env.run(&["create", "--list", &env.archive("a1"), "src"]).ok();
    let st = list_status(&r);
    assert!(st.contains(&('A', "src/same".into())), "{st:?}");
    let r = env.run(&["create", "--list", &env.archive("a2"), "src"]).ok();
    let st = list_status(&r);
    assert!(st.contains(&('U', "src/same".into())) && st.contains(&('U', "src/edit".into())), "{st:?}");
    fs::write(env.path("src/edit"), b"version two, longer").unwrap();
    let r = env.run(&["create", "--list", "--filter", "AM", &env.archive("a3"), "src"]).ok();
    let st = list_status(&r);
    assert_eq!(st, vec![('M', "src/edit".to_string())], "only the modified file is listed");
    env.extract_to("a3", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
    // --files-cache=disabled reads everything again
    let r = env.run(&["create", "--list", "--files-cache", "disabled", &env.archive("a4"), "src"]).ok();
    assert!(list_status(&r).iter().all(|(s, _)| *s != 'U'));
}

/// An unchanged file that had no extended attributes is not asked for them again (the files cache
/// remembers it), yet no attribute is ever missed: setting one changes the ctime, and without
/// ctime in `--files-cache` the attributes are listed every time.
#[test]
fn files_cache_never_hides_extended_attributes() {
    let env = Env::new();
    env.init("none");
    fs::create_dir(env.path("src")).unwrap();
    for f in ["plain", "tagged", "later", "later-mtime"] {
        fs::write(env.path(&format!("src/{f}")), f.repeat(100)).unwrap();
    }
    let set = |f: &str, v: &[u8]| {
        rustix::fs::setxattr(env.path(&format!("src/{f}")), "user.garret", v, rustix::fs::XattrFlags::empty())
    };
    match set("tagged", b"one") {
        Err(rustix::io::Errno::NOTSUP) => {
            eprintln!("SKIP files_cache_never_hides_extended_attributes: no user xattrs on this file system");
            return;
        }
        r => r.unwrap(),
    }
    let xattrs_of = |archive: &str, f: &str| -> Vec<(Vec<u8>, Vec<u8>)> {
        let path = format!("src/{f}").into_bytes();
        let item = items(&open_repo(&env), archive).into_iter().find(|i| i.path == path).unwrap();
        item.xattrs.iter().map(|x| (x.0.clone(), x.1.clone())).collect()
    };
    let attr = |v: &[u8]| vec![(b"user.garret".to_vec(), v.to_vec())];
    // old enough for the cache to trust its timestamps
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.create_json("a1", &["src"], &[]);
    let r = env.run(&["create", "--list", &env.archive("a2"), "src"]).ok();
    assert!(list_status(&r).iter().filter(|(s, _)| *s == 'U').count() == 4, "{}", r.stderr);
    assert_eq!(xattrs_of("a2", "tagged"), attr(b"one"));
    assert!(xattrs_of("a2", "plain").is_empty());
    set("later", b"two").unwrap();
    env.create_json("a3", &["src"], &[]);
    assert_eq!(xattrs_of("a3", "later"), attr(b"two"));
    // setxattr leaves the mtime alone: with --files-cache=mtime,size the file is a cache hit
    set("later-mtime", b"three").unwrap();
    let r = env.run(&["create", "--list", "--files-cache", "mtime,size", &env.archive("a4"), "src"]).ok();
    assert!(list_status(&r).contains(&('U', "src/later-mtime".into())), "{}", r.stderr);
    assert_eq!(xattrs_of("a4", "later-mtime"), attr(b"three"));
    assert_eq!(xattrs_of("a4", "tagged"), attr(b"one"));
}

#[test]
fn files_cache_never_reuses_chunks_the_repository_lost() {
    let env = Env::new();
    env.init("none");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), xorshift(2 << 20, 4)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.create_json("a1", &["src"], &[]);
    // every pack disappears (a damaged disk): the cache's chunk list is now worthless
    fs::remove_dir_all(env.repo().join("data")).unwrap();
    fs::create_dir(env.repo().join("data")).unwrap();
    let r = env.run(&["create", "--list", &env.archive("a2"), "src"]).ok();
    assert!(list_status(&r).contains(&('M', "src/f".into())), "{}", r.stderr);
    env.extract_to("a2", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
}

fn create_from_stdin(env: &Env, name: &str, data: &[u8], extra: &[&str]) -> Run {
    let a = env.archive(name);
    let mut args = vec!["create", "--json"];
    args.extend_from_slice(extra);
    args.push(&a);
    args.push("-");
    env.run_with_stdin(&args, data)
}

/// A pg_dump-like text dump: rows of a table; on later nights, a few thousand rows in a few
/// places changed (PostgreSQL rewrites updated rows where its free space is, not everywhere).
fn dump(rows: usize, night: u64) -> Vec<u8> {
    let mut out =
        b"-- PostgreSQL database dump\nCOPY public.accounts (aid, bid, abalance, filler) FROM stdin;\n".to_vec();
    for i in 0..rows {
        let hot = (i % 300_000) < 150; // 3 clusters of 150 rows each in 900k rows
        let bal = if night > 1 && hot { i as u64 * 7 + night } else { i as u64 * 3 };
        let mut x = (i as u64 + 1).wrapping_mul(0x9e3779b97f4a7c15);
        let filler: String = (0..24)
            .map(|_| {
                x ^= x >> 29;
                x = x.wrapping_mul(0xbf58476d1ce4e5b9);
                (b'a' + (x % 26) as u8) as char
            })
            .collect();
        out.extend_from_slice(format!("{i}\t{}\t{bal}\t{filler}\n", i / 100000).as_bytes());
    }
    out.extend_from_slice(b"\\.\n");
    out
}

#[test]
fn dump_streams_from_stdin_deduplicate_night_over_night() {
    let env = Env::new();
    env.init("repokey");
    let n1 = dump(900_000, 1);
    let n2 = dump(900_000, 2);
    // Uncompressed, so that the figures count chunks, not how well zstd packs the filler.
    let r = create_from_stdin(&env, "db-1", &n1, &["--stdin-name", "dumps/db.sql", "-C", "none"]).ok();
    let s1: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let r = create_from_stdin(&env, "db-2", &n2, &["--stdin-name", "dumps/db.sql", "-C", "none"]).ok();
    let s2: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let added1 = s1["archive"]["stats"]["deduplicated_size"].as_u64().unwrap();
    let added2 = s2["archive"]["stats"]["deduplicated_size"].as_u64().unwrap();
    assert!(n1.len() > 30 << 20, "{}", n1.len());
    // Each changed cluster re-stores the chunk(s) around it: at most two maximal chunks (4 MiB)
    // each, whatever the repository's secret chunker seed makes of the boundaries.
    let bound = 3 * 2 * (4u64 << 20) + (1 << 20);
    assert!(
        added2 < bound && added2 * 10 < added1 * 7,
        "night 2 stored {added2}, night 1 {added1}: the dumps should share most chunks"
    );
    env.extract_to("db-2", "out", &[]).ok();
    assert!(fs::read(env.path("out/dumps/db.sql")).unwrap() == n2, "night 2 restores night 2's bytes");
    // extract --stdout, as in `garret extract --stdout REPO::db | psql`
    let o = env.cmd().args(["extract", "--stdout", &env.archive("db-2")]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout == n2, "--stdout gives night 2's bytes");
    let o = env.cmd().args(["extract", "--stdout", &env.archive("db-1"), "dumps/db.sql"]).output().unwrap();
    assert!(o.stdout == n1);
    let o = env.cmd().args(["extract", "--stdout", &env.archive("db-1"), "no/such/path"]).output().unwrap();
    assert!(o.stdout.is_empty());
    let list = env.run(&["list", &env.archive("db-2")]).ok();
    assert!(list.stdout.starts_with("-rw-rw---- "), "{}", list.stdout);
}

#[test]
fn appended_dump_adds_little() {
    let env = Env::new();
    env.init("repokey");
    let n1 = dump(900_000, 1);
    let mut n2 = n1.clone();
    let tail = dump(20_000, 5);
    n2.truncate(n2.len() - 3);
    n2.extend_from_slice(&tail[80..]);
    create_from_stdin(&env, "d1", &n1, &["--compression", "none"]).ok();
    let r = create_from_stdin(&env, "d2", &n2, &["--compression", "none"]).ok();
    let s2: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let added = s2["archive"]["stats"]["deduplicated_size"].as_u64().unwrap();
    // the new tail plus the old last chunk(s), re-cut: at most two maximal chunks (4 MiB)
    let bound = tail.len() as u64 + 2 * (4 << 20) + (1 << 20);
    assert!(added < bound && added * 3 < n2.len() as u64, "an appended dump stored {added} of {} bytes", n2.len());
}

#[test]
fn content_from_command_success_and_failure() {
    let env = Env::new();
    env.init("repokey");
    let a = env.archive("cmd-ok");
    env.run(&["create", "--content-from-command", "--stdin-name", "seq.txt", &a, "--", "sh", "-c", "seq 1 200000"])
        .ok();
    env.extract_to("cmd-ok", "out", &[]).ok();
    let expect: String = (1..=200000).map(|i| format!("{i}\n")).collect();
    assert_eq!(fs::read_to_string(env.path("out/seq.txt")).unwrap(), expect);
    let before = immutable_files(&env.repo());
    let a = env.archive("cmd-bad");
    let r = env.run(&["create", "--content-from-command", &a, "--", "sh", "-c", "seq 1 1000; exit 3"]).code(2);
    assert!(r.stderr.contains("exit status: 3") && r.stderr.contains("not created"), "{}", r.stderr);
    let r = env.run(&["list", "--short", &env.repo_str()]).ok();
    assert_eq!(r.stdout.trim(), "cmd-ok", "a failed dump must not become an archive");
    // the data it stored is harmless and reused; the manifests are unchanged
    let manifests =
        |v: &Vec<(String, u64)>| v.iter().filter(|(n, _)| n.starts_with("manifests")).cloned().collect::<Vec<_>>();
    assert_eq!(manifests(&immutable_files(&env.repo())), manifests(&before));
    let r = env.run(&["create", "--content-from-command", &env.archive("x"), "--", "/nonexistent/command"]).code(2);
    assert!(r.stderr.contains("cannot run"), "{}", r.stderr);
}

#[test]
fn selection_options() {
    let env = Env::new();
    env.init("none");
    let s = env.path("src");
    for d in ["keep", "cache", "tagged", "build", "home/susan", "home/bob", "srv/keep", "srv/drop"] {
        fs::create_dir_all(s.join(d)).unwrap();
        fs::write(s.join(d).join("file.txt"), d).unwrap();
        fs::write(s.join(d).join("obj.o"), d).unwrap();
    }
    fs::write(s.join("cache/CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache").unwrap();
    fs::write(s.join("tagged/.nobackup"), b"").unwrap();
    fs::write(env.path("excludes.txt"), "# comment\n*.o\n").unwrap();
    fs::write(env.path("patterns.txt"), "+ src/home/susan\n- src/home/*\n! src/build\n").unwrap();
    let a = env.archive("sel");
    env.run(&[
        "create",
        &a,
        "src",
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--keep-exclude-tags",
        "--exclude-from",
        "excludes.txt",
        "--patterns-from",
        "patterns.txt",
        "--exclude",
        "src/srv/drop",
    ])
    .ok();
    let list = env.run(&["list", "--short", &a]).ok().stdout;
    let have: Vec<&str> = list.lines().collect();
    for p in [
        "src/keep/file.txt",
        "src/home/susan/file.txt",
        "src/srv/keep/file.txt",
        "src/cache/CACHEDIR.TAG",
        "src/tagged/.nobackup",
        "src/cache",
        "src/tagged",
    ] {
        assert!(have.contains(&p), "{p} missing from {have:?}");
    }
    for p in
        ["src/keep/obj.o", "src/home/bob", "src/build", "src/srv/drop", "src/cache/file.txt", "src/tagged/file.txt"]
    {
        assert!(!have.iter().any(|h| h.starts_with(p)), "{p} should be excluded: {have:?}");
    }
    let r = env.run(&["create", &env.archive("bad"), "src", "--exclude", "re:(x"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("invalid regular expression"), "{}", r.stderr);
}

/// borg's pattern semantics: a directory a `-` line excludes is still walked for what include
/// lines select below it, `--exclude` and `!` stop the walk, an include covers what is below it,
/// and `--exclude`/`--pattern` values apply in command-line order, before `--patterns-from`
/// files, before `--exclude-from` files.
#[test]
fn borg_patterns_reach_includes_below_excluded_directories() {
    let env = Env::new();
    env.init("none");
    let h = env.path("home");
    for d in ["susan", "susan/.cache", "susan/notes", "bobby/.cache", "bobby/work", "alice"] {
        fs::create_dir_all(h.join(d)).unwrap();
        fs::write(h.join(d).join("f.txt"), d).unwrap();
        fs::write(h.join(d).join("g.o"), d).unwrap();
    }
    fs::write(h.join("bobby/specialfile.txt"), b"special").unwrap();
    // The example of `borg help patterns`, with relative paths.
    fs::write(
        env.path("patterns.lst"),
        "P sh\nR home\n- home/*/.cache\n+ home/susan\n+ pf:home/bobby/specialfile.txt\n- home/*\n! home/alice\n",
    )
    .unwrap();
    let listed = |name: &str| -> Vec<String> {
        let a = env.archive(name);
        env.run(&["list", "--short", &a]).ok().stdout.lines().map(String::from).collect()
    };
    env.run(&["create", &env.archive("doc"), "--patterns-from", "patterns.lst"]).ok();
    assert_eq!(
        listed("doc"),
        [
            "home",
            "home/bobby/specialfile.txt",
            "home/susan",
            "home/susan/f.txt",
            "home/susan/g.o",
            "home/susan/notes",
            "home/susan/notes/f.txt",
            "home/susan/notes/g.o",
        ]
    );
    // Command-line order decides between an include and a later exclude, and the reverse.
    env.run(&[
        "create",
        &env.archive("inc"),
        "home",
        "--pattern",
        "+ home/susan",
        "-e",
        "home/*",
        "--pattern=- **/*.o",
    ])
    .ok();
    let inc = listed("inc");
    assert!(inc.contains(&"home/susan/notes/g.o".to_string()), "{inc:?}");
    assert!(!inc.iter().any(|p| p.starts_with("home/bobby") || p.starts_with("home/alice")), "{inc:?}");
    env.run(&[
        "create",
        &env.archive("exc"),
        "home",
        "--pattern=- **/*.o",
        "--pattern",
        "+ home/susan",
        "-e",
        "home/*",
    ])
    .ok();
    let exc = listed("exc");
    assert!(exc.contains(&"home/susan/notes/f.txt".to_string()) && !exc.iter().any(|p| p.ends_with(".o")), "{exc:?}");
    // --exclude-from files come last: the include of a --patterns-from file wins over them.
    fs::write(env.path("objects.lst"), "*.o\n").unwrap();
    fs::write(env.path("keep.lst"), "+ home/bobby/work\n").unwrap();
    env.run(&["create", &env.archive("files"), "home", "--exclude-from", "objects.lst", "--patterns-from", "keep.lst"])
        .ok();
    let files = listed("files");
    assert!(files.contains(&"home/bobby/work/g.o".to_string()), "{files:?}");
    assert!(!files.contains(&"home/alice/g.o".to_string()), "{files:?}");
    // extract and export-tar take the same flags; --stdout too.
    let r = env.extract_to("doc", "out", &["--pattern", "- home/susan/notes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(env.path("out/home/susan/f.txt").exists() && !env.path("out/home/susan/notes").exists());
    assert_eq!(fs::read(env.path("out/home/bobby/specialfile.txt")).unwrap(), b"special");
    let o = env.cmd().args(["extract", "--stdout", &env.archive("doc"), "--pattern=- home/susan"]).output().unwrap();
    assert_eq!(o.stdout, b"special");
    let l =
        env.run(&["list", "--short", &env.archive("doc"), "--pattern", "- home/susan/notes", "-e", "home/bobby"]).ok();
    assert_eq!(l.stdout, "home\nhome/susan\nhome/susan/f.txt\nhome/susan/g.o\n");
    let bad = env.run(&["create", &env.archive("bad"), "home", "--pattern", "home/bobby"]).code(2);
    assert!(bad.stderr.contains("must start with +, -, !, R or P"), "{}", bad.stderr);
}

#[test]
fn placeholders_dry_run_and_timestamp() {
    let env = Env::new();
    env.init("none");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), b"x").unwrap();
    let before = immutable_files(&env.repo());
    let r = env.run(&["create", "--dry-run", "--list", &env.archive("dry"), "src"]).ok();
    assert!(r.stderr.contains("- src/f"), "{}", r.stderr);
    assert_eq!(immutable_files(&env.repo()), before, "a dry run stores nothing");
    env.run(&["create", &env.archive("db-{now:%Y}-{hostname}"), "src"]).ok();
    env.run(&["create", "--timestamp", "2020-01-02T03:04:05", &env.archive("old"), "src"]).ok();
    let list = env.run(&["list", "--json", &env.repo_str()]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let names: Vec<&str> = v["archives"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    let year = chrono_year();
    // listed by archive time, as borg lists them: "old" first
    assert_eq!(names[0], "old");
    assert!(names[1].starts_with(&format!("db-{year}-")), "{names:?}");
    let old = &v["archives"][0]["time"];
    let t = old.as_str().unwrap();
    assert!(t.contains("2020-01-02") || t.contains("2020-01-01"), "{t}");
    let info = env.run(&["info", "--json", &env.archive("old")]).ok().stdout;
    assert!(info.contains("2020-01-0"), "{info}");

    // As borg: placeholders in the whole location (so other commands name the same archive),
    // in GARRET_REPO, in --comment; `{{` for a literal brace.
    let host = names[1].strip_prefix(&format!("db-{year}-")).unwrap().to_string();
    let db = format!("db-{year}-{host}");
    let r = env.run(&["list", "--short", &env.archive("db-{now:%Y}-{hostname}")]).ok();
    assert_eq!(r.stdout, "src\nsrc/f\n");
    env.run(&["create", "--comment", "by {user} on {hostname}", &env.archive("c-{{x}}"), "src"]).ok();
    let v: serde_json::Value =
        serde_json::from_str(&env.run(&["info", "--json", &env.archive("c-{{x}}")]).ok().stdout).unwrap();
    assert_eq!(v["archives"][0]["name"], "c-{x}");
    assert_eq!(v["archives"][0]["comment"], format!("by {} on {host}", whoami()).as_str());
    let parent = env.repo().parent().unwrap().to_path_buf();
    let templated = format!("{}/{{hostname}}.garret", parent.display());
    env.run(&["init", "-e", "none", &templated]).ok();
    assert!(parent.join(format!("{host}.garret")).join("config").exists());
    let by_env = |args: &[&str]| Run::from(env.cmd().env("GARRET_REPO", &templated).args(args).output().unwrap()).ok();
    by_env(&["create", "::{hostname}-a", "src"]);
    assert_eq!(by_env(&["list", "--short"]).stdout, format!("{host}-a\n"));
    assert!(env.run(&["list", &env.archive(&db)]).ok().stdout.contains("src/f"));
    let r = env.run(&["list", &format!("{}::x-{{nope}}", env.repo_str())]).code(2);
    assert!(r.stderr.contains("unknown placeholder"), "{}", r.stderr);
}

fn whoami() -> String {
    let out = std::process::Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn chrono_year() -> String {
    let out = std::process::Command::new("date").arg("+%Y").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The walk opens a batch of files ahead of reading them (so a disk can fetch them at once). With
/// few descriptors left it must fall back to opening each file when read, not report the rest of
/// the batch as unreadable.
#[test]
fn a_create_short_of_file_descriptors_reads_every_file() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src/sub")).unwrap();
    for f in 0..600 {
        fs::write(env.path(&format!("src/f{f:03}")), format!("file {f}\n").repeat(f)).unwrap();
    }
    fs::write(env.path("src/sub/big"), xorshift(3 << 20, 5)).unwrap();
    let mut c = env.cmd();
    c.args(["create", &env.archive("a"), "src"]);
    // SAFETY: setrlimit is async-signal-safe; it only lowers this child's own limit.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 48, rlim_max: 48 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let r = Run::from(c.output().unwrap());
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "a create with 48 descriptors");
    env.extract_to("a", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
}

/// The descriptor table is grown to 1024 entries before any thread starts (growing it later, one
/// doubling at a time from the walk's threads, waits for an RCU grace period each time). Seen
/// from outside while a create runs: the table is already that large while the create has opened
/// only a few files, and the descriptor used to grow it is not left open.
#[test]
fn the_descriptor_table_is_grown_before_the_walk_starts() {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    env.init("none");
    let mut c = env.cmd();
    c.args(["create", &env.archive("a"), "-"]).stdin(std::process::Stdio::piped());
    // SAFETY: getrlimit/setrlimit are async-signal-safe; this only raises the child's soft limit
    // on open files (to its hard limit at most), so the expected size does not depend on the shell.
    unsafe {
        c.pre_exec(|| {
            let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur = lim.rlim_max.min(4096);
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            Ok(())
        });
    }
    let mut child = c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&xorshift(1 << 20, 9)).unwrap();
    // garret now waits for the rest of standard input: the repository is open, the archive begun.
    let fd_size = |pid: u32| -> Option<u64> {
        let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        s.lines().find_map(|l| l.strip_prefix("FDSize:")).and_then(|v| v.trim().parse().ok())
    };
    let open_fds = || fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        seen = fd_size(pid);
        if seen.is_some_and(|n| n >= 1024) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (size, open) = (seen, open_fds());
    assert!(fs::read_link(format!("/proc/{pid}/fd/1023")).is_err(), "descriptor 1023 left open");
    stdin.write_all(b"tail").unwrap();
    drop(stdin);
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let hard = fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).and_then(|h| h.parse::<u64>().ok()))
        .unwrap_or(u64::MAX);
    let want = hard.min(1024);
    assert!(size.is_some_and(|n| n >= want), "FDSize {size:?} with {open} descriptors open; want at least {want}");
    assert!(open < 64, "{open} descriptors open: the table grew by itself, the test shows nothing");
    let o = env.cmd().args(["extract", "--stdout", &env.archive("a")]).output().unwrap();
    assert_eq!(o.stdout, [xorshift(1 << 20, 9), b"tail".to_vec()].concat(), "the archive holds what was piped in");
}

/// Reading files and listing directories for a backup leaves their access times as they were
/// (O_NOATIME, as borg): a nightly run does not dirty an inode per file read, and programs that
/// compare access and modification times (new-mail checks) are not misled. Where the file system
/// does not record access times at all, the test has nothing to show and says so.
#[test]
fn a_backup_leaves_access_times_alone() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src/d")).unwrap();
    fs::write(env.path("src/f"), b"read by the backup\n".repeat(1000)).unwrap();
    fs::write(env.path("src/d/g"), xorshift(300_000, 4)).unwrap();
    fs::write(env.path("control"), b"read by the test").unwrap();
    // Read (its signature checked) and then excluded, with --exclude-caches.
    fs::create_dir(env.path("src/cache")).unwrap();
    fs::write(env.path("src/cache/CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55\n").unwrap();
    let accessed = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_577_836_800); // 2020-01-01
    let modified = accessed + std::time::Duration::from_secs(86_400 * 400);
    let paths = ["src", "src/f", "src/d", "src/d/g", "src/cache/CACHEDIR.TAG", "control"];
    for p in paths {
        let times = fs::FileTimes::new().set_accessed(accessed).set_modified(modified);
        fs::File::open(env.path(p)).unwrap().set_times(times).unwrap();
    }
    let atime = |p: &str| fs::metadata(env.path(p)).unwrap().atime();
    let old = atime("control");
    fs::read(env.path("control")).unwrap();
    if atime("control") == old {
        eprintln!("SKIP: this file system does not update access times on read (noatime mount)");
        return;
    }
    let r = env.run(&["create", "--exclude-caches", &env.archive("a"), "src"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    for p in &paths[..5] {
        assert_eq!(atime(p), old, "{p}: access time changed by the backup");
    }
    env.extract_to("a", "out", &[]).ok();
    assert!(!env.path("out/src/cache").exists(), "the tagged directory is excluded");
    fs::remove_dir_all(env.path("src/cache")).unwrap();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
}

#[test]
fn changing_and_vanishing_files_are_warnings() {
    let env = Env::new();
    env.init("none");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/steady"), b"steady").unwrap();
    // a file that grows while garret reads it: a writer appends continuously
    let growing = env.path("src/growing.log");
    fs::write(&growing, xorshift(30 << 20, 3)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let g2 = growing.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(g2).unwrap();
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            f.write_all(b"more log lines\n").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
    let r = env.run(&["create", &env.archive("a"), "src"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("changed while we read it"), "{}", r.stderr);
    let list = env.run(&["list", "--short", &env.archive("a")]).ok().stdout;
    assert!(list.contains("src/steady") && list.contains("src/growing.log"));
}

#[test]
fn progress_flag_shows_totals() {
    let env = Env::new();
    env.init("none");
    fs::create_dir(env.path("src")).unwrap();
    for i in 0..50 {
        fs::write(env.path(&format!("src/f{i}")), xorshift(2 << 20, i)).unwrap();
    }
    let r = env.run(&["create", "--progress", &env.archive("p"), "src"]).ok();
    assert!(r.stderr.contains("files,") && r.stderr.contains("read"), "{}", r.stderr);
    let r = env.run(&["create", &env.archive("q"), "src"]).ok();
    assert!(r.stderr.is_empty(), "quiet without a terminal: {}", r.stderr);
}

#[test]
fn one_file_system_keeps_the_mount_point_but_not_what_is_mounted_there() {
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src/mnt")).unwrap();
    fs::write(env.path("src/here"), b"on the root's filesystem").unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "garret-test", env.path("src/mnt").to_str().unwrap()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIP one_file_system: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(env.path("src/mnt"));
    fs::write(env.path("src/mnt/elsewhere"), b"on another filesystem").unwrap();
    env.run(&["create", "--one-file-system", &env.archive("one"), "src"]).ok();
    env.run(&["create", &env.archive("all"), "src"]).ok();
    let one = env.run(&["list", "--short", &env.archive("one")]).ok().stdout;
    let all = env.run(&["list", "--short", &env.archive("all")]).ok().stdout;
    assert_eq!(one.lines().collect::<Vec<_>>(), ["src", "src/here", "src/mnt"]);
    assert_eq!(all.lines().collect::<Vec<_>>(), ["src", "src/here", "src/mnt", "src/mnt/elsewhere"]);
}

/// borg's --numeric-ids (--numeric-owner), --noxattrs and --noacls on create and extract, and the
/// global --umask: every file garret makes in the repository gets the mask.
#[test]
fn numeric_ids_noxattrs_and_umask() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.run(&["--umask", "0077", "init", "-e", "none", &env.repo_str()]).ok();
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), b"content").unwrap();
    let has_xattr =
        rustix::fs::setxattr(env.path("src/f").as_path(), "user.garret", b"v", rustix::fs::XattrFlags::empty()).is_ok();
    env.run(&["--umask", "0077", "create", &env.archive("plain"), "src"]).ok();
    env.run(&["create", "--umask", "0077", "--numeric-owner", "--noxattrs", &env.archive("bare"), "src"]).ok();
    // every file of the repository was made under the mask (the index cache included)
    let mut checked = 0;
    for e in walkdir::WalkDir::new(env.repo()).into_iter().flatten().filter(|e| e.file_type().is_file()) {
        let mode = e.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{}: {mode:o}", e.path().display());
        checked += 1;
    }
    assert!(checked >= 6, "config, key, index, packs and manifests: {checked}");
    env.run(&["create", "--numeric-ids", "--noacls", &env.archive("noacls"), "src"]).ok();
    let repo = open_repo(&env);
    let file = |archive: &str| items(&repo, archive).into_iter().find(|i| i.path == b"src/f").unwrap();
    let (plain, bare, noacls) = (file("plain"), file("bare"), file("noacls"));
    assert!(plain.user.is_some() && plain.group.is_some(), "names stored by default: {plain:?}");
    assert_eq!((bare.user.as_deref(), bare.group.as_deref()), (None, None));
    assert_eq!((bare.uid, bare.gid), (plain.uid, plain.gid));
    assert_eq!((noacls.user.as_deref(), noacls.group.as_deref()), (None, None));
    if has_xattr {
        assert!(plain.xattrs.iter().any(|x| x.0 == b"user.garret" && x.1 == b"v"), "{plain:?}");
        assert!(bare.xattrs.is_empty(), "{bare:?}");
        assert!(noacls.xattrs.iter().any(|x| x.0 == b"user.garret"), "--noacls keeps other attributes");
        // and on extract
        let xattr = |dir: &str| {
            let mut buf = [0u8; 16];
            rustix::fs::getxattr(env.path(dir).join("src/f").as_path(), "user.garret", &mut buf).ok()
        };
        env.extract_to("plain", "all", &[]).ok();
        env.extract_to("plain", "none", &["--noxattrs"]).ok();
        env.extract_to("plain", "noacl", &["--noacls", "--numeric-owner"]).ok();
        assert_eq!(xattr("all"), Some(1));
        assert_eq!(xattr("none"), None);
        assert_eq!(xattr("noacl"), Some(1));
    }
}

/// Feed `data` into the FIFO at `path` once a reader opens it; gives up after 60 s (so a failing
/// test ends instead of blocking on the FIFO).
fn feed_fifo(path: std::path::PathBuf, data: Vec<u8>) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        for _ in 0..6000 {
            // O_NONBLOCK: fails with ENXIO while no reader has the FIFO open
            if let Ok(f) = fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&path) {
                let mut f = f;
                let _ = rustix::fs::fcntl_setfl(&f, rustix::fs::OFlags::empty());
                return f.write_all(&data).is_ok();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    })
}

/// borg's --read-special: a FIFO (here fed by a writer, as a dump tool would) and a symlink to
/// one outside the tree are stored as regular files with what was read; without the flag the
/// FIFO is stored as a FIFO and not read.
#[test]
fn read_special_stores_what_a_fifo_delivers() {
    let env = Env::new();
    env.init("none");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/plain"), b"plain").unwrap();
    for f in ["src/fifo", "outside-fifo"] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            env.path(f).as_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }
    std::os::unix::fs::symlink(env.path("outside-fifo"), env.path("src/link")).unwrap();
    let (a, b) = (xorshift(3_000_000, 5), xorshift(700_000, 6));
    let feeders = [feed_fifo(env.path("src/fifo"), a.clone()), feed_fifo(env.path("outside-fifo"), b.clone())];
    env.run(&["create", "--read-special", &env.archive("special"), "src"]).ok();
    assert!(feeders.into_iter().all(|f| f.join().unwrap()), "both FIFOs were read");
    env.run(&["create", &env.archive("plain"), "src"]).ok();
    let repo = open_repo(&env);
    let kinds = |name: &str| -> Vec<(Vec<u8>, garret::archive::item::Kind, u64)> {
        items(&repo, name).into_iter().map(|i| (i.path, i.kind, i.size)).collect()
    };
    use garret::archive::item::Kind;
    let special = kinds("special");
    assert!(special.contains(&(b"src/fifo".to_vec(), Kind::File, a.len() as u64)), "{special:?}");
    assert!(special.contains(&(b"src/link".to_vec(), Kind::File, b.len() as u64)), "{special:?}");
    let plain = kinds("plain");
    assert!(plain.contains(&(b"src/fifo".to_vec(), Kind::Fifo, 0)), "{plain:?}");
    assert!(plain.iter().any(|(p, k, _)| p == b"src/link" && *k == Kind::Symlink), "{plain:?}");
    env.extract_to("special", "x", &[]).ok();
    assert_eq!(fs::read(env.path("x/src/fifo")).unwrap(), a);
    assert_eq!(fs::read(env.path("x/src/link")).unwrap(), b);
}

/// borg's --exclude-nodump: entries flagged "no dump" (chattr +d) are left out, a flagged
/// directory with everything below it.
#[test]
fn exclude_nodump_leaves_out_flagged_files_and_directories() {
    let env = Env::new();
    env.init("none");
    for d in ["src", "src/skipdir"] {
        fs::create_dir(env.path(d)).unwrap();
    }
    for f in ["src/keep", "src/skipfile", "src/skipdir/inner"] {
        fs::write(env.path(f), f.as_bytes()).unwrap();
    }
    for p in ["src/skipfile", "src/skipdir"] {
        let f = fs::File::open(env.path(p)).unwrap();
        let flags = rustix::fs::ioctl_getflags(&f).expect("file flags (chattr) on the test file system");
        rustix::fs::ioctl_setflags(&f, flags | rustix::fs::IFlags::NODUMP).unwrap();
    }
    let r = env.run(&["create", "--exclude-nodump", "--list", &env.archive("a"), "src"]).ok();
    assert!(r.stderr.contains("x src/skipfile") && r.stderr.contains("x src/skipdir"), "{}", r.stderr);
    env.run(&["create", &env.archive("b"), "src"]).ok();
    let repo = open_repo(&env);
    let paths = |name: &str| -> Vec<String> { items(&repo, name).iter().map(|i| i.path_lossy()).collect() };
    assert_eq!(paths("a"), ["src", "src/keep"]);
    assert_eq!(paths("b"), ["src", "src/keep", "src/skipdir", "src/skipdir/inner", "src/skipfile"]);
}

/// --stdin-user and --stdin-group set the owner of the file made from standard input (ids looked
/// up here, 0 for names unknown here); by default it is the running user's.
#[test]
fn stdin_owner_options() {
    let env = Env::new();
    env.init("none");
    create_from_stdin(&env, "default", b"one", &[]).ok();
    create_from_stdin(&env, "root", b"two", &["--stdin-user", "root", "--stdin-group", "root", "--stdin-mode", "0600"])
        .ok();
    create_from_stdin(&env, "ghost", b"three", &["--stdin-user", "no-such-user-here", "--stdin-group", "nogroup-x"])
        .ok();
    let repo = open_repo(&env);
    let item = |name: &str| items(&repo, name).into_iter().next().unwrap();
    let me = rustix::process::getuid().as_raw();
    let d = item("default");
    assert_eq!(d.uid, me);
    assert!(d.user.is_some());
    let r = item("root");
    assert_eq!(
        (r.user.as_deref(), r.group.as_deref(), r.uid, r.gid, r.mode),
        (Some("root"), Some("root"), 0, 0, 0o600)
    );
    let g = item("ghost");
    assert_eq!(
        (g.user.as_deref(), g.group.as_deref(), g.uid, g.gid),
        (Some("no-such-user-here"), Some("nogroup-x"), 0, 0)
    );
}

/// borg's --paths-from-stdin and --paths-from-command: exactly the listed paths, in the order
/// given, directories without their contents; a failing command creates nothing.
#[test]
fn paths_from_stdin_and_command_archive_exactly_the_listed_paths() {
    let env = Env::new();
    env.init("none");
    fs::create_dir_all(env.path("src/dir")).unwrap();
    for f in ["src/dir/a", "src/dir/b", "src/other"] {
        fs::write(env.path(f), f.as_bytes()).unwrap();
    }
    std::os::unix::fs::symlink("dir", env.path("src/link")).unwrap();
    let with_stdin = |args: &[&str], input: &[u8]| env.run_with_stdin(args, input);
    with_stdin(&["create", "--paths-from-stdin", &env.archive("stdin")], b"src/dir\nsrc/dir/a\n\nsrc/link\n").ok();
    env.run(&[
        "create",
        "--paths-from-command",
        "--paths-delimiter",
        "\\0",
        &env.archive("cmd"),
        "--",
        "sh",
        "-c",
        "printf 'src/other\\0src/dir/b\\0'",
    ])
    .ok();
    let r =
        env.run(&["create", "--paths-from-command", &env.archive("bad"), "--", "sh", "-c", "echo src/other; exit 3"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("failed") && r.stderr.contains("not created"), "{}", r.stderr);
    let r = with_stdin(&["create", "--paths-from-stdin", &env.archive("bad2"), "src"], b"src/other\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    let repo = open_repo(&env);
    let paths = |name: &str| -> Vec<String> { items(&repo, name).iter().map(|i| i.path_lossy()).collect() };
    assert_eq!(paths("stdin"), ["src/dir", "src/dir/a", "src/link"]);
    let link = items(&repo, "stdin").into_iter().find(|i| i.path == b"src/link").unwrap();
    assert_eq!(
        (link.kind, link.target.as_deref()),
        (garret::archive::item::Kind::Symlink, Some(&b"dir"[..])),
        "a listed symlink is stored, not followed"
    );
    assert_eq!(paths("cmd"), ["src/other", "src/dir/b"]);
    assert!(garret::archive::lookup(&repo, "bad").is_err() && garret::archive::lookup(&repo, "bad2").is_err());
    env.extract_to("stdin", "x", &[]).ok();
    assert_eq!(fs::read(env.path("x/src/dir/a")).unwrap(), b"src/dir/a");
    assert!(!env.path("x/src/dir/b").exists());
}
