//! Key material, purpose keys, and the AEAD envelope (repo-format.md, "Keys" and "Envelope").
//!
//! Every encrypted object is `nonce (12) || AES-256-GCM-SIV(key, nonce, plaintext, aad)`. The AAD
//! binds the repository id, the format version, the object type and the object id, so an object
//! cannot be moved to another repository, type or name without failing authentication. Callers of
//! [`Keys::open`] for blobs additionally recompute the keyed id of the plaintext; that check is
//! what commits the ciphertext to one key (GCM-SIV alone is not key-committing).

pub mod keyfile;
pub mod paper;

use crate::error::{Error, Result};
use crate::id::{Id, ObjectType};
use aes_gcm_siv::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext.
pub const ENVELOPE_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Fill `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) {
    // getrandom only fails when the OS has no entropy source at all; nothing sensible can run then.
    getrandom::getrandom(buf).expect("operating system random number generator failed");
}

/// Operating-system random bytes for nonces, fetched 341 nonces at a time: one `getrandom` call
/// per 341 blobs instead of one per blob (a cold create of 90,000 blobs made 92,000 calls). Every
/// byte is handed out once. garret never forks without exec, so no two processes share a pool.
const NONCE_POOL: usize = 341 * NONCE_LEN;

thread_local! {
    static NONCES: std::cell::RefCell<(usize, [u8; NONCE_POOL])> =
        const { std::cell::RefCell::new((NONCE_POOL, [0; NONCE_POOL])) };
}

/// A fresh random nonce.
fn fresh_nonce() -> [u8; NONCE_LEN] {
    NONCES.with_borrow_mut(|(used, pool)| {
        if *used == NONCE_POOL {
            random_bytes(pool);
            *used = 0;
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(&pool[*used..*used + NONCE_LEN]);
        // Not needed again: forget it, so the pool never holds a nonce already used.
        pool[*used..*used + NONCE_LEN].fill(0);
        *used += NONCE_LEN;
        n
    })
}

/// The secret master key material, generated once at `init` and stored wrapped in the key file.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    #[serde(with = "serde_bytes")]
    pub enc: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub id: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub chunker: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        let mut k = MasterKey { enc: [0; 32], id: [0; 32], chunker: [0; 32] };
        random_bytes(&mut k.enc);
        random_bytes(&mut k.id);
        random_bytes(&mut k.chunker);
        k
    }

    /// A fingerprint that identifies this key material without revealing it; clients remember it
    /// to notice a swapped key file (repo-format.md, "Client state").
    pub fn fingerprint(&self) -> Id {
        let mut h = blake3::Hasher::new_derive_key("garret 2026-11 key fingerprint");
        h.update(&self.enc);
        h.update(&self.id);
        h.update(&self.chunker);
        Id(*h.finalize().as_bytes())
    }
}

// Purpose strings for BLAKE3 derive_key; changing one changes every repository's bytes.
const CTX_BLOB: &str = "garret 2026-11 blob encryption";
const CTX_HEADER: &str = "garret 2026-11 pack header encryption";
const CTX_MANIFEST: &str = "garret 2026-11 manifest authentication";
const CTX_ID: &str = "garret 2026-11 blob id";
const CTX_CHUNKER: &str = "garret 2026-11 chunker seed";

/// The per-purpose keys derived from a [`MasterKey`] for one repository.
pub struct Keys {
    repo_id: Id,
    version: u32,
    blob: Aes256GcmSiv,
    header: Aes256GcmSiv,
    manifest: Aes256GcmSiv,
    id_key: [u8; 32],
    chunker_seed: u64,
}

impl Keys {
    pub fn derive(master: &MasterKey, repo_id: Id, version: u32) -> Keys {
        let cipher = |ctx: &str| {
            let mut k = blake3::derive_key(ctx, &master.enc);
            let c = Aes256GcmSiv::new_from_slice(&k).expect("32-byte key");
            k.zeroize();
            c
        };
        let seed = blake3::derive_key(CTX_CHUNKER, &master.chunker);
        Keys {
            repo_id,
            version,
            blob: cipher(CTX_BLOB),
            header: cipher(CTX_HEADER),
            manifest: cipher(CTX_MANIFEST),
            id_key: blake3::derive_key(CTX_ID, &master.id),
            chunker_seed: u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")),
        }
    }

    /// The keyed BLAKE3-256 id of a blob's plaintext.
    pub fn blob_id(&self, data: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id_key, data).as_bytes())
    }

    /// The secret FastCDC seed (never zero: the fastcdc crate treats zero as "unseeded").
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed.max(1)
    }

    fn cipher(&self, t: ObjectType) -> &Aes256GcmSiv {
        match t {
            ObjectType::PackHeader => &self.header,
            ObjectType::Manifest => &self.manifest,
            _ => &self.blob,
        }
    }

    fn aad(&self, t: ObjectType, id: &Id) -> [u8; 75] {
        // "garret" || repo id (32) || version u32 LE || type (1) || object id (32)
        let mut aad = [0u8; 75];
        aad[..6].copy_from_slice(b"garret");
        aad[6..38].copy_from_slice(&self.repo_id.0);
        aad[38..42].copy_from_slice(&self.version.to_le_bytes());
        aad[42] = t as u8;
        aad[43..75].copy_from_slice(&id.0);
        aad
    }

    /// Encrypt `plaintext` as an object of type `t` named `id`.
    pub fn seal(&self, t: ObjectType, id: &Id, plaintext: &[u8]) -> Vec<u8> {
        let nonce = fresh_nonce();
        let aad = self.aad(t, id);
        let ct = self
            .cipher(t)
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: &aad })
            .expect("AES-GCM-SIV encryption of a bounded message cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Encrypt in place: `buf` holds [`NONCE_LEN`] reserved bytes followed by the plaintext; on
    /// return it is the envelope (nonce, ciphertext, tag). Avoids copying large blobs.
    pub fn seal_in_place(&self, t: ObjectType, id: &Id, buf: &mut Vec<u8>) {
        let nonce = fresh_nonce();
        buf[..NONCE_LEN].copy_from_slice(&nonce);
        let aad = self.aad(t, id);
        let tag = self
            .cipher(t)
            .encrypt_inout_detached(&Nonce::from(nonce), &aad, (&mut buf[NONCE_LEN..]).into())
            .expect("AES-GCM-SIV encryption of a bounded message cannot fail");
        buf.extend_from_slice(&tag);
    }

    /// Authenticate and decrypt an owned envelope in place; returns the buffer and the range of
    /// the plaintext within it.
    pub fn open_in_place(
        &self,
        t: ObjectType,
        id: &Id,
        mut buf: Vec<u8>,
        what: &dyn Fn() -> String,
    ) -> Result<(Vec<u8>, std::ops::Range<usize>)> {
        let range = self.open_slice_in_place(t, id, &mut buf, what)?;
        Ok((buf, range))
    }

    /// [`open_in_place`](Self::open_in_place) on a borrowed buffer (an envelope inside a pack
    /// read whole); returns where the plaintext is.
    pub fn open_slice_in_place(
        &self,
        t: ObjectType,
        id: &Id,
        buf: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<std::ops::Range<usize>> {
        if buf.len() < ENVELOPE_OVERHEAD {
            return Err(Error::integrity(what(), "object shorter than nonce and tag"));
        }
        let end = buf.len() - TAG_LEN;
        let (head, tag) = buf.split_at_mut(end);
        let (nonce, ct) = head.split_at_mut(NONCE_LEN);
        let aad = self.aad(t, id);
        let nonce = Nonce::try_from(&*nonce).expect("NONCE_LEN bytes");
        let tag = aes_gcm_siv::Tag::try_from(&*tag).expect("TAG_LEN bytes");
        self.cipher(t).decrypt_inout_detached(&nonce, &aad, ct.into(), &tag).map_err(|_| {
            Error::integrity(what(), "authentication failed (corrupt, tampered, or not this type of object)")
        })?;
        Ok(NONCE_LEN..end)
    }

    /// Authenticate and decrypt an envelope; `what` names the object in the error.
    pub fn open(&self, t: ObjectType, id: &Id, envelope: &[u8], what: &dyn Fn() -> String) -> Result<Vec<u8>> {
        if envelope.len() < ENVELOPE_OVERHEAD {
            return Err(Error::integrity(what(), "object shorter than nonce and tag"));
        }
        let (nonce, ct) = envelope.split_at(NONCE_LEN);
        let aad = self.aad(t, id);
        let nonce = Nonce::try_from(nonce).expect("NONCE_LEN bytes");
        self.cipher(t).decrypt(&nonce, Payload { msg: ct, aad: &aad }).map_err(|_| {
            Error::integrity(what(), "authentication failed (corrupt, tampered, or not this type of object)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_from_the_pool_never_repeat_across_refills() {
        let n: Vec<[u8; NONCE_LEN]> = (0..3 * NONCE_POOL / NONCE_LEN + 5).map(|_| fresh_nonce()).collect();
        let distinct: std::collections::HashSet<_> = n.iter().collect();
        assert_eq!(distinct.len(), n.len());
        assert!(!distinct.contains(&[0u8; NONCE_LEN]));
        // and each thread draws its own
        let other = std::thread::spawn(|| (0..400).map(|_| fresh_nonce()).collect::<Vec<_>>()).join().unwrap();
        assert!(other.iter().all(|x| !distinct.contains(x)));
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let mk = MasterKey::generate();
        let keys = Keys::derive(&mk, Id([7; 32]), 1);
        let id = keys.blob_id(b"hello");
        let env = keys.seal(ObjectType::Data, &id, b"hello");
        assert_eq!(keys.open(ObjectType::Data, &id, &env, &|| "x".into()).unwrap(), b"hello");
        // another type, id or repository must not authenticate
        assert!(keys.open(ObjectType::Archive, &id, &env, &|| "x".into()).is_err());
        assert!(keys.open(ObjectType::Data, &Id([1; 32]), &env, &|| "x".into()).is_err());
        let other = Keys::derive(&mk, Id([8; 32]), 1);
        assert!(other.open(ObjectType::Data, &id, &env, &|| "x".into()).is_err());
        let mut bad = env.clone();
        bad[20] ^= 1;
        assert!(keys.open(ObjectType::Data, &id, &bad, &|| "x".into()).is_err());
    }

    #[test]
    fn ids_are_keyed() {
        let keys = Keys::derive(&MasterKey::generate(), Id([7; 32]), 1);
        assert_ne!(keys.blob_id(b"abc").0, *blake3::hash(b"abc").as_bytes());
    }
}

/// Test vectors published in repo-format.md ("Test vectors").
#[cfg(test)]
mod vectors {
    use super::*;

    pub(crate) fn vector_keys() -> Keys {
        let mk = MasterKey { enc: [0x11; 32], id: [0x22; 32], chunker: [0x33; 32] };
        Keys::derive(&mk, Id([0x44; 32]), 1)
    }

    #[test]
    fn published_vectors() {
        let k = vector_keys();
        assert_eq!(k.blob_id(b"garret").hex(), include_str!("../../tests/data/vector-blob-id.hex").trim());
        assert_eq!(
            format!("{:016x}", k.chunker_seed()),
            include_str!("../../tests/data/vector-chunker-seed.hex").trim()
        );
        let aad = k.aad(ObjectType::Data, &Id([0x55; 32]));
        assert_eq!(hex::encode(aad), include_str!("../../tests/data/vector-aad.hex").trim());
        // An envelope made with the vector keys (random nonce at the time) must still open.
        let env = hex::decode(include_str!("../../tests/data/vector-envelope.hex").trim()).unwrap();
        let id = k.blob_id(b"garret");
        let pt = k.open(ObjectType::Data, &id, &env, &|| "vector".into()).unwrap();
        assert_eq!(hex::encode(&pt), include_str!("../../tests/data/vector-envelope-plaintext.hex").trim());
    }

    #[test]
    #[ignore = "prints the vectors; run with --ignored to regenerate tests/data"]
    fn print_vectors() {
        let k = vector_keys();
        let id = k.blob_id(b"garret");
        println!("blob id {}", id.hex());
        println!("seed {:016x}", k.chunker_seed());
        println!("aad {}", hex::encode(k.aad(ObjectType::Data, &Id([0x55; 32]))));
        let b = crate::blob::seal(&k, ObjectType::Data, id, b"garret", crate::compress::Compression::None);
        println!("envelope {}", hex::encode(&b.envelope));
        println!("plaintext {}", hex::encode(k.open(ObjectType::Data, &id, &b.envelope, &|| "v".into()).unwrap()));
    }
}
