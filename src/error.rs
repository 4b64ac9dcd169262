//! The library's error type.
//!
//! Rules: every variant carries enough context for a user to act (which repository, archive,
//! object or file); library code never prints and never panics on bad input; `anyhow` lives only
//! in the binary. Per-file problems during create/extract are not errors of this type: they are
//! reported as warnings through [`crate::progress::Reporter`] and the run goes on.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a garret repository (no config file); create one with `garret init`")]
    NotARepository(PathBuf),
    #[error("repository {path} already exists; choose an empty or new directory")]
    AlreadyExists { path: PathBuf },
    #[error("repository format version {found} is newer than this garret supports ({supported}); upgrade garret")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("wrong passphrase for repository {0} (or the key file is damaged)")]
    WrongPassphrase(PathBuf),
    #[error("key: {0}")]
    Key(String),
    #[error("integrity error in {what}: {detail}")]
    Integrity { what: String, detail: String },
    #[error("malformed {what}: {detail}")]
    Malformed { what: String, detail: String },
    #[error("blob {0} is not in the repository index")]
    MissingBlob(String),
    #[error("archive {0:?} does not exist; `garret list REPO` shows the archives")]
    NoSuchArchive(String),
    #[error("none of the source paths can be read: {0}, and {1} more; check the paths given")]
    NoSourcePath(Box<Error>, usize),
    #[error("archive {0:?} already exists; choose another name")]
    ArchiveExists(String),
    #[error("invalid archive name {0:?}: {1}")]
    InvalidArchiveName(String, String),
    #[error("repository is locked by {holder} ({path}); wait for it to finish or, if that process is dead, run `garret break-lock REPO`")]
    Locked { holder: String, path: PathBuf },
    #[error("this command's repository lock {path} was removed or taken over while it ran (`garret break-lock`?), so it stopped before changing more: nothing further was committed or deleted; run it again")]
    LockLost { path: PathBuf },
    #[error("manifest rollback detected for repository {repo}: it holds manifest #{found}, but this client has seen #{seen}; if you restored the repository from a copy on purpose, run `garret adopt REPO`")]
    Rollback { repo: String, found: u64, seen: u64 },
    #[error("repository {repo} has diverged from what this client saw: its manifest #{seq} is not the one this client saw as #{seq} (two copies of one repository written separately?), so archives made in the other copy are missing here; if this copy is the one to keep, run `garret adopt REPO`")]
    Diverged { repo: String, seq: u64 },
    #[error("repository {repo} changed its key or encryption since this client last used it; if that is expected, run `garret adopt REPO`")]
    KeyChanged { repo: String },
    #[error("index database: {0}")]
    Index(#[from] rusqlite::Error),
    #[error("{0}")]
    Usage(String),
    #[error("command failed: {0}")]
    Command(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
    pub fn integrity(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Integrity { what: what.into(), detail: detail.into() }
    }
    pub fn malformed(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Malformed { what: what.into(), detail: detail.into() }
    }
}

/// Attach a context string to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e.into()))
    }
}
