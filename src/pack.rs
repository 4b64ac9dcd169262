//! Pack files: many encrypted blobs plus an encrypted header listing them
//! (repo-format.md, "Pack files"). Pure: builds and parses bytes; storing them is the
//! repository's job.
//!
//! pack = blob envelope* || header envelope || header envelope length (u32 LE)
//!
//! Blobs are placed in random order, and the header is encrypted, so the file reveals neither
//! which blob is which nor how big each plaintext was beyond its padded envelope size.

use crate::blob::SealedBlob;
use crate::crypto::{Keys, ENVELOPE_OVERHEAD};
use crate::error::{Error, Result};
use crate::id::{Id, ObjectType};
use serde::{Deserialize, Serialize};

pub const PACK_HEADER_VERSION: u32 = 1;
/// A pack is flushed once its blobs reach this size.
pub const TARGET_PACK_SIZE: usize = 8 * 1024 * 1024;
/// Upper bound on blobs listed in one header (bounds the header decoder).
pub const MAX_BLOBS_PER_PACK: usize = 1 << 20;
pub const MAX_HEADER_LEN: usize = 64 * 1024 * 1024;

/// One header entry: where a blob's envelope sits in the pack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackEntry {
    /// Object type (1 data, 2 tree, 3 archive).
    #[serde(rename = "t")]
    pub kind: u8,
    #[serde(rename = "i")]
    pub id: Id,
    #[serde(rename = "o")]
    pub offset: u64,
    /// Length of the envelope in bytes.
    #[serde(rename = "l")]
    pub length: u32,
    /// Length of the uncompressed plaintext.
    #[serde(rename = "u")]
    pub raw_length: u32,
    /// For a data blob stored in a bundle (format version 2): where its `raw_length` bytes start
    /// in the bundle's content; `o` and `l` are then the bundle's envelope, which every member
    /// of the bundle shares.
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    pub within: Option<u32>,
}

impl PackEntry {
    /// Where the entry's envelope lies in its pack.
    pub fn span(&self) -> (u64, u32) {
        (self.offset, self.length)
    }
}

/// The stored bytes counted for each entry of a pack header: an envelope's own length for a
/// blob, and for members of a bundle (entries sharing an envelope) that envelope shared out in
/// proportion to their lengths ([`crate::blob::shares`]), in the order of their `within`.
pub fn stored_shares(entries: &[PackEntry]) -> Vec<u32> {
    let mut out: Vec<u32> = entries.iter().map(|e| e.length).collect();
    let mut bundles: std::collections::HashMap<(u64, u32), Vec<usize>> = std::collections::HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.within.is_some() {
            bundles.entry(e.span()).or_default().push(i);
        }
    }
    for ((_, length), mut members) in bundles {
        members.sort_by_key(|&i| (entries[i].within, i));
        let lens: Vec<u32> = members.iter().map(|&i| entries[i].raw_length).collect();
        for (i, share) in members.into_iter().zip(crate::blob::shares(length, &lens)) {
            out[i] = share;
        }
    }
    out
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PackHeader {
    #[serde(rename = "v")]
    pub version: u32,
    #[serde(rename = "b")]
    pub blobs: Vec<PackEntry>,
}

/// The all-zero object id under which pack headers are sealed (the pack's own name is a hash
/// of the file, header included, so it cannot be bound).
const HEADER_ID: Id = Id([0; 32]);

/// Accumulates sealed blobs and produces the bytes of one pack file.
#[derive(Default)]
pub struct PackBuilder {
    blobs: Vec<SealedBlob>,
    size: usize,
    /// Header entries the blobs make (a bundle one per member).
    entries: usize,
}

impl PackBuilder {
    pub fn add(&mut self, b: SealedBlob) {
        self.size += b.envelope.len();
        self.entries += b.members.len().max(1);
        self.blobs.push(b);
    }
    pub fn size(&self) -> usize {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
    pub fn is_full(&self) -> bool {
        self.size >= TARGET_PACK_SIZE || self.entries >= MAX_BLOBS_PER_PACK / 2
    }

    /// Shuffle the blobs, lay them out, append the sealed header; returns the file's bytes as
    /// consecutive parts (blob envelopes, header, trailer: written without joining them) and the
    /// header entries.
    pub fn finish(mut self, keys: &Keys) -> (Vec<Vec<u8>>, Vec<PackEntry>) {
        shuffle(&mut self.blobs);
        let mut parts = Vec::with_capacity(self.blobs.len() + 2);
        let mut entries = Vec::with_capacity(self.entries);
        let mut offset = 0u64;
        for b in self.blobs {
            let length = b.envelope.len() as u32;
            if b.members.is_empty() {
                entries.push(PackEntry {
                    kind: b.kind as u8,
                    id: b.id,
                    offset,
                    length,
                    raw_length: b.raw_len,
                    within: None,
                });
            }
            for m in &b.members {
                entries.push(PackEntry {
                    kind: ObjectType::Data as u8,
                    id: m.id,
                    offset,
                    length,
                    raw_length: m.len,
                    within: Some(m.start),
                });
            }
            offset += b.envelope.len() as u64;
            parts.push(b.envelope);
        }
        let [sealed, trailer] = seal_header(keys, &entries);
        parts.push(sealed);
        parts.push(trailer);
        (parts, entries)
    }
}

/// The header envelope listing `entries`, and the trailer giving its length.
pub(crate) fn seal_header(keys: &Keys, entries: &[PackEntry]) -> [Vec<u8>; 2] {
    let header = PackHeader { version: PACK_HEADER_VERSION, blobs: entries.to_vec() };
    let mut plain = Vec::new();
    ciborium::into_writer(&header, &mut plain).expect("serializing to memory");
    let sealed = keys.seal(ObjectType::PackHeader, &HEADER_ID, &plain);
    let trailer = (sealed.len() as u32).to_le_bytes().to_vec();
    [sealed, trailer]
}

fn shuffle<T>(v: &mut [T]) {
    // Fisher-Yates with CSPRNG draws, all fetched in one call; modulo bias is irrelevant at
    // these sizes.
    let mut r = vec![0u8; 8 * v.len()];
    crate::crypto::random_bytes(&mut r);
    for (i, draw) in (1..v.len()).rev().zip(r.chunks_exact(8)) {
        let j = (u64::from_le_bytes(draw.try_into().expect("8 bytes")) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Length of the header envelope, read from the last 4 bytes of a pack of `pack_len` bytes.
pub fn header_length(trailer: &[u8], pack_len: u64, what: &str) -> Result<usize> {
    let t: [u8; 4] = trailer.try_into().map_err(|_| Error::malformed(what, "pack shorter than its trailer"))?;
    let n = u32::from_le_bytes(t) as usize;
    if !(ENVELOPE_OVERHEAD..=MAX_HEADER_LEN).contains(&n) || n as u64 + 4 > pack_len {
        return Err(Error::malformed(what, format!("header length {n} impossible for a {pack_len}-byte pack")));
    }
    Ok(n)
}

/// Decrypt and decode a pack header envelope, checking every entry lies inside the blob area.
pub fn decode_header(keys: &Keys, envelope: &[u8], blob_area: u64, what: &str) -> Result<Vec<PackEntry>> {
    let plain = keys.open(ObjectType::PackHeader, &HEADER_ID, envelope, &|| format!("header of pack {what}"))?;
    let h: PackHeader = ciborium::from_reader(&plain[..])
        .map_err(|e| Error::malformed(format!("header of pack {what}"), e.to_string()))?;
    if h.version != PACK_HEADER_VERSION {
        return Err(Error::malformed(
            format!("header of pack {what}"),
            format!("unknown header version {}", h.version),
        ));
    }
    for e in &h.blobs {
        let in_bounds = e.offset.checked_add(e.length as u64).is_some_and(|end| end <= blob_area);
        let kind_ok = ObjectType::from_u8(e.kind).is_some_and(|k| k.is_blob());
        // A bundle member is a data blob lying within the 16 MiB a bundle may hold.
        let member_ok = e.within.is_none_or(|w| {
            e.kind == ObjectType::Data as u8 && (w as u64 + e.raw_length as u64) <= crate::blob::MAX_BLOB_SIZE as u64
        });
        if !in_bounds || !kind_ok || !member_ok || (e.length as usize) < ENVELOPE_OVERHEAD {
            return Err(Error::malformed(format!("header of pack {what}"), format!("bad entry for blob {}", e.id)));
        }
    }
    Ok(h.blobs)
}

/// Parse a whole pack held in memory (used by check and index rebuild on small packs).
pub fn parse_pack(keys: &Keys, bytes: &[u8], what: &str) -> Result<Vec<PackEntry>> {
    let len = bytes.len() as u64;
    let tail = bytes.len().checked_sub(4).ok_or_else(|| Error::malformed(what, "pack shorter than its trailer"))?;
    let hl = header_length(&bytes[tail..], len, what)?;
    let hstart = tail - hl;
    decode_header(keys, &bytes[hstart..tail], hstart as u64, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob;
    use crate::compress::Compression;
    use crate::crypto::MasterKey;

    #[test]
    fn shuffle_permutes_and_moves_every_position() {
        for n in [0usize, 1, 2] {
            let mut v: Vec<usize> = (0..n).collect();
            shuffle(&mut v);
            v.sort_unstable();
            assert_eq!(v, (0..n).collect::<Vec<_>>());
        }
        // Over 2,000 shuffles of 8 elements, each element lands in each position about 250
        // times (a draw reused or left out would skew this).
        let mut seen = [[0u32; 8]; 8];
        for _ in 0..2000 {
            let mut v: Vec<usize> = (0..8).collect();
            shuffle(&mut v);
            for (pos, &x) in v.iter().enumerate() {
                seen[x][pos] += 1;
            }
        }
        for row in seen {
            assert!(row.iter().all(|&c| (150..=350).contains(&c)), "{row:?}");
        }
    }

    #[test]
    fn build_and_parse_pack() {
        let keys = Keys::derive(&MasterKey::generate(), Id([1; 32]), 1);
        let mut pb = PackBuilder::default();
        let mut datas = vec![];
        for i in 0..20u32 {
            let d = format!("blob number {i}").repeat(i as usize + 1).into_bytes();
            let id = keys.blob_id(&d);
            pb.add(blob::seal(&keys, ObjectType::Data, id, &d, Compression::Zstd(3)));
            datas.push((id, d));
        }
        let (parts, entries) = pb.finish(&keys);
        let bytes = parts.concat();
        let parsed = parse_pack(&keys, &bytes, "test").unwrap();
        assert_eq!(parsed, entries);
        for (id, d) in &datas {
            let e = parsed.iter().find(|e| e.id == *id).unwrap();
            let env = &bytes[e.offset as usize..(e.offset + e.length as u64) as usize];
            assert_eq!(&blob::open(&keys, ObjectType::Data, id, env).unwrap(), d);
        }
        // a flipped bit in the header is detected, never a panic
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 10] ^= 0x40;
        assert!(parse_pack(&keys, &bad, "test").is_err());
        assert!(parse_pack(&keys, &bytes[..3], "test").is_err());
    }

    #[test]
    fn a_bundle_is_listed_once_per_member_and_its_envelope_shared_out() {
        let keys = Keys::derive(&MasterKey::generate(), Id([1; 32]), 2);
        let chunks: Vec<(Id, Vec<u8>)> = (0..4u32)
            .map(|i| {
                let d = format!("small file {i}, ").repeat(30 + i as usize).into_bytes();
                (keys.blob_id(&d), d)
            })
            .collect();
        let mut pb = PackBuilder::default();
        pb.add(blob::seal_bundle(&keys, chunks.clone(), Compression::Zstd(3)));
        let big = b"a blob of its own ".repeat(100);
        pb.add(blob::seal(&keys, ObjectType::Data, keys.blob_id(&big), &big, Compression::Zstd(3)));
        let (parts, entries) = pb.finish(&keys);
        let bytes = parts.concat();
        let parsed = parse_pack(&keys, &bytes, "test").unwrap();
        assert_eq!(parsed, entries);
        assert_eq!(parsed.len(), 5);
        let members: Vec<&PackEntry> = parsed.iter().filter(|e| e.within.is_some()).collect();
        assert_eq!(members.len(), 4);
        assert!(members.iter().all(|e| e.span() == members[0].span() && e.kind == 1));
        let shares = stored_shares(&parsed);
        let bundle_len = members[0].length;
        let member_total: u32 = parsed.iter().zip(&shares).filter(|(e, _)| e.within.is_some()).map(|(_, s)| s).sum();
        assert_eq!(member_total, bundle_len);
        let plain = parsed.iter().position(|e| e.within.is_none()).unwrap();
        assert_eq!(shares[plain], parsed[plain].length);
        // Each member comes out of the bundle's content whole.
        let env = &bytes[members[0].offset as usize..][..bundle_len as usize];
        let content = blob::open_bundle(&keys, env.to_vec()).unwrap();
        for (id, d) in &chunks {
            let e = parsed.iter().find(|e| e.id == *id).unwrap();
            assert_eq!(blob::member(&keys, &content, id, e.within.unwrap(), e.raw_length).unwrap(), &d[..]);
        }
    }

    #[test]
    fn a_header_with_an_impossible_member_is_refused() {
        let keys = Keys::derive(&MasterKey::generate(), Id([1; 32]), 2);
        let member = |kind: u8, within: u32, raw_length: u32| PackEntry {
            kind,
            id: Id([7; 32]),
            offset: 0,
            length: 100,
            raw_length,
            within: Some(within),
        };
        for (entry, ok) in [
            (member(1, 0, 50), true),
            (member(1, (16 << 20) - 50, 50), true),
            (member(2, 0, 50), false),              // a tree chunk in a bundle
            (member(3, 0, 50), false),              // an archive in a bundle
            (member(1, 16 << 20, 1), false),        // past the 16 MiB a bundle may hold
            (member(1, u32::MAX, u32::MAX), false), // no overflow either
        ] {
            let [sealed, _] = seal_header(&keys, std::slice::from_ref(&entry));
            assert_eq!(decode_header(&keys, &sealed, 100, "test").is_ok(), ok, "{entry:?}");
        }
    }
}
