//! The manifest: the authenticated list of archives, and the repository's commit point
//! (repo-format.md, "Manifest").
//!
//! Each commit writes a new immutable `manifests/<seq>` object whose sequence number is one
//! higher than the last and which names the hash of its predecessor; the highest sequence number
//! present is the current state. It lives with the repository (not with archives) because writing
//! it is the last step of every transaction.

use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::id::{Id, ObjectType};
use serde::{Deserialize, Serialize};

pub const MANIFEST_DIR: &str = "manifests";
pub const MANIFEST_VERSION: u32 = 1;
/// How many superseded manifests are kept after a commit (for inspection and repair).
pub const KEEP_OLD_MANIFESTS: u64 = 4;
/// Decoder bound: a manifest larger than this is refused.
pub const MAX_MANIFEST_LEN: usize = 256 * 1024 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArchiveEntry {
    pub name: String,
    pub id: Id,
    /// Start time, RFC 3339 with the local offset.
    pub time: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub username: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub seq: u64,
    /// BLAKE3 of the previous manifest object's bytes (absent for the first).
    #[serde(default)]
    pub prev: Option<Id>,
    pub time: String,
    pub archives: Vec<ArchiveEntry>,
}

pub fn key_for(seq: u64) -> String {
    format!("{MANIFEST_DIR}/{seq:016x}")
}

pub fn seq_of_key(key: &str) -> Option<u64> {
    let name = key.strip_prefix(MANIFEST_DIR)?.strip_prefix('/')?;
    if name.len() != 16 {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

fn object_id(seq: u64) -> Id {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&seq.to_le_bytes());
    Id(id)
}

impl Manifest {
    pub fn find(&self, name: &str) -> Option<&ArchiveEntry> {
        self.archives.iter().find(|a| a.name == name)
    }

    pub fn seal(&self, keys: &Keys) -> Vec<u8> {
        let mut plain = Vec::new();
        ciborium::into_writer(self, &mut plain).expect("serializing to memory");
        keys.seal(ObjectType::Manifest, &object_id(self.seq), &plain)
    }

    /// Authenticate and decode the object stored as manifest `seq`.
    pub fn open(keys: &Keys, seq: u64, bytes: &[u8]) -> Result<Manifest> {
        let what = || format!("manifest #{seq}");
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(Error::malformed(what(), "too large"));
        }
        let plain = keys.open(ObjectType::Manifest, &object_id(seq), bytes, &what)?;
        let m: Manifest = ciborium::from_reader(&plain[..]).map_err(|e| Error::malformed(what(), e.to_string()))?;
        if m.seq != seq {
            return Err(Error::integrity(what(), format!("claims sequence number {}", m.seq)));
        }
        if m.version > MANIFEST_VERSION {
            return Err(Error::malformed(
                what(),
                format!("manifest version {} is newer than this garret supports", m.version),
            ));
        }
        Ok(m)
    }
}
