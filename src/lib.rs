//! garret: a content-addressed, deduplicating, encrypted backup repository engine.
//!
//! Layers, top to bottom (dependencies point down only):
//! - [`create`], [`extract`], [`mount`], [`tarball`], [`recreate`]: operations, one job each.
//! - [`archive`]: items, the item stream, archive objects and the manifest.
//! - [`repository`]: open/init, config, keys, locks, the commit protocol; the only place that
//!   combines the storage layers below.
//! - [`pack`], [`blob`], [`crypto`], [`compress`], [`chunker`]: pure byte-level layers.
//! - [`backend`]: the repository directory as a dumb object store.
//! - [`index`]: the SQLite cache, rebuildable from the packs.
//! - [`id`], [`error`], [`progress`]: shared vocabulary; [`client_file`]: files kept outside
//!   any repository, on the client.
//!
//! The on-disk format is specified in `repo-format.md`; every constant that shapes bytes on disk
//! lives next to a comment pointing at the section that defines it.

pub mod archive;
pub mod backend;
pub mod blob;
pub mod check;
pub mod chunker;
pub mod client_file;
pub mod compact;
pub mod compress;
pub mod create;
pub mod crypto;
pub mod diff;
pub mod error;
pub mod extract;
pub mod faults;
pub mod id;
pub mod index;
pub mod known;
pub mod mount;
pub mod pack;
pub mod patterns;
pub mod progress;
pub mod prune;
pub mod recreate;
pub mod repair;
pub mod repository;
pub mod tarball;

pub use error::{Error, Result};
