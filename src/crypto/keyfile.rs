//! The key file: the master key wrapped under a passphrase with Argon2id
//! (repo-format.md, "Key file").
//!
//! Argon2id parameters are stored beside the wrapped key, bound into the wrapping AAD, and checked
//! against hard bounds before anything is allocated, so a hostile key file can neither weaken the
//! KDF below RFC 9106's second recommended set nor make garret allocate gigabytes.

use super::{random_bytes, MasterKey};
use crate::error::{Error, Result};
use crate::id::Id;
use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

pub const KEYFILE_VERSION: u32 = 1;
/// Floor: RFC 9106 second recommended option (t=3, m=64 MiB).
pub const MIN_MEMORY_KIB: u32 = 64 * 1024;
pub const MIN_ITERATIONS: u32 = 3;
/// Ceilings applied when reading a key file.
pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
pub const MAX_ITERATIONS: u32 = 16;
pub const MAX_PARALLELISM: u32 = 16;
/// Default: 80 MiB, t=4, p=4 — above RFC 9106's second set in memory and passes, while keeping
/// the KDF's memory below what a backup run needs anyway: peak RSS is the larger of the two, and
/// garret's whole create must fit in less than borg's 100 to 109 MiB. An attacker's cost per guess
/// goes with memory times passes: 320 MiB-passes, against 288 for the 96 MiB, t=3 written before.
pub const DEFAULT_MEMORY_KIB: u32 = 80 * 1024;
/// Passes new keys are wrapped with, whatever their memory.
pub const DEFAULT_ITERATIONS: u32 = 4;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Always "argon2id".
    pub algorithm: KdfAlgorithm,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KdfAlgorithm {
    Argon2id,
}

impl KdfParams {
    /// The parameters new keys get, with `mib` MiB of memory.
    pub fn with_memory_mib(mib: u32) -> KdfParams {
        KdfParams {
            algorithm: KdfAlgorithm::Argon2id,
            memory_kib: mib.saturating_mul(1024),
            iterations: DEFAULT_ITERATIONS,
            parallelism: 4,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let ok = (MIN_MEMORY_KIB..=MAX_MEMORY_KIB).contains(&self.memory_kib)
            && (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&self.iterations)
            && (1..=MAX_PARALLELISM).contains(&self.parallelism);
        if ok {
            Ok(())
        } else {
            Err(Error::Key(format!(
                "key file has out-of-range argon2id parameters (memory {} KiB, t={}, p={}); allowed: memory {}..{} KiB, t {}..{}, p 1..{}",
                self.memory_kib, self.iterations, self.parallelism, MIN_MEMORY_KIB, MAX_MEMORY_KIB, MIN_ITERATIONS, MAX_ITERATIONS, MAX_PARALLELISM
            )))
        }
    }

    fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.memory_kib.to_le_bytes());
        b[4..8].copy_from_slice(&self.iterations.to_le_bytes());
        b[8..].copy_from_slice(&self.parallelism.to_le_bytes());
        b
    }
}

/// The JSON key file. `kdf`/`salt`/`nonce`/`wrapped` are present for passphrase-protected keys;
/// `plain` holds the unprotected key of an `-e none` repository.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<KdfParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain: Option<String>,
}

fn kek(passphrase: &[u8], salt: &[u8], p: &KdfParams) -> Result<[u8; 32]> {
    p.validate()?;
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| Error::Key(format!("argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    let r = match KdfMemory::map(a.params().block_count()) {
        Some(mut m) => a.hash_password_into_with_memory(passphrase, salt, &mut out, m.blocks()),
        None => a.hash_password_into(passphrase, salt, &mut out),
    };
    r.map_err(|e| Error::Key(format!("argon2: {e}")))?;
    Ok(out)
}

/// Argon2's working memory, mapped from the kernel (already zero, no memset). Not advised onto
/// huge pages: that was 20 ms faster on an idle machine, but after a night's file I/O the
/// kernel compacts memory to find them and zeroes cold pages (day-2 create 1.19 s with them,
/// 1.11 s without, three runs each); MAP_POPULATE did not help either.
struct KdfMemory {
    ptr: *mut std::ffi::c_void,
    len: usize,
    blocks: usize,
}

impl KdfMemory {
    fn map(blocks: usize) -> Option<KdfMemory> {
        use rustix::mm::{mmap_anonymous, MapFlags, ProtFlags};
        let len = blocks.checked_mul(std::mem::size_of::<argon2::Block>())?;
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let ptr = unsafe {
            mmap_anonymous(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE).ok()?
        };
        Some(KdfMemory { ptr, len, blocks })
    }

    fn blocks(&mut self) -> &mut [argon2::Block] {
        // SAFETY: the mapping is page-aligned (more than Block's 64-byte alignment), `blocks`
        // blocks long, zero-filled (a valid Block is any bit pattern: 128 u64 words), and
        // borrowed mutably from self, which owns it until drop.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<argon2::Block>(), self.blocks) }
    }
}

impl Drop for KdfMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; no borrow of it outlives self.
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
    }
}

fn wrap_aad(repo: &Id, p: &KdfParams) -> Vec<u8> {
    let mut aad = b"garret key".to_vec();
    aad.extend_from_slice(&repo.0);
    aad.extend_from_slice(&p.encode());
    aad
}

fn master_to_cbor(master: &MasterKey) -> Vec<u8> {
    let mut v = Vec::new();
    ciborium::into_writer(master, &mut v).expect("serializing to memory");
    v
}

fn master_from_cbor(b: &[u8]) -> Result<MasterKey> {
    ciborium::from_reader(b).map_err(|e| Error::Key(format!("key material does not decode: {e}")))
}

impl KeyFile {
    /// Wrap `master` under `passphrase`.
    pub fn wrap(master: &MasterKey, repo: &Id, passphrase: &[u8], params: KdfParams) -> Result<KeyFile> {
        let mut salt = [0u8; 32];
        random_bytes(&mut salt);
        let mut nonce = [0u8; 12];
        random_bytes(&mut nonce);
        let mut k = kek(passphrase, &salt, &params)?;
        let cipher = Aes256GcmSiv::new_from_slice(&k).expect("32-byte key");
        k.zeroize();
        let mut pt = master_to_cbor(master);
        let ct = cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: &pt, aad: &wrap_aad(repo, &params) })
            .expect("bounded message");
        pt.zeroize();
        Ok(KeyFile {
            version: KEYFILE_VERSION,
            repository: repo.hex(),
            kdf: Some(params),
            salt: Some(hex::encode(salt)),
            nonce: Some(hex::encode(nonce)),
            wrapped: Some(hex::encode(ct)),
            plain: None,
        })
    }

    /// An unprotected key (encryption mode `none`).
    pub fn plain(master: &MasterKey, repo: &Id) -> KeyFile {
        KeyFile {
            version: KEYFILE_VERSION,
            repository: repo.hex(),
            kdf: None,
            salt: None,
            nonce: None,
            wrapped: None,
            plain: Some(hex::encode(master_to_cbor(master))),
        }
    }

    pub fn needs_passphrase(&self) -> bool {
        self.plain.is_none()
    }

    pub fn parse(bytes: &[u8]) -> Result<KeyFile> {
        if bytes.len() > 64 * 1024 {
            return Err(Error::Key("key file larger than 64 KiB".into()));
        }
        let kf: KeyFile =
            serde_json::from_slice(bytes).map_err(|e| Error::Key(format!("key file does not parse: {e}")))?;
        if kf.version > KEYFILE_VERSION {
            return Err(Error::Key(format!("key file version {} is newer than this garret supports", kf.version)));
        }
        Ok(kf)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("serializing to memory");
        v.push(b'\n');
        v
    }

    /// Unwrap with `passphrase` (ignored for plain keys). `repo` must match the key's repository.
    pub fn unwrap(&self, repo: &Id, passphrase: Option<&[u8]>, repo_path: &std::path::Path) -> Result<MasterKey> {
        if self.repository != repo.hex() {
            return Err(Error::Key(format!("key file belongs to repository {}, not {}", self.repository, repo.hex())));
        }
        if let Some(p) = &self.plain {
            let b = hex::decode(p).map_err(|_| Error::Key("plain key is not hex".into()))?;
            return master_from_cbor(&b);
        }
        let bad = |f: &str| Error::Key(format!("key file field {f:?} missing or not hex"));
        let params = self.kdf.ok_or_else(|| bad("kdf"))?;
        params.validate()?;
        let salt = hex::decode(self.salt.as_deref().ok_or_else(|| bad("salt"))?).map_err(|_| bad("salt"))?;
        let nonce = hex::decode(self.nonce.as_deref().ok_or_else(|| bad("nonce"))?).map_err(|_| bad("nonce"))?;
        let ct = hex::decode(self.wrapped.as_deref().ok_or_else(|| bad("wrapped"))?).map_err(|_| bad("wrapped"))?;
        if nonce.len() != 12 || !(16..=64).contains(&salt.len()) || ct.len() > 4096 {
            return Err(Error::Key("key file salt, nonce or wrapped key has a wrong length".into()));
        }
        let passphrase = passphrase.ok_or_else(|| Error::Key("a passphrase is required".into()))?;
        let mut k = kek(passphrase, &salt, &params)?;
        let cipher = Aes256GcmSiv::new_from_slice(&k).expect("32-byte key");
        k.zeroize();
        let mut pt = cipher
            .decrypt(
                &Nonce::try_from(&nonce[..]).expect("checked: 12 bytes"),
                Payload { msg: &ct, aad: &wrap_aad(repo, &params) },
            )
            .map_err(|_| Error::WrongPassphrase(repo_path.to_path_buf()))?;
        let m = master_from_cbor(&pt);
        pt.zeroize();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_and_wrong_passphrase() {
        let mk = MasterKey::generate();
        let repo = Id([3; 32]);
        let kf = KeyFile::wrap(&mk, &repo, b"secret", KdfParams::with_memory_mib(64)).unwrap();
        let back = KeyFile::parse(&kf.to_json()).unwrap();
        let p = std::path::Path::new("r");
        assert_eq!(back.unwrap(&repo, Some(b"secret"), p).unwrap().enc, mk.enc);
        assert!(matches!(back.unwrap(&repo, Some(b"wrong"), p), Err(Error::WrongPassphrase(_))));
    }

    /// The KDF output for fixed inputs never changes (it would lock users out of their keys),
    /// whichever argon2 implementation or thread count computes it.
    #[test]
    fn kdf_vector() {
        let p = KdfParams { algorithm: KdfAlgorithm::Argon2id, memory_kib: 64 * 1024, iterations: 3, parallelism: 4 };
        let k = kek(b"correct horse battery staple", b"garret-kdf-salt!", &p).unwrap();
        assert_eq!(hex::encode(k), "94c14e408fc6842df74f68adbd2289b4a77b1c6d64dbb1a520865beaf1745ce9");
    }

    #[test]
    fn hostile_kdf_params_refused_before_allocation() {
        let mk = MasterKey::generate();
        let repo = Id([3; 32]);
        let mut kf = KeyFile::wrap(&mk, &repo, b"s", KdfParams::with_memory_mib(64)).unwrap();
        kf.kdf.as_mut().unwrap().memory_kib = u32::MAX;
        let e = kf.unwrap(&repo, Some(b"s"), std::path::Path::new("r")).unwrap_err();
        assert!(e.to_string().contains("out-of-range"), "{e}");
        kf.kdf.as_mut().unwrap().memory_kib = 1024;
        assert!(kf.unwrap(&repo, Some(b"s"), std::path::Path::new("r")).is_err());
    }
}
