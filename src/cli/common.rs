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
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> PathBuf {
    env_path("HOME").unwrap_or_else(|| PathBuf::from("/root"))
}

pub fn client_dirs() -> ClientDirs {
    let config = env_path("XDG_CONFIG_HOME")
        .unwrap_or_else(|| home().join(".config"))
        .join("garret");
    ClientDirs {
        security: env_path("GARRET_SECURITY_DIR").unwrap_or_else(|| config.join("security")),
        keys: env_path("GARRET_KEYS_DIR").unwrap_or_else(|| config.join("keys")),
    }
}

/// The passphrase from GARRET_PASSPHRASE, GARRET_PASSCOMMAND or a prompt. `new` asks twice.
pub fn passphrase(new: bool) -> Result<Vec<u8>> {
    if new {
        if let Ok(p) = std::env::var("GARRET_NEW_PASSPHRASE") {
            return Ok(p.into_bytes());
        }
    }
    if let Ok(p) = std::env::var("GARRET_PASSPHRASE") {
        return Ok(p.into_bytes());
    }
    if let Ok(cmd) = std::env::var("GARRET_PASSCOMMAND") {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running GARRET_PASSCOMMAND")?;
        if !out.status.success() {
            return Err(anyhow!(
                "GARRET_PASSCOMMAND failed ({}); fix the command or set GARRET_PASSPHRASE",
                out.status
            ));
        }
        let mut p = out.stdout;
        while p.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            p.pop();
        }
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(anyhow!("no passphrase: set GARRET_PASSPHRASE or GARRET_PASSCOMMAND, or run garret in a terminal"));
    }
    let p = rpassword::prompt_password("Enter passphrase: ").context("reading passphrase")?;
    if new {
        let q = rpassword::prompt_password("Enter same passphrase again: ")
            .context("reading passphrase")?;
        if p != q {
            return Err(anyhow!("passphrases do not match; run the command again"));
        }
        if p.is_empty() {
            eprintln!("garret: warning: empty passphrase");
        }
    }
    Ok(p.into_bytes())
}

/// Open a repository; `write` takes the exclusive lock.
pub fn open(g: &GlobalArgs, repo: &std::path::Path, write: bool) -> Result<Repository> {
    open_with(g, repo, write, false)
}

pub fn open_with(
    g: &GlobalArgs,
    repo: &std::path::Path,
    write: bool,
    adopt: bool,
) -> Result<Repository> {
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
        eprintln!("garret: warning: {}", one_line(w));
    }
    Ok(r)
}

/// Prints warnings (and with `list`, item status lines) to stderr.
pub struct StderrReporter {
    pub list: bool,
    pub filter: Option<String>,
    pub warned: AtomicBool,
}

impl StderrReporter {
    pub fn new(list: bool, filter: Option<String>) -> Self {
        StderrReporter {
            list,
            filter,
            warned: AtomicBool::new(false),
        }
    }
    pub fn warned(&self) -> bool {
        self.warned.load(Ordering::Relaxed)
    }
}

impl Reporter for StderrReporter {
    fn warning(&self, msg: &str) {
        self.warned.store(true, Ordering::Relaxed);
        eprintln!("garret: warning: {}", one_line(msg));
    }
    fn item(&self, status: char, path: &str) {
        if self.list && self.filter.as_ref().is_none_or(|f| f.contains(status)) {
            eprintln!("{status} {}", escape(path));
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
pub fn size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Archive time (RFC 3339) as borg shows it: `Tue, 2026-11-24 03:00:01`.
pub fn show_time(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t
            .with_timezone(&chrono::Local)
            .format("%a, %Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

pub fn show_ns(ns: i64) -> String {
    match chrono::DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    ) {
        Some(t) => t
            .with_timezone(&chrono::Local)
            .format("%a, %Y-%m-%d %H:%M:%S")
            .to_string(),
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
