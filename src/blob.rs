//! Blob encoding: plaintext framing, padding and the keyed-id check (repo-format.md, "Blobs").
//!
//! plaintext = marker (1) || payload_len (u32 LE) || payload || zero padding to Padmé length.
//! The envelope is sealed with the blob's type and id in the AAD; after opening, the payload is
//! decompressed and its keyed id recomputed and compared.

use crate::compress::{self, Compression};
use crate::crypto::{Keys, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::id::{Id, ObjectType};

/// Largest plaintext a blob may hold (also the bound for decompression).
pub const MAX_BLOB_SIZE: usize = 16 * 1024 * 1024;
const FRAME_HEADER: usize = 5;

/// An encoded blob ready to be placed in a pack.
pub struct SealedBlob {
    pub id: Id,
    pub kind: ObjectType,
    /// Length of the uncompressed plaintext.
    pub raw_len: u32,
    pub envelope: Vec<u8>,
}

/// Compress, pad and encrypt `data` whose id is `id`.
pub fn seal(keys: &Keys, kind: ObjectType, id: Id, data: &[u8], c: Compression) -> SealedBlob {
    // One buffer, compressed into and encrypted in place: nonce room, frame header, payload,
    // padding, then the tag.
    let head = NONCE_LEN + FRAME_HEADER;
    // Room for the worst case: zstd's bound (at least the raw length), padded, and the tag.
    let room = NONCE_LEN + compress::padme(FRAME_HEADER + zstd::zstd_safe::compress_bound(data.len())) + TAG_LEN;
    let mut buf = Vec::with_capacity(room);
    buf.resize(head, 0);
    let marker = compress::compress_append(c, data, &mut buf);
    if marker == compress::MARKER_NONE {
        buf.extend_from_slice(data);
    }
    let payload_len = buf.len() - head;
    buf[NONCE_LEN] = marker;
    buf[NONCE_LEN + 1..head].copy_from_slice(&(payload_len as u32).to_le_bytes());
    let padded = compress::padme(FRAME_HEADER + payload_len);
    buf.resize(NONCE_LEN + padded, 0);
    // Give back what compression did not use (the allocator shrinks in place, no copy).
    buf.shrink_to(NONCE_LEN + padded + TAG_LEN);
    keys.seal_in_place(kind, &id, &mut buf);
    SealedBlob { id, kind, raw_len: data.len() as u32, envelope: buf }
}

/// Open an envelope that should hold blob `id` of type `kind`; returns the plaintext only if it
/// authenticates, decodes and hashes back to `id`.
pub fn open(keys: &Keys, kind: ObjectType, id: &Id, envelope: &[u8]) -> Result<Vec<u8>> {
    open_owned(keys, kind, id, envelope.to_vec())
}

/// [`open`] for an envelope the caller owns: decrypted in place, no copy.
pub fn open_owned(keys: &Keys, kind: ObjectType, id: &Id, envelope: Vec<u8>) -> Result<Vec<u8>> {
    let what = || format!("{kind:?} blob {}", id.hex());
    let (buf, range) = keys.open_in_place(kind, id, envelope, &what)?;
    let mut data = Vec::new();
    decode(keys, id, &buf[range], &mut data, &what)?;
    Ok(data)
}

/// Verify an envelope without keeping its plaintext (`check --verify-data`): it is decrypted
/// where it lies (the caller's copy of the pack is changed), decompressed into `scratch` and
/// re-hashed. Returns the plaintext length.
pub fn verify_in_place(
    keys: &Keys,
    kind: ObjectType,
    id: &Id,
    envelope: &mut [u8],
    scratch: &mut Vec<u8>,
) -> Result<usize> {
    let what = || format!("{kind:?} blob {}", id.hex());
    let range = keys.open_slice_in_place(kind, id, envelope, &what)?;
    decode(keys, id, &envelope[range], scratch, &what)?;
    Ok(scratch.len())
}

/// Decode an authenticated plaintext (frame header, payload, padding) into `out` and check that
/// the content hashes to `id`.
fn decode(keys: &Keys, id: &Id, pt: &[u8], out: &mut Vec<u8>, what: &dyn Fn() -> String) -> Result<()> {
    if pt.len() < FRAME_HEADER {
        return Err(Error::integrity(what(), "plaintext shorter than its frame header"));
    }
    let marker = pt[0];
    let n = u32::from_le_bytes(pt[1..5].try_into().expect("4 bytes")) as usize;
    let payload = pt
        .get(FRAME_HEADER..FRAME_HEADER.saturating_add(n))
        .ok_or_else(|| Error::integrity(what(), "payload length exceeds blob"))?;
    compress::decompress_into(marker, payload, MAX_BLOB_SIZE, out)
        .map_err(|e| Error::integrity(what(), e.to_string()))?;
    if keys.blob_id(out) != *id {
        return Err(Error::integrity(what(), "content does not hash to its id"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn round_trip_and_padding() {
        let keys = Keys::derive(&MasterKey::generate(), Id([1; 32]), 1);
        let data = b"some data that compresses some data that compresses".repeat(50);
        let id = keys.blob_id(&data);
        let b = seal(&keys, ObjectType::Data, id, &data, Compression::Zstd(3));
        assert_eq!(open(&keys, ObjectType::Data, &id, &b.envelope).unwrap(), data);
        assert!(open(&keys, ObjectType::Tree, &id, &b.envelope).is_err());
        let mut scratch = vec![7u8; 3];
        let mut env = b.envelope.clone();
        assert_eq!(verify_in_place(&keys, ObjectType::Data, &id, &mut env, &mut scratch).unwrap(), data.len());
        assert_eq!(scratch, data);
        let mut flipped = b.envelope.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 1;
        assert!(verify_in_place(&keys, ObjectType::Data, &id, &mut flipped, &mut scratch).is_err());
    }
}
