//! Compression settings, the compression marker and size padding (repo-format.md, "Blob
//! plaintext"). Pure functions, no I/O.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Marker byte: payload stored as is.
pub const MARKER_NONE: u8 = 0;
/// Marker byte: payload is one zstd frame.
pub const MARKER_ZSTD: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd(i32),
    /// Trial-compress a sample at zstd level 1 first; store data raw when it barely compresses.
    Auto(i32),
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd(3)
    }
}

impl FromStr for Compression {
    type Err = String;
    /// garret's own specs (`none`, `zstd[,N]`, `auto,zstd[,N]`) and, so that borg command lines
    /// keep working, borg's other algorithms mapped to the zstd level closest in intent: `lz4`
    /// (fast) to zstd,1, `zlib[,N]` to zstd,3 (`zlib,0` to none), `lzma[,N]` to zstd,19.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "invalid compression {s:?}: use none, zstd, zstd,N or auto,zstd,N with N in 1..22 \
                 (borg's lz4, zlib[,N] and lzma[,N] are accepted too)"
            )
        };
        if s.starts_with("obfuscate,") {
            return Err(format!(
                "invalid compression {s:?}: garret pads every blob already (Padmé); drop the obfuscate,SPEC, part"
            ));
        }
        if let Some(rest) = s.strip_prefix("auto,") {
            return match rest.parse::<Compression>() {
                Ok(Compression::Zstd(l)) => Ok(Compression::Auto(l)),
                _ => Err(bad()),
            };
        }
        let level = |n: Option<&str>, range: std::ops::RangeInclusive<i32>| -> Option<i32> {
            match n {
                None => Some(-1),
                Some(n) => n.parse::<i32>().ok().filter(|l| range.contains(l)),
            }
        };
        let mut parts = s.split(',');
        let (algo, n) = (parts.next().unwrap_or(""), parts.next());
        if parts.next().is_some() {
            return Err(bad());
        }
        match (algo, n) {
            ("none", None) => Ok(Compression::None),
            ("zstd", n) => match level(n, 1..=22) {
                Some(-1) => Ok(Compression::Zstd(3)),
                Some(l) => Ok(Compression::Zstd(l)),
                None => Err(bad()),
            },
            ("lz4", None) => Ok(Compression::Zstd(1)),
            ("zlib", n) => match level(n, 0..=9) {
                Some(0) => Ok(Compression::None),
                Some(_) => Ok(Compression::Zstd(3)),
                None => Err(bad()),
            },
            ("lzma", n) => match level(n, 0..=9) {
                Some(_) => Ok(Compression::Zstd(19)),
                None => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Zstd(l) => write!(f, "zstd,{l}"),
            Compression::Auto(l) => write!(f, "auto,zstd,{l}"),
        }
    }
}

thread_local! {
    /// One zstd compression context per thread, reused: creating a context costs more than
    /// compressing a small chunk.
    static CCTX: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// Inputs above this size get zstd's large-input parameter set, which [`LEVEL3_LARGE`] retunes.
const LARGE_INPUT: usize = 256 * 1024;

/// Level 3's match tables for inputs over [`LARGE_INPUT`]: (hash log, chain log). zstd's own are
/// (17, 16). In level 3's double-fast strategy the hash table holds the long (8-byte) matches and
/// the chain table the short ones; a larger long table and a smaller short one compress SQL dumps
/// about 2 to 3 % smaller and every kind of data measured 3 to 8 % faster, for 0.5 to 1.6 % more
/// on binaries (tools/README.md, eleventh session). Smaller inputs keep zstd's small-input
/// presets, which these values would not improve. Any zstd decoder reads the frames.
const LEVEL3_LARGE: (u32, u32) = (18, 13);

/// Level 3's match tables for bundles (many small files, up to 512 KiB; repo-format.md section
/// 8.1): (hash log, chain log). On the bench's source files sealed in 512 KiB bundles,
/// alternating runs of `benches/stages.rs` gave 229.8 MB/s with [`LEVEL3_LARGE`], 232.5 with
/// zstd's preset and 247.3 with these, each storing them no larger (tools/README.md,
/// twenty-second session). Smaller tables were faster still but stored up to 1.3 % more.
const LEVEL3_BUNDLE: (u32, u32) = (17, 14);

/// Match-table sizes to set for `len` bytes at `level`, for a bundle's content when `bundle`;
/// (0, 0) means zstd's preset.
fn table_logs(level: i32, len: usize, bundle: bool) -> (u32, u32) {
    match (level, len > LARGE_INPUT, bundle) {
        (3, true, true) => LEVEL3_BUNDLE,
        (3, true, false) => LEVEL3_LARGE,
        _ => (0, 0),
    }
}

/// Append one zstd frame of `data` (a bundle's content when `bundle`) to `out`; false (and `out`
/// as it was) if zstd fails.
fn zstd_append(data: &[u8], level: i32, bundle: bool, out: &mut Vec<u8>) -> bool {
    CCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            match zstd::bulk::Compressor::new(level) {
                Ok(c) => *slot = Some((level, c)),
                Err(_) => return false,
            }
        }
        let (_, c) = slot.as_mut().expect("just set");
        // Set on every call: the context is reused and keeps what the last call set.
        let (hash_log, chain_log) = table_logs(level, data.len(), bundle);
        if c.set_parameter(zstd::stream::raw::CParameter::HashLog(hash_log)).is_err()
            || c.set_parameter(zstd::stream::raw::CParameter::ChainLog(chain_log)).is_err()
        {
            return false;
        }
        let start = out.len();
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        let mut at = std::io::Cursor::new(&mut *out);
        at.set_position(start as u64);
        if c.compress_to_buffer(data, &mut at).is_err() {
            out.truncate(start);
            return false;
        }
        true
    })
}

/// Compress `data`; returns the marker and payload. Data that does not shrink is stored raw.
pub fn compress(c: Compression, data: &[u8]) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    let marker = compress_append(c, data, &mut out);
    if marker == MARKER_NONE {
        out.extend_from_slice(data);
    }
    (marker, out)
}

/// Append the zstd payload for `data` to `out` if compression is on and makes it smaller, and
/// return [`MARKER_ZSTD`]; otherwise leave `out` as it was and return [`MARKER_NONE`] (the caller
/// stores `data` raw). Appending lets the sealer compress straight into the envelope.
pub fn compress_append(c: Compression, data: &[u8], out: &mut Vec<u8>) -> u8 {
    compress_append_as(c, data, false, out)
}

/// [`compress_append`] for a bundle's content when `bundle` (its own match tables).
pub fn compress_append_as(c: Compression, data: &[u8], bundle: bool, out: &mut Vec<u8>) -> u8 {
    let level = match c {
        Compression::None => return MARKER_NONE,
        Compression::Zstd(l) => l,
        Compression::Auto(l) => {
            const SAMPLE: usize = 64 * 1024;
            let sample = &data[..data.len().min(SAMPLE)];
            let mut trial = Vec::new();
            if !zstd_append(sample, 1, false, &mut trial) || trial.len() as f64 >= sample.len() as f64 * 0.97 {
                return MARKER_NONE;
            }
            l
        }
    };
    let start = out.len();
    if !zstd_append(data, level, bundle, out) {
        return MARKER_NONE;
    }
    if out.len() - start >= data.len() {
        out.truncate(start);
        return MARKER_NONE;
    }
    MARKER_ZSTD
}

/// Decompress a payload, refusing output larger than `limit` (a zstd bomb stays bounded).
pub fn decompress(marker: u8, payload: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    decompress_into(marker, payload, limit, &mut out)?;
    Ok(out)
}

/// [`decompress`] into `out` (cleared first; its capacity is reused).
pub fn decompress_into(marker: u8, payload: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    match marker {
        MARKER_NONE => {
            out.extend_from_slice(payload);
            Ok(())
        }
        MARKER_ZSTD => {
            let size = zstd::zstd_safe::get_frame_content_size(payload)
                .map_err(|_| Error::malformed("blob", "zstd frame header unreadable"))?;
            let n = match size {
                Some(n) if n as usize <= limit => n as usize,
                Some(n) => return Err(Error::malformed("blob", format!("zstd frame claims {n} bytes, limit {limit}"))),
                None => return Err(Error::malformed("blob", "zstd frame without content size")),
            };
            DCTX.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(
                        zstd::bulk::Decompressor::new().map_err(|e| Error::malformed("blob", format!("zstd: {e}")))?,
                    );
                }
                let d = slot.as_mut().expect("just set");
                out.reserve(n);
                d.decompress_to_buffer(payload, out).map_err(|e| Error::malformed("blob", format!("zstd: {e}")))?;
                if out.len() != n {
                    return Err(Error::malformed("blob", "zstd frame shorter than its declared size"));
                }
                Ok(())
            })
        }
        m => Err(Error::malformed("blob", format!("unknown compression marker {m}"))),
    }
}

/// Padmé padding: the padded length for a plaintext of `len` bytes. Leaks only O(log log len)
/// bits of the length; overhead at most about 12% (Nikitin et al., PETS 2019).
pub fn padme(len: usize) -> usize {
    if len < 2 {
        return len;
    }
    let l = len as u64;
    let e = 63 - l.leading_zeros() as u64; // floor(log2(len))
    let s = 64 - e.leading_zeros() as u64; // floor(log2(e)) + 1
    let z = e - s;
    let mask = (1u64 << z) - 1;
    ((l + mask) & !mask) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQL-dump-like text: rows that repeat with small changes, as pg_dump writes them.
    fn dump_like(rows: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..rows {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(format!("{i}\t{}\t{}\t{:<40}\n", x % 100_000, x % 97, "").as_bytes());
        }
        out
    }

    #[test]
    fn level3_retunes_large_inputs_only_and_round_trips() {
        let big = dump_like(40_000);
        assert!(big.len() > LARGE_INPUT);
        let stock = zstd::bulk::compress(&big, 3).unwrap();
        let (marker, tuned) = compress(Compression::Zstd(3), &big);
        assert_eq!(marker, MARKER_ZSTD);
        assert_ne!(tuned, stock, "large level-3 input compressed with zstd's preset tables");
        assert_eq!(decompress(marker, &tuned, big.len()).unwrap(), big);
        assert_eq!(zstd::bulk::decompress(&tuned, big.len()).unwrap(), big, "a stock decoder reads it");
        // A small input after a large one on the same thread: the context's tables are reset to
        // zstd's presets, and other levels are never retuned.
        let small = &big[..64 * 1024];
        assert_eq!(compress(Compression::Zstd(3), small).1, zstd::bulk::compress(small, 3).unwrap());
        assert_eq!(compress(Compression::Zstd(5), &big).1, zstd::bulk::compress(&big, 5).unwrap());
    }

    #[test]
    fn parse_compression() {
        assert_eq!("zstd,3".parse::<Compression>().unwrap(), Compression::Zstd(3));
        assert_eq!("none".parse::<Compression>().unwrap(), Compression::None);
        assert!("zstd,0".parse::<Compression>().is_err());
        assert!("zstd,23".parse::<Compression>().is_err());
        assert!("zstd,3,1".parse::<Compression>().is_err());
        assert_eq!("zstd".parse::<Compression>().unwrap(), Compression::Zstd(3));
        assert_eq!("auto,zstd,9".parse::<Compression>().unwrap(), Compression::Auto(9));
        assert!("auto,none".parse::<Compression>().is_err());
        // borg's other algorithms, so that borg command lines keep working
        assert_eq!("lz4".parse::<Compression>().unwrap(), Compression::Zstd(1));
        assert_eq!("auto,lz4".parse::<Compression>().unwrap(), Compression::Auto(1));
        assert_eq!("zlib".parse::<Compression>().unwrap(), Compression::Zstd(3));
        assert_eq!("zlib,6".parse::<Compression>().unwrap(), Compression::Zstd(3));
        assert_eq!("zlib,0".parse::<Compression>().unwrap(), Compression::None);
        assert_eq!("lzma,9".parse::<Compression>().unwrap(), Compression::Zstd(19));
        assert_eq!("auto,lzma".parse::<Compression>().unwrap(), Compression::Auto(19));
        assert!("lz4,1".parse::<Compression>().is_err());
        assert!("zlib,10".parse::<Compression>().is_err());
        assert!("lzma,x".parse::<Compression>().is_err());
        assert!("obfuscate,110,zstd".parse::<Compression>().unwrap_err().contains("pads every blob"));
        assert!("brotli".parse::<Compression>().is_err());
        assert!("".parse::<Compression>().is_err());
    }

    #[test]
    fn padme_properties() {
        for len in [0usize, 1, 2, 5, 100, 1000, 65_537, 1 << 20, (1 << 20) + 1, 4_000_000] {
            let p = padme(len);
            assert!(p >= len);
            assert!(p as f64 <= len as f64 * 1.125 + 1.0, "{len} -> {p}");
        }
        assert_eq!(padme(1 << 20), 1 << 20);
    }

    #[test]
    fn zstd_round_trip_and_bomb_limit() {
        let data = vec![b'a'; 100_000];
        let (m, z) = compress(Compression::Zstd(3), &data);
        assert_eq!(m, MARKER_ZSTD);
        assert_eq!(decompress(m, &z, 100_000).unwrap(), data);
        assert!(decompress(m, &z, 99_999).is_err());
        let (m, _) = compress(Compression::Zstd(3), &[1, 2, 3]);
        assert_eq!(m, MARKER_NONE);
        assert_eq!(compress(Compression::Auto(3), &data).0, MARKER_ZSTD);
        let mut x = 1u64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 33) as u8
            })
            .collect();
        assert_eq!(compress(Compression::Auto(3), &noise).0, MARKER_NONE);
        assert_eq!(compress(Compression::Zstd(3), &noise), (MARKER_NONE, noise.clone()));
        // appending leaves what the buffer held, whether the data compresses or not
        for input in [&data[..], &noise[..]] {
            let mut out = b"head".to_vec();
            let m = compress_append(Compression::Zstd(3), input, &mut out);
            assert_eq!(&out[..4], b"head");
            if m == MARKER_ZSTD {
                assert_eq!(decompress(m, &out[4..], input.len()).unwrap(), input);
            } else {
                assert_eq!(out, b"head");
            }
        }
    }
}
