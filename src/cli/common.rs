//! What every subcommand shares: global flags, environment (GARRET_* for BORG_*), passphrase
//! input, opening a repository, the stderr reporter and output formatting.

use anyhow::{anyhow, Context, Result};
use garret::progress::Reporter;
use garret::repository::{ClientDirs, OpenOptions, Repository};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct GlobalArgs {
    /// Wait at most SECONDS for the repository lock
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 1.0)]
    pub lock_wait: f64,
    /// Print the return code at the end (as borg)
    #[arg(long, global = true)]
    pub show_rc: bool,
    /// More output (accepted for borg compatibility; garret's --list/--stats select output)
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Same as --verbose (borg's log level flag)
    #[arg(long, global = true)]
    pub info: bool,
    /// borg's other log level flags: --error leaves warning lines out of stderr (the exit code
    /// still says 1), --critical error lines too (the exit code still says 2), --debug and
    /// --warning change nothing
    #[arg(long, global = true, hide = true)]
    pub debug: bool,
    #[arg(long, global = true, hide = true)]
    pub warning: bool,
    #[arg(long, global = true, hide = true)]
    pub error: bool,
    #[arg(long, global = true, hide = true)]
    pub critical: bool,
    /// Create files with this umask (octal, e.g. 0077), as borg's --umask
    #[arg(long, global = true, value_name = "M", value_parser = parse_umask)]
    pub umask: Option<u32>,
    /// Show progress: create, extract and import-tar (a progress line is the default when stderr
    /// is a terminal; without one, plain lines)
    #[arg(short = 'p', long, global = true)]
    pub progress: bool,
    /// Show sizes in IEC units (KiB, MiB: powers of 1024) instead of kB, MB
    #[arg(long, global = true)]
    pub iec: bool,
    /// Log on stderr as JSON lines, as borg: {"type": "log_message", "levelname", "message", ...},
    /// {"type": "file_status", "status", "path"} (--list), {"type": "archive_progress", ...}
    /// (--progress)
    #[arg(long, global = true)]
    pub log_json: bool,
    /// Print garret's version on stderr first (as borg's --show-version)
    #[arg(long, global = true)]
    pub show_version: bool,
    /// borg's: read-only commands need no lock in garret (they run on read-only media as they
    /// are); writing commands refuse it
    #[arg(long, global = true, hide = true)]
    pub bypass_lock: bool,
    /// borg's options for ssh:// repositories (garret has local ones only), its part files and
    /// checkpoint archives (garret makes neither) and its debugging aids: accepted so that borg
    /// command lines run
    #[arg(long, global = true, hide = true, value_name = "PATH")]
    pub remote_path: Option<String>,
    #[arg(long, global = true, hide = true, value_name = "RSH")]
    pub rsh: Option<String>,
    #[arg(long, global = true, hide = true, value_name = "KIBPS")]
    pub upload_ratelimit: Option<u64>,
    #[arg(long, global = true, hide = true, value_name = "KIBPS")]
    pub remote_ratelimit: Option<u64>,
    #[arg(long, global = true, hide = true, value_name = "MIB")]
    pub upload_buffer: Option<u64>,
    #[arg(long, global = true, hide = true)]
    pub consider_part_files: bool,
    #[arg(long, global = true, hide = true)]
    pub consider_checkpoints: bool,
    #[arg(long, global = true, hide = true, value_name = "TOPIC")]
    pub debug_topic: Vec<String>,
    #[arg(long, global = true, hide = true, value_name = "MIB")]
    pub remote_buffer: Option<u64>,
    #[arg(long, global = true, hide = true, value_name = "FILE")]
    pub debug_profile: Option<String>,
}

/// `GARRET_<name>`, or else borg's `BORG_<name>`: tools that drive borg (borgmatic with
/// `local_path: garret`) hand over the passphrase and repository in borg's variables. Only for
/// these; client directories stay garret's own.
pub fn var(name: &str) -> Option<String> {
    debug_assert!(["NEW_PASSPHRASE", "REPO"].contains(&name));
    std::env::var(format!("GARRET_{name}")).or_else(|_| std::env::var(format!("BORG_{name}"))).ok()
}

/// Set by `--error`/`--critical`: warning lines are not printed.
static QUIET_WARNINGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Set by `--critical`: error lines are not printed either (borg logs them at ERROR level).
static QUIET_ERRORS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn quiet_warnings(on: bool) {
    QUIET_WARNINGS.store(on, Ordering::Relaxed);
}

pub fn quiet_errors(on: bool) {
    QUIET_ERRORS.store(on, Ordering::Relaxed);
}

/// Print a warning line on stderr, unless `--error` or `--critical` asked for none.
pub fn warn(msg: &str) {
    if !QUIET_WARNINGS.load(Ordering::Relaxed) {
        say(Level::Warning, &format!("garret: warning: {}", one_line(msg)));
    }
}

/// Set by `--log-json`: stderr carries one JSON object per line, as borg's.
static LOG_JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn log_json(on: bool) {
    LOG_JSON.store(on, Ordering::Relaxed);
}

fn logging_json() -> bool {
    LOG_JSON.load(Ordering::Relaxed)
}

#[derive(Clone, Copy)]
pub enum Level {
    Info,
    Warning,
    Error,
}

fn unix_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// One line of text for the user on stderr. With `--log-json` it becomes borg's
/// `{"type": "log_message", "time", "levelname", "name", "message"}`, the message without the
/// `garret: ` and level prefixes.
pub fn say(level: Level, text: &str) {
    if matches!(level, Level::Error) && QUIET_ERRORS.load(Ordering::Relaxed) {
        return;
    }
    if !logging_json() {
        eprintln!("{text}");
        return;
    }
    let levelname = match level {
        Level::Info => "INFO",
        Level::Warning => "WARNING",
        Level::Error => "ERROR",
    };
    let mut message = text.strip_prefix("garret: ").unwrap_or(text);
    for p in ["error: ", "warning: ", "WARNING: "] {
        message = message.strip_prefix(p).unwrap_or(message);
    }
    let line = serde_json::json!({
        "type": "log_message", "time": unix_time(), "levelname": levelname, "name": "garret", "message": message,
    });
    eprintln!("{line}");
}

/// [`say`] at level info.
pub fn info(text: &str) {
    say(Level::Info, text)
}

fn parse_umask(s: &str) -> std::result::Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("invalid umask {s:?}: use an octal mask like 0077"))
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Where client state lives by default: GARRET_BASE_DIR (as BORG_BASE_DIR), else $HOME.
fn home() -> PathBuf {
    env_path("GARRET_BASE_DIR").or_else(|| env_path("HOME")).unwrap_or_else(|| PathBuf::from("/root"))
}

/// Where client caches live: GARRET_CACHE_DIR, else $XDG_CACHE_HOME/garret, else ~/.cache/garret.
/// The passphrase read from an open file descriptor (GARRET_PASSPHRASE_FD, as borg's
/// BORG_PASSPHRASE_FD): everything up to the end, without a trailing newline.
fn passphrase_from_fd(fd: &str) -> Result<Vec<u8>> {
    let bad = |why: String| anyhow!("GARRET_PASSPHRASE_FD={fd:?}: {why}; give the number of an open file descriptor");
    let n: i32 = fd.trim().parse().ok().filter(|n| *n >= 0).ok_or_else(|| bad("not a descriptor number".into()))?;
    // SAFETY: the descriptor is only borrowed for the reads below and never closed here; an fd
    // that is not open makes the first read fail with EBADF.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(n) };
    let mut p = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(k) => p.extend_from_slice(&buf[..k]),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(bad(e.to_string())),
        }
    }
    while p.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        p.pop();
    }
    Ok(p)
}

pub fn cache_dir() -> PathBuf {
    env_path("GARRET_CACHE_DIR")
        .unwrap_or_else(|| env_path("XDG_CACHE_HOME").unwrap_or_else(|| home().join(".cache")).join("garret"))
}

/// GARRET_CONFIG_DIR, else $XDG_CONFIG_HOME/garret, else ~/.config/garret; GARRET_SECURITY_DIR,
/// GARRET_KEYS_DIR and GARRET_KEY_FILE override their parts of it.
pub fn client_dirs() -> ClientDirs {
    let config = env_path("GARRET_CONFIG_DIR")
        .unwrap_or_else(|| env_path("XDG_CONFIG_HOME").unwrap_or_else(|| home().join(".config")).join("garret"));
    ClientDirs {
        security: env_path("GARRET_SECURITY_DIR").unwrap_or_else(|| config.join("security")),
        keys: env_path("GARRET_KEYS_DIR").unwrap_or_else(|| config.join("keys")),
        key_file: env_path("GARRET_KEY_FILE"),
    }
}

/// The passphrase from GARRET_PASSPHRASE, GARRET_PASSCOMMAND, GARRET_PASSPHRASE_FD (each else
/// its BORG_ twin) or a prompt. `new` asks twice.
pub fn passphrase(new: bool) -> Result<Vec<u8>> {
    // Every GARRET_ source before any BORG_ one: a BORG_PASSPHRASE meant for borg jobs must not
    // override this job's GARRET_PASSCOMMAND.
    for prefix in ["GARRET_", "BORG_"] {
        let get = |name: &str| std::env::var(format!("{prefix}{name}")).ok();
        if new {
            if let Some(p) = get("NEW_PASSPHRASE") {
                return Ok(p.into_bytes());
            }
        }
        if let Some(p) = get("PASSPHRASE") {
            return Ok(p.into_bytes());
        }
        if let Some(cmd) = get("PASSCOMMAND") {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("running {prefix}PASSCOMMAND"))?;
            if !out.status.success() {
                return Err(anyhow!(
                    "{prefix}PASSCOMMAND failed ({}); fix the command or set GARRET_PASSPHRASE",
                    out.status
                ));
            }
            let mut p = out.stdout;
            while p.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                p.pop();
            }
            return Ok(p);
        }
        if let Some(fd) = get("PASSPHRASE_FD") {
            // Read once: a second request in the same run gets the same passphrase, as it would
            // from GARRET_PASSPHRASE.
            static READ: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            if let Some(p) = READ.get() {
                return Ok(p.clone());
            }
            let p = passphrase_from_fd(&fd)?;
            return Ok(READ.get_or_init(|| p).clone());
        }
    }
    if !std::io::stdin().is_terminal() {
        return Err(anyhow!(
            "no passphrase: set GARRET_PASSPHRASE, GARRET_PASSCOMMAND or GARRET_PASSPHRASE_FD, or run garret in a terminal"
        ));
    }
    let p = rpassword::prompt_password("Enter passphrase: ").context("reading passphrase")?;
    if new {
        let q = rpassword::prompt_password("Enter same passphrase again: ").context("reading passphrase")?;
        if p != q {
            return Err(anyhow!("passphrases do not match; run the command again"));
        }
        if p.is_empty() {
            warn("empty passphrase");
        }
    }
    Ok(p.into_bytes())
}

/// Ask for a new passphrase twice on the terminal.
pub fn prompt_new_passphrase() -> Result<Vec<u8>> {
    if !std::io::stdin().is_terminal() {
        return Err(anyhow!("no new passphrase: set GARRET_NEW_PASSPHRASE or run garret in a terminal"));
    }
    let p = rpassword::prompt_password("New passphrase: ").context("reading passphrase")?;
    let q = rpassword::prompt_password("Enter same passphrase again: ").context("reading passphrase")?;
    if p != q {
        return Err(anyhow!("passphrases do not match; run the command again"));
    }
    Ok(p.into_bytes())
}

/// Open a repository; `write` takes the exclusive lock.
/// Hold the repository for reading archive `name` alone ([`Repository::hold`], narrowed to it).
pub fn hold_one(repo: &mut Repository, name: &str) -> Result<Option<garret::repository::lock::ReaderMark>> {
    let mark = repo.hold()?;
    if let (Some(mark), Some(entry)) = (&mark, repo.manifest().find(name)) {
        mark.set_archives(&[entry.id])?;
    }
    Ok(mark)
}

pub fn open(g: &GlobalArgs, repo: &std::path::Path, write: bool) -> Result<Repository> {
    open_with(g, repo, write, false)
}

pub fn open_with(g: &GlobalArgs, repo: &std::path::Path, write: bool, adopt: bool) -> Result<Repository> {
    if write && g.bypass_lock {
        anyhow::bail!(
            "--bypass-lock: garret never changes a repository without its lock; drop the flag (read-only \
             commands such as list and extract need none)"
        );
    }
    let pf = || passphrase(false).map_err(|e| garret::Error::Key(format!("{e:#}")));
    let r = Repository::open(
        repo,
        OpenOptions {
            passphrase: &pf,
            client: client_dirs(),
            write_lock: write.then(|| Duration::from_secs_f64(g.lock_wait.max(0.0))),
            adopt,
        },
    )?;
    for w in &r.warnings {
        warn(w);
    }
    Ok(r)
}

/// Prints warnings (and with `list`, item status lines) to stderr, and a progress line when
/// stderr is a terminal or `--progress` asks for it.
pub struct StderrReporter {
    pub list: bool,
    pub filter: Option<String>,
    pub warned: AtomicBool,
    bar: Option<indicatif::ProgressBar>,
    /// `--log-json --progress`: when the last progress object was printed.
    json_progress: Option<std::sync::Mutex<Option<std::time::Instant>>>,
    started: std::time::Instant,
}

impl StderrReporter {
    pub fn new(list: bool, filter: Option<String>) -> Self {
        StderrReporter {
            list,
            filter,
            warned: AtomicBool::new(false),
            bar: None,
            json_progress: None,
            started: std::time::Instant::now(),
        }
    }

    /// Show a progress line if `force` or stderr is a terminal; with `--log-json`, progress
    /// objects (borg's `archive_progress`) once a second, only if `force`.
    pub fn with_progress(mut self, force: bool) -> Self {
        if logging_json() {
            if force {
                self.json_progress = Some(std::sync::Mutex::new(None));
            }
            return self;
        }
        if force || std::io::stderr().is_terminal() {
            let target = if std::io::stderr().is_terminal() {
                indicatif::ProgressDrawTarget::stderr_with_hz(4)
            } else {
                indicatif::ProgressDrawTarget::term_like_with_hz(Box::new(LineTerm), 1)
            };
            let bar = indicatif::ProgressBar::with_draw_target(None, target);
            bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
            self.bar = Some(bar);
        }
        self
    }

    pub fn warned(&self) -> bool {
        self.warned.load(Ordering::Relaxed)
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if self.json_progress.is_some() {
            eprintln!("{}", serde_json::json!({ "type": "archive_progress", "finished": true, "time": unix_time() }));
        }
    }

    fn line(&self, level: Level, s: String) {
        match &self.bar {
            Some(b) => b.suspend(|| say(level, &s)),
            None => say(level, &s),
        }
    }
}

/// Progress output for a non-terminal stderr (`--progress` in a log): plain lines.
#[derive(Debug)]
struct LineTerm;

impl indicatif::TermLike for LineTerm {
    fn width(&self) -> u16 {
        200
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        if !s.trim().is_empty() {
            eprintln!("{s}");
        }
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        if !s.trim().is_empty() {
            eprintln!("{s}");
        }
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Reporter for StderrReporter {
    fn warning(&self, msg: &str) {
        self.warned.store(true, Ordering::Relaxed);
        if !QUIET_WARNINGS.load(Ordering::Relaxed) {
            self.line(Level::Warning, format!("garret: warning: {}", one_line(msg)));
        }
    }
    fn lists(&self) -> bool {
        self.list
    }
    fn item(&self, status: char, path: &[u8]) {
        if self.list && self.filter.as_ref().is_none_or(|f| f.contains(status)) {
            if logging_json() {
                let path = String::from_utf8_lossy(path);
                eprintln!(
                    "{}",
                    serde_json::json!({ "type": "file_status", "status": status.to_string(), "path": path })
                );
            } else {
                let path = escape(&String::from_utf8_lossy(path));
                // A status of ' ' (extract's list) shows the path alone, as borg's does.
                self.line(Level::Info, if status == ' ' { path } else { format!("{status} {path}") });
            }
        }
    }
    fn progress(&self, p: &garret::progress::Progress) {
        if let Some(last) = &self.json_progress {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                *last = Some(std::time::Instant::now());
                let (read, stored) =
                    if p.extracting { ("written_size", "stored_size") } else { ("original_size", "deduplicated_size") };
                let mut o = serde_json::json!({
                    "type": "archive_progress", "finished": false, "time": unix_time(), "nfiles": p.files,
                    read: p.bytes_read, "path": String::from_utf8_lossy(&p.path),
                });
                if !p.extracting {
                    o[stored] = p.bytes_stored.into();
                }
                eprintln!("{o}");
            }
        }
        if let Some(b) = &self.bar {
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            let mut path = escape(&String::from_utf8_lossy(&p.path));
            if path.len() > 60 {
                let cut = path.char_indices().map(|(i, _)| i).find(|&i| i >= path.len() - 57).unwrap_or(0);
                path = format!("...{}", &path[cut..]);
            }
            let rate = size((p.bytes_read as f64 / secs) as u64);
            b.set_message(if p.total > 0 {
                let pct = (p.bytes_read as f64 * 100.0 / p.total as f64).min(100.0);
                format!("{pct:5.1}% {} files, {} of {}, {rate}/s {path}", p.files, size(p.bytes_read), size(p.total))
            } else if p.extracting {
                format!("{} files, {} written, {rate}/s {path}", p.files, size(p.bytes_read))
            } else {
                format!(
                    "{} files, {} read, {} stored, {rate}/s {path}",
                    p.files,
                    size(p.bytes_read),
                    size(p.bytes_stored)
                )
            });
        }
    }
}

/// Escape control characters so a hostile file name cannot forge terminal output.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

pub fn one_line(s: &str) -> String {
    escape(s.trim_end()).replace("\\n", "; ")
}

/// Sizes as borg prints them (decimal units).
/// Set by `--iec`: sizes in powers of 1024.
static IEC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn iec_units(on: bool) {
    IEC.store(on, Ordering::Relaxed);
}

/// A size as borg prints it: `1.23 MB`, or with `--iec` `1.17 MiB`.
pub fn size(n: u64) -> String {
    let (units, step) = if IEC.load(Ordering::Relaxed) {
        (["B", "KiB", "MiB", "GiB", "TiB", "PiB"], 1024.0)
    } else {
        (["B", "kB", "MB", "GB", "TB", "PB"], 1000.0)
    };
    const UNITS: usize = 6;
    let mut v = n as f64;
    let mut u = 0;
    while v >= step && u < UNITS - 1 {
        v /= step;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", units[u])
    }
}

/// Archive time (RFC 3339) as borg shows it: `Tue, 2026-11-24 03:00:01`.
pub fn show_time(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.with_timezone(&chrono::Local).format("%a, %Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

/// A time in ns since the epoch as RFC 3339 in UTC with nanoseconds, for JSON output (borg gives
/// ISO 8601 strings there too).
pub fn iso_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_default()
}

pub fn show_ns(ns: i64) -> String {
    match chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32) {
        Some(t) => t.with_timezone(&chrono::Local).format("%a, %Y-%m-%d %H:%M:%S").to_string(),
        None => ns.to_string(),
    }
}

pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.2} seconds")
    } else {
        format!("{} minutes {:.2} seconds", (s / 60.0) as u64, s % 60.0)
    }
}
