//! One entry of an archive: a file, directory, link or special file with its metadata
//! (repo-format.md, "Items").

use crate::id::Id;
use serde::{Deserialize, Serialize};

/// Item kinds as stored (a one-letter string; unknown letters are skipped by old readers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "f")]
    File,
    #[serde(rename = "d")]
    Dir,
    #[serde(rename = "l")]
    Symlink,
    /// A further name of a file stored earlier in the archive (`source`).
    #[serde(rename = "h")]
    Hardlink,
    #[serde(rename = "p")]
    Fifo,
    #[serde(rename = "c")]
    CharDev,
    #[serde(rename = "b")]
    BlockDev,
    #[serde(rename = "s")]
    Socket,
    #[serde(other)]
    Unknown,
}

/// A reference to one chunk of file content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef(pub Id, pub u32);

/// Chunks in one window at most, however small (bounds the bookkeeping per window).
pub const WINDOW_CHUNKS: usize = 4096;

/// `chunks` cut into runs of about `bytes` plaintext bytes each (at least one chunk, at most
/// [`WINDOW_CHUNKS`] per run): eight 1 MiB chunks at the default sizes, thousands of tiny
/// fixed-size ones, so that the per-run cost (a thread, an index query) stays small against the
/// data it brings.
pub fn windows(chunks: &[ChunkRef], bytes: u64) -> Vec<&[ChunkRef]> {
    let mut out = vec![];
    let (mut start, mut sum) = (0, 0u64);
    for (i, c) in chunks.iter().enumerate() {
        sum += u64::from(c.1);
        if sum >= bytes || i + 1 - start == WINDOW_CHUNKS {
            out.push(&chunks[start..=i]);
            (start, sum) = (i + 1, 0);
        }
    }
    if start < chunks.len() {
        out.push(&chunks[start..]);
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Relative path, '/'-separated, raw bytes (not necessarily UTF-8), no leading '/'.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (no file-type bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime: i64,
    /// Access time, nanoseconds since the Unix epoch: only stored with `create --atime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atime: Option<i64>,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkRef>,
    /// Symlink target.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub target: Option<Vec<u8>>,
    /// Hardlink: the path of the first name of this file in the archive.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub source: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    /// Set on the first name of a file with further hardlinks in the archive; extract keeps
    /// its content reference so a later name can be extracted without this one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hardlink_master: bool,
    /// Set by `check --repair` on a file whose data was damaged: the original chunk list, while
    /// `chunks` has zero-filled replacements for the missing ones. A later repair restores it
    /// once every original chunk is back in the repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks_healthy: Vec<ChunkRef>,
    /// Set when the file changed while it was read (the content is what was read).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr(#[serde(with = "serde_bytes")] pub Vec<u8>, #[serde(with = "serde_bytes")] pub Vec<u8>);

fn is_zero(v: &u64) -> bool {
    *v == 0
}

mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_bytes(b),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<serde_bytes::ByteBuf>::deserialize(d)?.map(|b| b.into_vec()))
    }
}

impl Item {
    pub fn new(path: Vec<u8>, kind: Kind) -> Item {
        Item {
            path,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: 0,
            atime: None,
            size: 0,
            chunks: vec![],
            target: None,
            source: None,
            rdev: 0,
            xattrs: vec![],
            hardlink_master: false,
            chunks_healthy: vec![],
            changed: false,
        }
    }

    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    /// `ls -l` style type letter and permission string.
    pub fn mode_string(&self) -> String {
        let t = match self.kind {
            Kind::File | Kind::Hardlink => '-',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Fifo => 'p',
            Kind::CharDev => 'c',
            Kind::BlockDev => 'b',
            Kind::Socket => 's',
            Kind::Unknown => '?',
        };
        let m = self.mode;
        let mut s = String::with_capacity(10);
        s.push(t);
        let bit = |b: u32, c: char| if m & b != 0 { c } else { '-' };
        s.push(bit(0o400, 'r'));
        s.push(bit(0o200, 'w'));
        s.push(match (m & 0o100 != 0, m & 0o4000 != 0) {
            (true, true) => 's',
            (false, true) => 'S',
            (true, false) => 'x',
            _ => '-',
        });
        s.push(bit(0o040, 'r'));
        s.push(bit(0o020, 'w'));
        s.push(match (m & 0o010 != 0, m & 0o2000 != 0) {
            (true, true) => 's',
            (false, true) => 'S',
            (true, false) => 'x',
            _ => '-',
        });
        s.push(bit(0o004, 'r'));
        s.push(bit(0o002, 'w'));
        s.push(match (m & 0o001 != 0, m & 0o1000 != 0) {
            (true, true) => 't',
            (false, true) => 'T',
            (true, false) => 'x',
            _ => '-',
        });
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_hold_about_the_bytes_asked_for() {
        let refs = |lens: &[u32]| -> Vec<ChunkRef> { lens.iter().map(|&l| ChunkRef(Id([0; 32]), l)).collect() };
        let lens =
            |w: Vec<&[ChunkRef]>| -> Vec<Vec<u32>> { w.iter().map(|w| w.iter().map(|c| c.1).collect()).collect() };
        assert_eq!(lens(windows(&refs(&[3, 3, 3, 3, 1]), 6)), vec![vec![3, 3], vec![3, 3], vec![1]]);
        assert_eq!(lens(windows(&refs(&[10, 1, 2]), 6)), vec![vec![10], vec![1, 2]]);
        assert!(windows(&[], 6).is_empty());
        assert_eq!(windows(&refs(&[64; 1_000_000]), 8 << 20).len(), 245);
        assert!(windows(&refs(&[64; 1_000_000]), 8 << 20).iter().all(|w| w.len() <= WINDOW_CHUNKS));
    }

    #[test]
    fn unknown_fields_and_kinds_are_tolerated() {
        // A newer writer's item: an extra field and an unknown kind.
        use ciborium::Value;
        let v = Value::Map(vec![
            (Value::Text("path".into()), Value::Bytes(b"a/b".to_vec())),
            (Value::Text("kind".into()), Value::Text("z".into())),
            (Value::Text("mode".into()), Value::Integer(0o644.into())),
            (Value::Text("uid".into()), Value::Integer(0.into())),
            (Value::Text("gid".into()), Value::Integer(0.into())),
            (Value::Text("mtime".into()), Value::Integer(5.into())),
            (Value::Text("future_field".into()), Value::Array(vec![Value::Integer(1.into())])),
        ]);
        let mut buf = vec![];
        ciborium::into_writer(&v, &mut buf).unwrap();
        let it: Item = ciborium::from_reader(&buf[..]).unwrap();
        assert_eq!(it.kind, Kind::Unknown);
        assert_eq!(it.path, b"a/b");
    }

    #[test]
    fn mode_string() {
        let mut it = Item::new(b"x".to_vec(), Kind::File);
        it.mode = 0o4755;
        assert_eq!(it.mode_string(), "-rwsr-xr-x");
    }
}
