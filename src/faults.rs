//! Fault-injection hooks for the crash and I/O-error tests.
//!
//! `GARRET_CRASH_AT=site[:n]` aborts the process (like kill -9: no destructors, no cleanup) the
//! n-th time (default 1st) execution reaches `site`. `GARRET_FAIL_AT=site[:n]` makes the n-th
//! [`io_point`] named `site` return an I/O error. `GARRET_PAUSE_AT=site[:n]` with
//! `GARRET_PAUSE_FILE=PATH` makes the n-th [`pause_point`] create PATH and wait (up to a minute)
//! until a test removes it, so that the test can run another process at exactly that moment.
//! The variables are read once; when none is set a hook costs one atomic load. They can only make
//! garret fail or wait, never do something else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Spec {
    site: String,
    n: u64,
    count: AtomicU64,
}

fn spec(var: &'static str, cell: &'static OnceLock<Option<Spec>>) -> Option<&'static Spec> {
    cell.get_or_init(|| {
        let v = std::env::var(var).ok()?;
        let (site, n) = match v.split_once(':') {
            Some((s, n)) => (s.to_string(), n.parse().unwrap_or(1)),
            None => (v, 1),
        };
        Some(Spec { site, n, count: AtomicU64::new(0) })
    })
    .as_ref()
}

fn hit(var: &'static str, cell: &'static OnceLock<Option<Spec>>, site: &str) -> bool {
    match spec(var, cell) {
        Some(s) if s.site == site => s.count.fetch_add(1, Ordering::SeqCst) + 1 == s.n,
        _ => false,
    }
}

static CRASH: OnceLock<Option<Spec>> = OnceLock::new();
static FAIL: OnceLock<Option<Spec>> = OnceLock::new();
static PAUSE: OnceLock<Option<Spec>> = OnceLock::new();

/// Wait here, once, if `GARRET_PAUSE_AT` names this site (see the module documentation).
pub fn pause_point(site: &str) {
    if !hit("GARRET_PAUSE_AT", &PAUSE, site) {
        return;
    }
    let Some(flag) = std::env::var_os("GARRET_PAUSE_FILE") else { return };
    if std::fs::write(&flag, site).is_err() {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::path::Path::new(&flag).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Abort here if `GARRET_CRASH_AT` names this site.
#[inline]
pub fn crash_point(site: &str) {
    if hit("GARRET_CRASH_AT", &CRASH, site) {
        eprintln!("garret: crash injected at {site}");
        std::process::abort();
    }
}

/// Fail with EIO here if `GARRET_FAIL_AT` names this site.
#[inline]
pub fn io_point(site: &str) -> std::io::Result<()> {
    if hit("GARRET_FAIL_AT", &FAIL, site) {
        return Err(std::io::Error::from_raw_os_error(5));
    }
    Ok(())
}
