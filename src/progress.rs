//! How library operations report progress and per-item warnings without printing.

use std::sync::atomic::{AtomicBool, Ordering};

/// Receives warnings and per-item events from an operation; the CLI decides what to show.
pub trait Reporter: Sync {
    /// A per-item problem that does not stop the run (exit code 1 at the end).
    fn warning(&self, msg: &str);
    /// An item was processed; `status` is a borg-style letter (A, M, U, E, x, -).
    fn item(&self, _status: char, _path: &str) {}
}

/// Collects whether any warning happened; forwards everything to an inner reporter.
pub struct WarningFlag<'a> {
    inner: &'a dyn Reporter,
    seen: AtomicBool,
}

impl<'a> WarningFlag<'a> {
    pub fn new(inner: &'a dyn Reporter) -> Self {
        WarningFlag {
            inner,
            seen: AtomicBool::new(false),
        }
    }
    pub fn any(&self) -> bool {
        self.seen.load(Ordering::Relaxed)
    }
}

impl Reporter for WarningFlag<'_> {
    fn warning(&self, msg: &str) {
        self.seen.store(true, Ordering::Relaxed);
        self.inner.warning(msg);
    }
    fn item(&self, status: char, path: &str) {
        self.inner.item(status, path);
    }
}

/// Discards everything.
pub struct Silent;
impl Reporter for Silent {
    fn warning(&self, _msg: &str) {}
}
