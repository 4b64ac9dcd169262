//! Typed 32-byte identifiers and object types (repo-format.md, "Identifiers").

use serde::{Deserialize, Serialize};
use std::fmt;

/// A 32-byte identifier: a keyed BLAKE3 blob id, a pack name (plain BLAKE3 of the file) or a
/// repository id. Serialized as a CBOR byte string.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

/// Ids are uniformly distributed hash outputs that an attacker cannot steer (blob ids are keyed),
/// so their first 8 bytes are as good a hash as any; equality still compares all 32.
impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes")));
    }
}

/// A hasher that passes an [`Id`]'s 8 hash bytes through instead of hashing them again.
#[derive(Default, Clone, Copy)]
pub struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    /// Not reached for `Id` keys; mixes bytes so that other keys still hash reasonably.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
}

/// A map keyed by ids (the dedup set holds one entry per blob of the repository).
pub type IdMap<V> = std::collections::HashMap<Id, V, std::hash::BuildHasherDefault<PassThrough>>;

impl Id {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
    pub fn from_hex(s: &str) -> Option<Id> {
        let v = hex::decode(s).ok()?;
        Some(Id(v.try_into().ok()?))
    }
    pub fn from_slice(s: &[u8]) -> Option<Id> {
        Some(Id(s.try_into().ok()?))
    }
    pub fn random() -> Id {
        let mut b = [0u8; 32];
        crate::crypto::random_bytes(&mut b);
        Id(b)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b: serde_bytes::ByteBuf = serde_bytes::ByteBuf::deserialize(d)?;
        Id::from_slice(&b).ok_or_else(|| serde::de::Error::custom("id must be 32 bytes"))
    }
}

/// The type of an encrypted object; bound into the AEAD associated data so that an object of
/// one type is never accepted as another (repo-format.md, "Object types").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ObjectType {
    /// File content chunk.
    Data = 1,
    /// A chunk of an archive's item metadata stream.
    Tree = 2,
    /// An archive object.
    Archive = 3,
    /// A bundle: several small data chunks compressed and sealed together (format version 2).
    /// Only envelopes have this type; pack entries name the chunks inside it as data blobs.
    Bundle = 4,
    /// A pack header.
    PackHeader = 16,
    /// The manifest.
    Manifest = 32,
}

impl ObjectType {
    pub fn from_u8(v: u8) -> Option<ObjectType> {
        Some(match v {
            1 => ObjectType::Data,
            2 => ObjectType::Tree,
            3 => ObjectType::Archive,
            4 => ObjectType::Bundle,
            16 => ObjectType::PackHeader,
            32 => ObjectType::Manifest,
            _ => return None,
        })
    }
    /// Types that may be stored as blobs inside packs.
    pub fn is_blob(self) -> bool {
        matches!(self, ObjectType::Data | ObjectType::Tree | ObjectType::Archive)
    }
}
