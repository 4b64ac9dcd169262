//! Condemned packs (repo-format.md section 13.1): packs whose live blobs `compact` has copied
//! into new packs, left in `data/` for a grace period so that an rsync copy or a mount running
//! meanwhile still finds every blob. Owns the records under `condemned/`: their encoding, and
//! reading, writing and removing them. Which packs to condemn, and when to delete them, is
//! [`compact`](crate::compact)'s business.
//!
//! A record is an immutable CBOR file listing pack names with the time each was condemned. It is
//! not encrypted (pack names are file names) and not authenticated: nothing is deleted on a
//! record's word alone, `compact` first checks that every live blob of the pack is stored elsewhere.

use crate::backend::LocalBackend;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const CONDEMNED_DIR: &str = "condemned";
/// The largest record read (about 150,000 packs, over a TiB of rewritten packs).
const MAX_RECORD_LEN: u64 = 16 << 20;

/// One condemned pack in a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    name: String,
    /// Unix seconds when the pack was condemned (its live blobs were durable elsewhere).
    since: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    packs: Vec<Entry>,
}

/// Every condemned pack (name -> time condemned) and the records that say so.
#[derive(Clone, Debug, Default)]
pub struct Condemned {
    pub packs: BTreeMap<String, u64>,
    /// Keys of the record files read.
    pub records: Vec<String>,
}

fn valid_pack_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Read every record. A malformed record is skipped with a warning (its packs then count as
/// ordinary packs, which is always safe); a pack named twice keeps its latest time.
pub fn load(backend: &LocalBackend, warnings: &mut Vec<String>) -> Result<Condemned> {
    let mut out = Condemned::default();
    for key in backend.list(CONDEMNED_DIR, false)? {
        match read(backend, &key) {
            Ok(rec) => {
                for e in rec.packs {
                    let t = out.packs.entry(e.name).or_insert(e.since);
                    *t = (*t).max(e.since);
                }
                out.records.push(key);
            }
            Err(e) => warnings.push(format!("{key} is not a valid record of condemned packs and was ignored: {e}")),
        }
    }
    Ok(out)
}

fn read(backend: &LocalBackend, key: &str) -> Result<Record> {
    let size = backend.size(key)?;
    if size > MAX_RECORD_LEN {
        return Err(Error::malformed(key, format!("{size} bytes, more than {MAX_RECORD_LEN}")));
    }
    decode(key, &backend.get(key)?)
}

/// Decode the record stored as `key`: its (pack name, time condemned) pairs. Fails on anything
/// but a CBOR record whose names are all pack names.
pub fn decode_entries(key: &str, bytes: &[u8]) -> Result<Vec<(String, u64)>> {
    Ok(decode(key, bytes)?.packs.into_iter().map(|e| (e.name, e.since)).collect())
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
    if bytes.len() as u64 > MAX_RECORD_LEN {
        return Err(Error::malformed(key, format!("{} bytes, more than {MAX_RECORD_LEN}", bytes.len())));
    }
    let rec: Record = ciborium::from_reader(bytes).map_err(|e| Error::malformed(key, e.to_string()))?;
    if let Some(e) = rec.packs.iter().find(|e| !valid_pack_name(&e.name)) {
        return Err(Error::malformed(key, format!("{:?} is not a pack name", e.name)));
    }
    Ok(rec)
}

/// Make `packs` the condemned set: write one new record holding all of them (if any), then
/// remove the records of `old`. A crash in between leaves both, whose union is the same set
/// or a superset with the same times. Returns the new record's key.
pub fn replace(backend: &LocalBackend, packs: &BTreeMap<String, u64>, old: &[String]) -> Result<Option<String>> {
    let mut key = None;
    if !packs.is_empty() {
        let rec = Record { packs: packs.iter().map(|(n, &s)| Entry { name: n.clone(), since: s }).collect() };
        let mut bytes = Vec::new();
        ciborium::into_writer(&rec, &mut bytes).expect("serializing to memory");
        let mut rnd = [0u8; 8];
        crate::crypto::random_bytes(&mut rnd);
        let newest = packs.values().max().copied().unwrap_or(0);
        let k = format!("{CONDEMNED_DIR}/{newest:016x}-{}", hex::encode(rnd));
        backend.put(&k, &bytes)?;
        key = Some(k);
    }
    for k in old {
        backend.delete(k)?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    #[test]
    fn records_round_trip_merge_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        let mut w = vec![];
        assert!(load(&b, &mut w).unwrap().packs.is_empty());
        let first: BTreeMap<_, _> = [(name('a'), 100), (name('b'), 100)].into();
        replace(&b, &first, &[]).unwrap();
        let second: BTreeMap<_, _> = [(name('b'), 200), (name('c'), 200)].into();
        replace(&b, &second, &[]).unwrap();
        let both = load(&b, &mut w).unwrap();
        assert_eq!(both.records.len(), 2);
        let want: BTreeMap<_, _> = [(name('a'), 100), (name('b'), 200), (name('c'), 200)].into();
        assert_eq!(both.packs, want);
        // Replacing with the empty set removes every record.
        replace(&b, &BTreeMap::new(), &both.records).unwrap();
        let none = load(&b, &mut w).unwrap();
        assert!(none.packs.is_empty() && none.records.is_empty() && w.is_empty(), "{w:?}");
    }

    /// The bytes of repo-format.md 13.1's record, written by hand (also the fuzz seed).
    #[test]
    fn a_record_as_the_spec_writes_it_decodes() {
        let bytes = include_bytes!("../../fuzz/corpus/condemned_record/seed1");
        assert_eq!(decode_entries("seed", bytes).unwrap(), vec![(name('a'), 1)]);
        let rec = Record { packs: vec![Entry { name: name('a'), since: 1 }] };
        let mut ours = Vec::new();
        ciborium::into_writer(&rec, &mut ours).unwrap();
        assert_eq!(&ours[..], &bytes[..]);
    }

    #[test]
    fn a_record_naming_a_path_is_ignored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        let rec = Record { packs: vec![Entry { name: "../../config".into(), since: 1 }] };
        let mut bytes = Vec::new();
        ciborium::into_writer(&rec, &mut bytes).unwrap();
        b.put("condemned/0000000000000001-00", &bytes).unwrap();
        b.put("condemned/0000000000000002-00", b"\xff\xff not cbor").unwrap();
        let mut w = vec![];
        let c = load(&b, &mut w).unwrap();
        assert!(c.packs.is_empty() && c.records.is_empty());
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("not a pack name"), "{w:?}");
    }
}
