//! Client-side memory of a repository (repo-format.md, "Client state"): the newest manifest this
//! client has seen and the fingerprint of the key it used. Kept outside the repository, so a
//! repository rolled back to an older manifest, or given another key, is noticed.

use crate::client_file;
use crate::error::Result;
use crate::id::Id;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientState {
    pub seq: u64,
    pub manifest_hash: Id,
    pub key_fingerprint: Id,
}

fn path(cache_dir: &Path, repo: &Id) -> PathBuf {
    cache_dir.join(repo.hex()).join("state.json")
}

pub fn load(cache_dir: &Path, repo: &Id) -> Option<ClientState> {
    let b = std::fs::read(path(cache_dir, repo)).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Remember `st`. Another process may have remembered a newer manifest meanwhile (a `list`
/// that opened the repository before a `create` committed saves after it): a lower sequence
/// number under the same key never replaces a higher one, unless `adopt` says the user chose
/// this repository as it is now.
pub fn save(cache_dir: &Path, repo: &Id, st: &ClientState, adopt: bool) -> Result<()> {
    let p = path(cache_dir, repo);
    let held = client_file::lock_dir(p.parent().expect("has parent"))?;
    if let Some(cur) = load(cache_dir, repo) {
        let newer = !adopt && cur.key_fingerprint == st.key_fingerprint && cur.seq > st.seq;
        if newer || cur == *st {
            return Ok(());
        }
    }
    let bytes = serde_json::to_vec_pretty(st).expect("serializing to memory");
    client_file::replace_with(&held, &p, client_file::Durability::Synced, |mut f| f.write_all(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(seq: u64, key: u8) -> ClientState {
        ClientState { seq, manifest_hash: Id([seq as u8; 32]), key_fingerprint: Id([key; 32]) }
    }

    #[test]
    fn a_late_save_of_an_older_manifest_does_not_forget_a_newer_one() {
        let d = tempfile::tempdir().unwrap();
        let repo = Id([7; 32]);
        save(d.path(), &repo, &st(5, 1), false).unwrap();
        save(d.path(), &repo, &st(4, 1), false).unwrap();
        assert_eq!(load(d.path(), &repo), Some(st(5, 1)), "an older manifest replaced a newer one");
        save(d.path(), &repo, &st(6, 1), false).unwrap();
        assert_eq!(load(d.path(), &repo), Some(st(6, 1)));
        // Another key is not "older": the open that found it refused, or the user adopted it.
        save(d.path(), &repo, &st(2, 2), false).unwrap();
        assert_eq!(load(d.path(), &repo), Some(st(2, 2)));
        save(d.path(), &repo, &st(9, 2), false).unwrap();
        save(d.path(), &repo, &st(3, 2), true).unwrap();
        assert_eq!(load(d.path(), &repo), Some(st(3, 2)), "adopt accepts an older manifest");
    }
}
