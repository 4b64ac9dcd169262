//! Client-side memory of a repository (repo-format.md, "Client state"): the newest manifest this
//! client has seen and the fingerprint of the key it used. Kept outside the repository, so a
//! repository rolled back to an older manifest, or given another key, is noticed.

use crate::error::{IoContext, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};
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

pub fn save(cache_dir: &Path, repo: &Id, st: &ClientState) -> Result<()> {
    let p = path(cache_dir, repo);
    let dir = p.parent().expect("has parent");
    std::fs::create_dir_all(dir).ctx(|| format!("creating cache directory {}", dir.display()))?;
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(st).expect("serializing to memory"))
        .ctx(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &p).ctx(|| format!("renaming {}", tmp.display()))
}
