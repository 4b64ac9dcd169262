//! Bad input: one-line error, exit code 2, repository unchanged.

use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

fn setup() -> Env {
    let env = Env::new();
    env.init("repokey");
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/f"), b"data").unwrap();
    env.create_json("first", &["src"], &[]);
    env
}

#[track_caller]
fn one_line_error(r: &Run, needle: &str) {
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {}", r.stderr);
    assert!(lines[0].starts_with("garret: error: "), "{}", lines[0]);
    assert!(lines[0].contains(needle), "expected {needle:?} in {}", lines[0]);
}

#[test]
fn wrong_passphrase() {
    let env = setup();
    let before = immutable_files(&env.repo());
    let r = env.cmd().env("GARRET_PASSPHRASE", "wrong").args(["list", &env.repo_str()]).output().unwrap();
    let r = Run {
        code: r.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&r.stdout).into(),
        stderr: String::from_utf8_lossy(&r.stderr).into(),
    };
    one_line_error(&r, "wrong passphrase");
    let r = env.cmd().env("GARRET_PASSPHRASE", "wrong").args(["create", &env.archive("x"), "src"]).output().unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(immutable_files(&env.repo()), before);
    assert!(!env.repo().join("lock").exists());
}

#[test]
fn missing_passphrase_without_terminal() {
    let env = setup();
    let r = env.cmd().env_remove("GARRET_PASSPHRASE").args(["list", &env.repo_str()]).output().unwrap();
    let r = Run {
        code: r.status.code().unwrap(),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&r.stderr).into(),
    };
    one_line_error(&r, "GARRET_PASSPHRASE");
}

#[test]
fn passcommand_supplies_the_passphrase() {
    let env = setup();
    let r = env
        .cmd()
        .env_remove("GARRET_PASSPHRASE")
        .env("GARRET_PASSCOMMAND", format!("echo '{PASSPHRASE}'"))
        .args(["list", "--short", &env.repo_str()])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "first");
}

#[test]
fn not_a_repository() {
    let env = setup();
    fs::create_dir(env.path("plain")).unwrap();
    let r = env.run(&["list", &env.path("plain").display().to_string()]);
    one_line_error(&r, "is not a garret repository");
    let r = env.run(&["list", &env.path("nowhere").display().to_string()]);
    one_line_error(&r, "is not a garret repository");
    assert!(!env.path("nowhere").exists());
}

#[test]
fn unknown_format_version() {
    let env = setup();
    let cfg = env.repo().join("config");
    let now = garret::repository::FORMAT_VERSION;
    let text =
        fs::read_to_string(&cfg).unwrap().replace(&format!("\"version\": {now}"), &format!("\"version\": {}", now + 1));
    assert!(text.contains(&format!("\"version\": {}", now + 1)));
    fs::write(&cfg, &text).unwrap();
    let before = immutable_files(&env.repo());
    let r = env.run(&["create", &env.archive("x"), "src"]);
    one_line_error(&r, "newer than this garret supports");
    assert_eq!(immutable_files(&env.repo()), before);
}

#[test]
fn duplicate_archive_name() {
    let env = setup();
    let before = immutable_files(&env.repo());
    let r = env.run(&["create", &env.archive("first"), "src"]);
    one_line_error(&r, "already exists");
    assert_eq!(immutable_files(&env.repo()), before);
}

#[test]
fn invalid_archive_names() {
    let env = setup();
    for bad in ["a/b", ""] {
        let r = env.run(&["create", &env.archive(bad), "src"]);
        assert_eq!(r.code, 2, "{bad:?}: {}", r.stderr);
    }
}

/// Cron lines written for borg keep working: borg's other compression algorithms are read as
/// zstd levels; `obfuscate` (garret pads every blob already) is refused before anything is written.
#[test]
fn borg_compression_specs_are_accepted_and_obfuscate_is_refused() {
    let env = setup();
    for (i, spec) in ["lz4", "zlib,6", "lzma", "auto,lz4"].iter().enumerate() {
        env.run(&["create", "-C", spec, &env.archive(&format!("c{i}")), "src"]).ok();
    }
    let r = env.run(&["list", "--short", &env.repo_str()]).ok();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), ["first", "c0", "c1", "c2", "c3"]);
    env.extract_to("c0", "x", &[]).ok();
    assert_eq!(std::fs::read(env.path("x/src/f")).unwrap(), b"data");
    let before = immutable_files(&env.repo());
    let r = env.run(&["create", "--compression", "obfuscate,110,zstd,3", &env.archive("o"), "src"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("pads every blob"), "{}", r.stderr);
    assert_eq!(immutable_files(&env.repo()), before);
}

/// A source path that does not exist, when others do, is a warning naming it (exit 1), and the
/// others are archived, as borg does. When none exists it is an error and no archive is made.
#[test]
fn missing_source_path() {
    let env = setup();
    fs::write(env.path("other"), b"other data").unwrap();
    let r = env.run(&["create", &env.archive("x"), "src", "does-not-exist", "other", "gone/too"]).code(1);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    assert!(lines[0].starts_with("garret: warning: source path does-not-exist: No such file"), "{}", lines[0]);
    assert!(lines[0].ends_with("; skipped"), "{}", lines[0]);
    assert!(lines[1].contains("source path gone/too"), "{}", lines[1]);
    let r = env.run(&["list", "--short", &env.archive("x")]).ok();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), ["src", "src/f", "other"]);
    env.extract_to("x", "out", &[]).ok();
    assert_eq!(fs::read(env.path("out/other")).unwrap(), b"other data");

    let before = immutable_files(&env.repo());
    let r = env.run(&["create", &env.archive("y"), "does-not-exist"]);
    one_line_error(&r, "source path does-not-exist: No such file");
    let r = env.run(&["create", &env.archive("y"), "does-not-exist", "gone/too"]);
    one_line_error(&r, "none of the source paths can be read: source path does-not-exist: No such file");
    assert!(r.stderr.contains("and 1 more"), "{}", r.stderr);
    assert_eq!(immutable_files(&env.repo()), before);
    let r = env.run(&["list", "--short", &env.repo_str()]).ok();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), ["first", "x"]);
}

#[test]
fn unknown_archive() {
    let env = setup();
    let r = env.extract_to("nope", "out", &[]);
    one_line_error(&r, "does not exist");
}

/// An unreadable source file is a warning (exit 1); everything else is archived. As root (who
/// can read anything) the run drops to `nobody` with setpriv.
#[test]
fn unreadable_source_file_is_a_warning() {
    let env = Env::new();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    fs::create_dir(env.path("src")).unwrap();
    fs::write(env.path("src/readable"), b"fine").unwrap();
    fs::write(env.path("src/secret"), b"no").unwrap();
    fs::set_permissions(env.path("src/secret"), fs::Permissions::from_mode(0o000)).unwrap();
    let root = rustix::process::geteuid().is_root();
    let run = |args: &[&str]| -> Run {
        let mut c = if root {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()]);
            c
        } else {
            std::process::Command::new(bin())
        };
        let o = c
            .args(args)
            .env("GARRET_PASSPHRASE", PASSPHRASE)
            .env("HOME", env.path("home"))
            .env("GARRET_SECURITY_DIR", env.path("security"))
            .env("GARRET_KEYS_DIR", env.path("keys"))
            .current_dir(env.dir.path())
            .output()
            .unwrap();
        Run::from(o)
    };
    run(&["init", "-e", "none", &env.repo_str()]).ok();
    let r = run(&["create", &env.archive("a"), "src"]).code(1);
    assert!(r.stderr.contains("src/secret") && r.stderr.contains("Permission denied"), "{}", r.stderr);
    // --log-json: the warning is a log_message object, the file an "E" file_status.
    let r = run(&["--log-json", "create", "--list", &env.archive("j"), "src"]).code(1);
    let o: Vec<serde_json::Value> = r.stderr.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let w = o.iter().find(|v| v["levelname"] == "WARNING").unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(w["type"] == "log_message" && w["message"].as_str().unwrap().contains("Permission denied"), "{w}");
    assert!(
        o.iter().any(|v| v["type"] == "file_status" && v["status"] == "E" && v["path"] == "src/secret"),
        "{}",
        r.stderr
    );
    let r = run(&["list", "--short", &env.archive("a")]).ok();
    assert!(r.stdout.contains("src/readable"));
    assert!(!r.stdout.contains("src/secret"));
    // borg's --critical (and --error): no warning lines, but still exit code 1
    let r = run(&["create", "--critical", &env.archive("b"), "src"]).code(1);
    assert_eq!(r.stderr, "", "quiet, as cron wants it");
    let r = run(&["--error", "create", &env.archive("c"), "src"]).code(1);
    assert_eq!(r.stderr, "");
    // An error: --error still prints it, --critical only exits 2 (borg logs errors at ERROR).
    let r = run(&["--error", "create", &env.archive("c"), "src"]).code(2);
    assert!(r.stderr.contains("garret: error: ") && r.stderr.contains("already exists"), "{}", r.stderr);
    let r = run(&["--critical", "create", &env.archive("c"), "src"]).code(2);
    assert_eq!(r.stderr, "");
    let r = run(&["--critical", "--show-rc", "create", &env.archive("c"), "src"]).code(2);
    assert_eq!(r.stderr.trim(), "terminating with error status, rc 2");
}

#[test]
fn held_lock_fails_naming_the_holder_and_stale_lock_is_broken() {
    let env = setup();
    let host = String::from_utf8_lossy(&std::process::Command::new("uname").arg("-n").output().unwrap().stdout)
        .trim()
        .to_string();
    // a live holder: this test process
    let lock =
        format!("{{\"hostname\":\"{host}\",\"pid\":{},\"since\":\"2026-11-24T03:00:00+00:00\"}}", std::process::id());
    fs::write(env.repo().join("lock"), &lock).unwrap();
    let before = immutable_files(&env.repo());
    let r = env.run(&["create", "--lock-wait", "0.3", &env.archive("x"), "src"]);
    one_line_error(&r, &format!("process {} on host {host}", std::process::id()));
    assert_eq!(immutable_files(&env.repo()), before);
    // a dead holder on this host: broken with a warning
    let dead = format!("{{\"hostname\":\"{host}\",\"pid\":999999999,\"since\":\"2026-11-24T03:00:00+00:00\"}}");
    fs::write(env.repo().join("lock"), dead).unwrap();
    let r = env.run(&["create", &env.archive("x"), "src"]).ok();
    assert!(r.stderr.contains("removed stale lock"), "{}", r.stderr);
    assert!(!env.repo().join("lock").exists());
}

#[test]
fn break_lock_removes_a_lock_and_marks_held_on_another_host() {
    let env = setup();
    let other = "{\"hostname\":\"crashed-host\",\"pid\":4242,\"since\":\"2026-11-24T03:00:00+00:00\"}";
    fs::write(env.repo().join("lock"), other).unwrap();
    fs::create_dir_all(env.repo().join("readers")).unwrap();
    fs::write(env.repo().join("readers/crashed-host.4343"), other.replace("4242", "4343")).unwrap();
    // Another host's holder may be alive: garret waits, then fails naming the way out.
    let r = env.run(&["create", "--lock-wait", "0.2", &env.archive("x"), "src"]);
    one_line_error(&r, "garret break-lock");
    assert!(r.stderr.contains("process 4242 on host crashed-host"), "{}", r.stderr);
    // compact refuses while the reader mark is there
    let r = env.run(&["compact", &env.repo_str()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // break-lock needs no passphrase and says what it removed
    let mut cmd = env.cmd();
    cmd.env_remove("GARRET_PASSPHRASE").args(["break-lock", "--json", &env.repo_str()]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let removed: Vec<String> =
        v["removed"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    assert_eq!(
        removed,
        [
            "writer lock of process 4242 on host crashed-host since 2026-11-24T03:00:00+00:00",
            "reader mark of process 4343 on host crashed-host since 2026-11-24T03:00:00+00:00"
        ]
    );
    assert!(!env.repo().join("lock").exists());
    env.run(&["create", &env.archive("x"), "src"]).ok();
    env.run(&["compact", &env.repo_str()]).ok();
    let r = env.run(&["break-lock", &env.repo_str()]).ok();
    assert!(r.stderr.contains("holds no lock"), "{}", r.stderr);
    // not a repository: one line, exit 2, nothing created
    let r = env.run(&["break-lock", env.path("src").to_str().unwrap()]);
    one_line_error(&r, "not a garret repository");
    assert!(!env.path("src/lock").exists());
}

#[test]
fn failed_fsync_loses_the_pack_and_nothing_else() {
    let env = setup();
    fs::write(env.path("src/more"), xorshift(3 << 20, 9)).unwrap();
    let before = immutable_files(&env.repo());
    let r =
        env.cmd().env("GARRET_FAIL_AT", "fsync-object").args(["create", &env.archive("x"), "src"]).output().unwrap();
    assert_eq!(r.status.code(), Some(2), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stderr).contains("fsync"));
    assert_eq!(immutable_files(&env.repo()), before, "no pack or manifest may appear after a failed fsync");
    assert!(fs::read_dir(env.repo().join("tmp")).unwrap().next().is_none(), "the temporary file is removed");
    env.create_json("x", &["src"], &[]);
    env.extract_to("x", "out", &[]).ok();
    assert_same_tree(&env.path("src"), &env.path("out/src"));
}

#[test]
fn repository_from_garret_repo() {
    let env = setup();
    let r = env.cmd().env("GARRET_REPO", env.repo()).args(["create", "::second", "src"]).output().unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    let r = env.cmd().env("GARRET_REPO", env.repo()).args(["list", "--short"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "first\nsecond\n");
    let r = env.run(&["create", &format!("{}::a::b", env.repo_str()), "src"]);
    one_line_error(&r, "contains '::'");
}

/// GARRET_PASSPHRASE_FD (borg's BORG_PASSPHRASE_FD) reads the passphrase from an inherited
/// descriptor; a bad one is a one-line error.
#[test]
fn passphrase_from_a_file_descriptor() {
    use std::os::unix::process::CommandExt;
    let env = setup();
    let pass = env.path("pass");
    fs::write(&pass, format!("{PASSPHRASE}\n")).unwrap();
    let run_with_fd = |fd_var: &str| {
        let file = fs::File::open(&pass).unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
        let mut c = env.cmd();
        c.env_remove("GARRET_PASSPHRASE").env("GARRET_PASSPHRASE_FD", fd_var).args([
            "list",
            "--short",
            &env.repo_str(),
        ]);
        // SAFETY: dup2 is async-signal-safe; it puts the open file at descriptor 7 in the child.
        unsafe {
            c.pre_exec(move || if libc::dup2(raw, 7) == 7 { Ok(()) } else { Err(std::io::Error::last_os_error()) });
        }
        let o = c.output().unwrap();
        drop(file);
        Run::from(o)
    };
    let r = run_with_fd("7");
    assert_eq!((r.code, r.stdout.trim()), (0, "first"), "{}", r.stderr);
    one_line_error(&run_with_fd("seven"), "GARRET_PASSPHRASE_FD");
    one_line_error(&run_with_fd("9"), "GARRET_PASSPHRASE_FD");
}

/// GARRET_KEY_FILE (borg's BORG_KEY_FILE) names the key file of a keyfile repository, at init
/// and afterwards; GARRET_CONFIG_DIR and GARRET_BASE_DIR move the client's own state.
#[test]
fn key_file_and_client_directories_from_the_environment() {
    let env = Env::new();
    let key = env.path("my.key");
    let base = env.path("base");
    let with = |args: &[&str]| {
        let o = env
            .cmd()
            .env_remove("GARRET_KEYS_DIR")
            .env_remove("GARRET_SECURITY_DIR")
            .env("GARRET_KEY_FILE", &key)
            .env("GARRET_BASE_DIR", &base)
            .args(args)
            .output()
            .unwrap();
        Run::from(o)
    };
    with(&["init", "-e", "keyfile", "--kdf-memory", "64", &env.repo_str()]).ok();
    assert!(key.is_file(), "the key went to GARRET_KEY_FILE");
    assert!(!env.path("keys").exists() && !env.path("home/.config").exists());
    fs::create_dir(env.path("src")).unwrap();
    with(&["create", &env.archive("a"), "src"]).ok();
    assert!(base.join(".config/garret/security").is_dir(), "client state under GARRET_BASE_DIR");
    assert!(base.join(".cache/garret").is_dir(), "files cache under GARRET_BASE_DIR");
    let moved = env.path("elsewhere.key");
    fs::rename(&key, &moved).unwrap();
    let r = with(&["list", &env.repo_str()]);
    assert_eq!(r.code, 2, "the key file is where GARRET_KEY_FILE says: {}", r.stderr);
    fs::rename(&moved, &key).unwrap();
    let o = env
        .cmd()
        .env_remove("GARRET_SECURITY_DIR")
        .env("GARRET_KEY_FILE", &key)
        .env("GARRET_CONFIG_DIR", env.path("cfg"))
        .args(["list", "--short", &env.repo_str()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(env.path("cfg/security").is_dir(), "GARRET_CONFIG_DIR holds the security state");
    // A second repository must not take over the first one's key file: that key is the only one.
    let key_before = fs::read(&key).unwrap();
    let second = env.path("second").display().to_string();
    let r = with(&["init", "-e", "keyfile", "--kdf-memory", "64", &second]).code(2);
    assert!(r.stderr.contains("exists already") && r.stderr.contains("GARRET_KEY_FILE"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert_eq!(fs::read(&key).unwrap(), key_before, "the first repository's key was overwritten");
    assert!(!env.path("second").exists(), "nothing was created");
    with(&["list", "--short", &env.repo_str()]).ok();
}

/// borg's with-lock: the command runs while the repository lock is held (a create inside it
/// is refused), its exit code is passed on, and the lock is gone afterwards.
#[test]
fn with_lock_holds_the_lock_for_the_command() {
    let env = setup();
    let repo = env.repo_str();
    let lock = format!("{repo}/lock");
    let r = env.run(&["with-lock", &repo, "sh", "-c", &format!("test -f {lock} && exit 7")]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(!env.repo().join("lock").exists());
    let inner = format!("{} create --lock-wait 0 {repo}::inside src", bin());
    let r = env.run(&["with-lock", &repo, "sh", "-c", &inner]);
    assert_eq!(r.code, 2, "the create inside is refused: {}", r.stderr);
    assert!(r.stderr.contains("lock"), "{}", r.stderr);
    let r = env.run(&["with-lock", "--json", &repo, "true"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["exit_code"].as_i64(), v["command"][0].as_str()), (Some(0), Some("true")));
    env.run(&["create", &env.archive("after"), "src"]).ok();
    one_line_error(
        &env.run(&["with-lock", &env.path("nothing-here").display().to_string(), "true"]),
        "not a garret repository",
    );
}

/// When the reader of garret's output goes away (`garret extract --stdout ... | head -c 10`),
/// garret ends quietly with the code of a process killed by SIGPIPE (141), as coreutils do.
#[test]
fn a_reader_that_goes_away_ends_garret_quietly() {
    use std::io::Read;
    let env = setup();
    fs::write(env.path("src/big"), xorshift(4 << 20, 3)).unwrap();
    env.create_json("big", &["src"], &[]);
    let mut child = env
        .cmd()
        .args(["extract", "--stdout", &env.archive("big"), "src/big"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap(); // and the pipe is closed here
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(141), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    // the same for every command that prints (these panicked, exit 101 with a backtrace, when
    // their reader had gone before they wrote)
    for args in [
        vec!["info", "--json", &env.archive("big")],
        vec!["info", &env.archive("big")],
        vec!["config", &env.repo_str()],
    ] {
        let mut child = env
            .cmd()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // gone before garret has opened the repository
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(141), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stderr), "", "{args:?}");
    }
    // a filter command that stops reading is an error, though: the export did not finish
    let r = env.run(&["export-tar", "--tar-filter", "head -c 10", &env.archive("big"), "out.tar"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Broken pipe"), "{}", r.stderr);
}

/// borg's variables stand in for garret's (borgmatic passes BORG_PASSPHRASE), but never over
/// any GARRET_ one: a BORG_PASSPHRASE meant for borg jobs leaves GARRET_PASSCOMMAND in charge.
#[test]
fn borg_passphrase_variables_are_a_fallback_only() {
    let env = setup();
    let list = |vars: &[(&str, String)]| {
        let mut c = env.cmd();
        c.env_remove("GARRET_PASSPHRASE").args(["list", "--short", &env.repo_str()]);
        for (k, v) in vars {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (o.status.code().unwrap(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    assert_eq!(list(&[("BORG_PASSPHRASE", PASSPHRASE.to_string())]).0, 0);
    let both = [("BORG_PASSPHRASE", "for-borg".to_string()), ("GARRET_PASSCOMMAND", format!("echo '{PASSPHRASE}'"))];
    let (code, err) = list(&both);
    assert_eq!(code, 0, "{err}");
    let (code, err) = list(&[("BORG_PASSPHRASE", "for-borg".to_string())]);
    assert_eq!(code, 2);
    assert!(err.contains("passphrase"), "{err}");
    let r = env.cmd().env("BORG_REPO", env.repo()).args(["list", "--short", "::first"]).output().unwrap();
    assert_eq!(r.status.code(), Some(0), "BORG_REPO names the repository: {}", String::from_utf8_lossy(&r.stderr));
}

/// A grace period garret cannot read is refused before the repository is opened: exit 2, an error
/// that names the units to use, nothing changed (clap's own "For more information" line follows,
/// as for every bad flag value).
#[test]
fn compact_refuses_a_grace_period_it_cannot_read() {
    let env = setup();
    env.run(&["delete", &env.archive("first")]).ok();
    let before = immutable_files(&env.repo());
    for bad in ["12h", "1.5H", "soon"] {
        let r = env.run(&["compact", "--grace", bad, &env.repo_str()]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        let first = r.stderr.lines().next().unwrap_or_default();
        assert!(first.contains("invalid grace period") && first.contains("S, M, H, d or w"), "{}", r.stderr);
    }
    assert_eq!(immutable_files(&env.repo()), before);
}
