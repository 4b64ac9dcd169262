//! How library operations report progress and per-item warnings without printing.

/// Running totals of a create or extract.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub files: u64,
    pub bytes_read: u64,
    pub bytes_stored: u64,
    /// The item most recently finished (raw path bytes).
    pub path: Vec<u8>,
    /// Bytes expected in all (extract of a whole archive), 0 when unknown.
    pub total: u64,
    /// Extract: `bytes_read` counts bytes written, nothing is stored.
    pub extracting: bool,
}

/// Receives warnings, per-item events and progress from an operation; the CLI decides what to
/// show. Called from several threads.
pub trait Reporter: Sync {
    /// A per-item problem that does not stop the run (exit code 1 at the end).
    fn warning(&self, msg: &str);
    /// An item was processed; `status` is a borg-style letter (A added, M modified, U unchanged,
    /// E error, x excluded, d directory, s symlink, h hardlink, f FIFO, c/b device, - dry run).
    fn item(&self, _status: char, _path: &[u8]) {}
    /// Whether [`Reporter::item`] shows anything: when not, the create walk does not pass the
    /// statuses on to the pipeline that reports them in walk order.
    fn lists(&self) -> bool {
        true
    }
    /// Totals changed (called often; implementations rate-limit their display).
    fn progress(&self, _p: &Progress) {}
}

/// Discards everything.
pub struct Silent;
impl Reporter for Silent {
    fn warning(&self, _msg: &str) {}
    fn lists(&self) -> bool {
        false
    }
}
