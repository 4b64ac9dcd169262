//! The repository config file (repo-format.md, "Config").

use crate::chunker::{ChunkerParams, DATA_PARAMS, TREE_PARAMS};
use crate::error::{Error, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The format version this binary writes and the newest it reads. 2: bundles (repo-format.md
/// section 8.1); version-1 repositories are read and written as they are, without bundles.
pub const FORMAT_VERSION: u32 = 2;
pub const FORMAT_NAME: &str = "garret-repository";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// Key stored in the repository, wrapped under the passphrase.
    Repokey,
    /// Key stored on the client only, wrapped under the passphrase.
    Keyfile,
    /// Key stored in the repository unprotected: no confidentiality, integrity only against
    /// accidents.
    None,
}

impl std::str::FromStr for Encryption {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        // borg's `-blake2` modes differ from its others only in the keyed hash; garret's ids are
        // always keyed BLAKE3, so `init -e repokey-blake2` lines from borg set-ups mean repokey.
        match s {
            "repokey" | "repokey-blake2" => Ok(Encryption::Repokey),
            "keyfile" | "keyfile-blake2" => Ok(Encryption::Keyfile),
            "none" => Ok(Encryption::None),
            "authenticated" | "authenticated-blake2" => Err(format!(
                "encryption mode {s:?} (signed but not encrypted) does not exist in garret: use repokey \
                 (encrypted and authenticated) or none"
            )),
            _ => Err(format!("unknown encryption mode {s:?}: use repokey, keyfile or none")),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub format: String,
    pub version: u32,
    /// 64 hex digits.
    pub id: String,
    pub encryption: Encryption,
    pub chunker: ChunkerParams,
    pub tree_chunker: ChunkerParams,
}

impl Config {
    pub fn new(encryption: Encryption) -> Config {
        Config {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id: Id::random().hex(),
            encryption,
            chunker: DATA_PARAMS,
            tree_chunker: TREE_PARAMS,
        }
    }

    pub fn repo_id(&self) -> Id {
        Id::from_hex(&self.id).expect("validated in parse")
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("serializing to memory");
        v.push(b'\n');
        v
    }

    /// Parse and validate; the version is checked before anything else is interpreted.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Config> {
        let what = || format!("config of repository {}", path.display());
        if bytes.len() > 64 * 1024 {
            return Err(Error::malformed(what(), "larger than 64 KiB"));
        }
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::malformed(what(), e.to_string()))?;
        if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(Error::NotARepository(path.to_path_buf()));
        }
        let version =
            v.get("version").and_then(|f| f.as_u64()).ok_or_else(|| Error::malformed(what(), "no version"))?;
        if version > FORMAT_VERSION as u64 {
            return Err(Error::UnsupportedVersion {
                found: version.min(u32::MAX as u64) as u32,
                supported: FORMAT_VERSION,
            });
        }
        let c: Config = serde_json::from_value(v).map_err(|e| Error::malformed(what(), e.to_string()))?;
        if Id::from_hex(&c.id).is_none() {
            return Err(Error::malformed(what(), "id is not 64 hex digits"));
        }
        if !c.chunker.is_valid() || !c.tree_chunker.is_valid() {
            return Err(Error::malformed(what(), "chunker parameters out of range"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::Encryption;

    #[test]
    fn borg_encryption_modes_parse_or_are_refused_with_a_reason() {
        for (s, e) in [
            ("repokey", Encryption::Repokey),
            ("repokey-blake2", Encryption::Repokey),
            ("keyfile", Encryption::Keyfile),
            ("keyfile-blake2", Encryption::Keyfile),
            ("none", Encryption::None),
        ] {
            assert_eq!(s.parse::<Encryption>().unwrap(), e, "{s}");
        }
        assert!("authenticated-blake2".parse::<Encryption>().unwrap_err().contains("use repokey"));
        assert!("aes".parse::<Encryption>().is_err());
    }
}
