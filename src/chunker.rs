//! Content-defined chunking (FastCDC 2020, secret-seeded) over any reader, with bounded memory
//! (repo-format.md, "Chunking").
//!
//! The cut points depend only on the bytes and the seed, never on how the reader delivers them,
//! so a file and a stream of the same bytes dedup against each other.

use fastcdc::v2020::Normalization;
use std::io::{self, Read};

/// Chunk size bounds for file content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

/// The most chunks one file may have (repo-format.md, "Items"): 16 TiB at the default sizes. A
/// file's chunk list is one item, which readers hold in memory whole.
pub const MAX_FILE_CHUNKS: u64 = 1 << 24;

/// File content: 256 KiB .. 1 MiB average .. 4 MiB.
pub const DATA_PARAMS: ChunkerParams = ChunkerParams { min: 256 * 1024, avg: 1024 * 1024, max: 4 * 1024 * 1024 };
/// The item metadata stream: smaller chunks, so one changed file rewrites little metadata.
pub const TREE_PARAMS: ChunkerParams = ChunkerParams { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };

impl ChunkerParams {
    /// Bounds garret accepts from a repository config (the fastcdc crate's own limits).
    pub fn is_valid(&self) -> bool {
        (fastcdc::v2020::MINIMUM_MIN..=fastcdc::v2020::MINIMUM_MAX).contains(&self.min)
            && (fastcdc::v2020::AVERAGE_MIN..=fastcdc::v2020::AVERAGE_MAX).contains(&self.avg)
            && (fastcdc::v2020::MAXIMUM_MIN..=fastcdc::v2020::MAXIMUM_MAX).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max
    }

    /// Fixed-size chunks of `block` bytes (borg's `--chunker-params fixed,BLOCK`: disk images,
    /// whose file systems change whole blocks in place), if garret can store such chunks.
    pub fn fixed(block: u32) -> Option<ChunkerParams> {
        (64..=crate::blob::MAX_BLOB_SIZE as u32).contains(&block).then_some(ChunkerParams {
            min: block,
            avg: block,
            max: block,
        })
    }

    /// Whether these are [`ChunkerParams::fixed`] sizes.
    pub fn is_fixed(&self) -> bool {
        self.min == self.max
    }

    /// Length of the first chunk of `data`; `data` must hold at least `max` bytes unless it is
    /// the end of the stream.
    pub fn first_cut(&self, data: &[u8], seed: u64) -> usize {
        if data.len() <= self.min as usize || self.is_fixed() {
            return data.len().min(self.max as usize);
        }
        gear_cut(data, self, seed)
    }
}

/// The first cut point of `data` by FastCDC 2020 with normalization level 1 and the seeded gear
/// tables: exactly what `fastcdc::v2020::FastCDC::with_level_and_seed(..).next()` gives (a test
/// compares the two), from the crate's tables and masks, but four bytes a step.
///
/// The crate's loop adds one table value to the rolling hash per byte, so each step waits for
/// the last (a shift and an add per byte). The hash after four bytes is the hash before them
/// shifted by four plus a sum of the four table values, which does not depend on it; so do the
/// three hashes in between, which are checked as the crate checks them, in order. The wait is
/// then a shift and an add per four bytes.
fn gear_cut(data: &[u8], p: &ChunkerParams, seed: u64) -> usize {
    let (min, avg, max) = (p.min as usize, p.avg as usize, p.max as usize);
    let mut remaining = data.len();
    if remaining <= min {
        return remaining;
    }
    let mut center = avg;
    if remaining > max {
        remaining = max;
    } else if remaining < center {
        center = remaining;
    }
    let bits = fastcdc::v2020::logarithm2(p.avg);
    let level = Normalization::Level1.bits();
    let mask_s = fastcdc::v2020::MASKS[(bits + level) as usize];
    let mask_l = fastcdc::v2020::MASKS[(bits - level) as usize];
    let (gear, gear_ls) = fastcdc::v2020::get_gear_with_seed(seed);
    let mut scan = GearScan { data, gear: &gear, gear_ls: &gear_ls, pair: min / 2, hash: 0 };
    if let Some(cut) = scan.until(center / 2, mask_s) {
        return cut;
    }
    scan.until(remaining / 2, mask_l).unwrap_or(remaining)
}

/// The rolling gear hash over `data`, two bytes (a "pair") per step of the crate's loop.
struct GearScan<'a> {
    data: &'a [u8],
    gear: &'a [u64; 256],
    gear_ls: &'a [u64; 256],
    /// The next pair: bytes `2 * pair` and `2 * pair + 1`.
    pair: usize,
    hash: u64,
}

impl GearScan<'_> {
    /// Roll on to pair `end` (exclusive); the first cut point where the hash has none of the
    /// bits of `mask` set (of `mask << 1` at a pair's first byte, as the crate checks it).
    #[inline(always)]
    fn until(&mut self, end: usize, mask: u64) -> Option<usize> {
        let mask_ls = mask << 1;
        let (g, gl) = (self.gear, self.gear_ls);
        let (mut i, mut h) = (self.pair, self.hash);
        while i + 2 <= end {
            let a = 2 * i;
            let Some(&[b0, b1, b2, b3]) = self.data.get(a..a + 4) else { break };
            let (x0, x1, x2, x3) = (gl[b0 as usize], g[b1 as usize], gl[b2 as usize], g[b3 as usize]);
            let t01 = x0.wrapping_add(x1);
            let t012 = (t01 << 2).wrapping_add(x2);
            let (h2, h4) = (h << 2, h << 4);
            let h_1 = h2.wrapping_add(x0);
            let h_2 = h2.wrapping_add(t01);
            let h_3 = h4.wrapping_add(t012);
            let h_4 = h4.wrapping_add(t012.wrapping_add(x3));
            if (h_1 & mask_ls == 0) | (h_2 & mask == 0) | (h_3 & mask_ls == 0) | (h_4 & mask == 0) {
                return Some(if h_1 & mask_ls == 0 {
                    a
                } else if h_2 & mask == 0 {
                    a + 1
                } else if h_3 & mask_ls == 0 {
                    a + 2
                } else {
                    a + 3
                });
            }
            h = h_4;
            i += 2;
        }
        while i < end {
            let a = 2 * i;
            let (Some(&b0), Some(&b1)) = (self.data.get(a), self.data.get(a + 1)) else { break };
            h = (h << 2).wrapping_add(gl[b0 as usize]);
            if h & mask_ls == 0 {
                return Some(a);
            }
            h = h.wrapping_add(g[b1 as usize]);
            if h & mask == 0 {
                return Some(a + 1);
            }
            i += 1;
        }
        self.pair = i;
        self.hash = h;
        None
    }
}

/// Whether `data` is all zero bytes (checked a 4 KiB block at a time, so it vectorizes and still
/// stops early on ordinary data).
pub fn is_zero(data: &[u8]) -> bool {
    data.chunks(4096).all(|b| b.iter().fold(0u8, |a, &x| a | x) == 0)
}

/// Splits a reader into chunks.
pub struct Chunker<R> {
    reader: R,
    params: ChunkerParams,
    seed: u64,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// The cut of a window of `max` zero bytes, computed once.
    zero_cut: Option<usize>,
}

impl<R: Read> Chunker<R> {
    /// `size_hint` (e.g. the file size) keeps the buffer small for small inputs.
    pub fn new(reader: R, params: ChunkerParams, seed: u64, size_hint: Option<u64>) -> Self {
        let cap_max = 2 * params.max as usize;
        let cap = match size_hint {
            Some(n) => (n as usize).saturating_add(1).min(cap_max).max(4096),
            None => cap_max,
        };
        Chunker { reader, params, seed, buf: vec![0; cap], start: 0, end: 0, eof: false, zero_cut: None }
    }

    fn fill(&mut self) -> io::Result<()> {
        let want = self.params.max as usize;
        while !self.eof && self.end - self.start < want {
            if self.end == self.buf.len() {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    let n = (self.buf.len() * 2).min(2 * want).max(self.buf.len() + 4096);
                    self.buf.resize(n, 0);
                }
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next chunk, or `None` at the end of the input.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.fill()?;
        if self.start == self.end {
            return Ok(None);
        }
        // A window of zeros (a sparse file's hole, a zeroed disk image) is cut without scanning:
        // FastCDC's cut depends only on the first `max` bytes, so it is the same for every such
        // window. The chunk is allocated zeroed rather than copied.
        let max = self.params.max as usize;
        if self.end - self.start >= max && is_zero(&self.buf[self.start..self.start + max]) {
            let (params, seed) = (self.params, self.seed);
            let n = *self.zero_cut.get_or_insert_with(|| params.first_cut(&vec![0u8; max], seed));
            self.start += n;
            return Ok(Some(vec![0u8; n]));
        }
        let n = self.params.first_cut(&self.buf[self.start..self.end], self.seed);
        if self.start == 0 && n == self.end && self.eof && self.buf.len() <= n + n / 8 + 64 {
            // The whole input in one chunk (a small file, read into a buffer of its size): hand
            // over the buffer itself instead of a copy (1 % of a cold create's CPU).
            self.buf.truncate(n);
            self.start = 0;
            self.end = 0;
            return Ok(Some(std::mem::take(&mut self.buf)));
        }
        let chunk = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use fastcdc::v2020::FastCDC;

    /// Deterministic incompressible bytes (xorshift); `seed` must not be 0.
    pub(crate) fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn lengths<R: Read>(c: &mut Chunker<R>) -> Vec<usize> {
        let mut v = vec![];
        while let Some(ch) = c.next_chunk().unwrap() {
            v.push(ch.len());
        }
        v
    }

    /// A reader that hands out at most 1000 bytes per call.
    struct Dribble<'a>(&'a [u8]);
    impl Read for Dribble<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            let n = b.len().min(self.0.len()).min(1000);
            b[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_small_input_comes_back_whole_once() {
        for n in [1usize, 100, 4095, 4096, 5000, 200_000] {
            let data = pseudo_random(n, 7);
            for hint in [Some(n as u64), None, Some(n as u64 / 2)] {
                let mut c = Chunker::new(Dribble(&data), DATA_PARAMS, 5, hint);
                assert_eq!(c.next_chunk().unwrap().as_deref(), Some(&data[..]), "{n} bytes, hint {hint:?}");
                assert!(c.next_chunk().unwrap().is_none());
                assert!(c.next_chunk().unwrap().is_none());
            }
        }
    }

    #[test]
    fn fixed_sizes_cut_every_block_zeros_included() {
        let p = ChunkerParams::fixed(4 * 1024 * 1024).unwrap();
        assert!(p.is_fixed() && !DATA_PARAMS.is_fixed());
        let mut data = pseudo_random(9 * 1024 * 1024 + 7, 3);
        data[4 << 20..8 << 20].fill(0);
        let got = lengths(&mut Chunker::new(Dribble(&data), p, 1, None));
        assert_eq!(got, [4 << 20, 4 << 20, (1 << 20) + 7]);
        assert_eq!(lengths(&mut Chunker::new(&b"abc"[..], ChunkerParams::fixed(64).unwrap(), 1, None)), [3]);
        assert!(ChunkerParams::fixed(63).is_none() && ChunkerParams::fixed(16 * 1024 * 1024 + 1).is_none());
    }

    #[test]
    fn zero_runs_cut_exactly_as_the_scan_would() {
        // Data, a long hole, data, a hole ending the stream, in odd alignments.
        let mut data = pseudo_random(3_000_001, 1);
        data.extend(std::iter::repeat_n(0u8, 23_456_789));
        data.extend(pseudo_random(5_000_003, 2));
        data.extend(std::iter::repeat_n(0u8, 9_999_999));
        for seed in [3u64, 99, 12345] {
            let got = lengths(&mut Chunker::new(&data[..], DATA_PARAMS, seed, None));
            // Reference: FastCDC over the same bytes, one cut at a time, no fast path.
            let mut want = vec![];
            let mut at = 0;
            while at < data.len() {
                let end = (at + 2 * DATA_PARAMS.max as usize).min(data.len());
                let n = DATA_PARAMS.first_cut(&data[at..end], seed);
                want.push(n);
                at += n;
            }
            assert_eq!(got, want, "seed {seed}");
        }
        assert!(is_zero(&[0; 10_000]) && !is_zero(&[0, 0, 1]) && is_zero(&[]));
    }

    /// [`gear_cut`] cuts exactly where the fastcdc crate's own loop does: every cut of several
    /// megabytes of random, zero, repetitive and text-like data, under the repository's sizes,
    /// the item stream's, small odd ones, odd minimums and lengths (cuts in either byte of a
    /// pair, and in either of the scan's two loops), with several seeds (0 included).
    #[test]
    fn gear_cut_agrees_with_the_crate() {
        let random = pseudo_random(6_000_003, 7);
        let text: Vec<u8> = (0..400_000u32)
            .flat_map(|i| format!("INSERT INTO t VALUES ({i}, 'row {}');\n", i % 977).into_bytes())
            .collect();
        let pattern: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let zeros = vec![0u8; 5_000_000];
        let params = [
            DATA_PARAMS,
            TREE_PARAMS,
            ChunkerParams { min: 64, avg: 256, max: 1024 },
            ChunkerParams { min: 1001, avg: 4096, max: 16_385 },
            ChunkerParams { min: 333, avg: 3000, max: 9999 },
        ];
        let mut cuts = 0;
        for data in [&random, &text, &pattern, &zeros] {
            for p in params {
                for seed in [0u64, 1, 0xdead_beef_cafe_f00d] {
                    let mut at = 0;
                    // Reference over the rest of the data; a limited prefix every few cuts, so
                    // that the end-of-data branches are compared too.
                    while at < data.len() {
                        let end = if cuts % 3 == 0 { data.len().min(at + p.avg as usize + 17) } else { data.len() };
                        let rest = &data[at..end];
                        let want = FastCDC::with_level_and_seed(rest, p.min, p.avg, p.max, Normalization::Level1, seed)
                            .next()
                            .map(|c| c.length)
                            .unwrap_or(rest.len());
                        let got = if rest.len() <= p.min as usize { rest.len() } else { gear_cut(rest, &p, seed) };
                        assert_eq!(got, want, "{p:?} seed {seed} at {at}");
                        at += got;
                        cuts += 1;
                    }
                }
            }
        }
        assert!(cuts > 20_000, "{cuts}");
    }

    #[test]
    fn cuts_independent_of_read_pattern_and_bounded() {
        let data = pseudo_random(12_000_000, 42);
        let a = lengths(&mut Chunker::new(&data[..], DATA_PARAMS, 99, Some(data.len() as u64)));
        let b = lengths(&mut Chunker::new(Dribble(&data), DATA_PARAMS, 99, None));
        assert_eq!(a, b);
        assert_eq!(a.iter().sum::<usize>(), data.len());
        assert!(a[..a.len() - 1].iter().all(|&l| l >= DATA_PARAMS.min as usize && l <= DATA_PARAMS.max as usize));
        let c = lengths(&mut Chunker::new(&data[..], DATA_PARAMS, 100, None));
        assert_ne!(a, c, "a different seed must cut elsewhere");
    }
}

#[cfg(test)]
mod read_pattern_tests {
    use super::*;

    /// Reads of pseudo-random sizes, sometimes tiny, sometimes huge.
    struct Jittery<'a> {
        data: &'a [u8],
        x: u64,
    }
    impl Read for Jittery<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let want = match self.x % 4 {
                0 => 1 + (self.x >> 8) as usize % 16,
                1 => 4096,
                2 => 65536 + (self.x >> 8) as usize % 100_000,
                _ => 1 << 22,
            };
            let n = b.len().min(self.data.len()).min(want);
            b[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn cuts_identical_under_jittery_reads() {
        let mut x = 7u64;
        let data: Vec<u8> = (0..20_000_000)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 100 < 60 {
                    b"abcdefgh"[(x % 8) as usize]
                } else {
                    x as u8
                }
            })
            .collect();
        let reference: Vec<usize> = {
            let mut c = Chunker::new(&data[..], DATA_PARAMS, 5, None);
            std::iter::from_fn(|| c.next_chunk().unwrap().map(|v| v.len())).collect()
        };
        for seed in 1..6 {
            let mut c = Chunker::new(Jittery { data: &data, x: seed }, DATA_PARAMS, 5, None);
            let got: Vec<usize> = std::iter::from_fn(|| c.next_chunk().unwrap().map(|v| v.len())).collect();
            assert_eq!(got, reference, "read pattern {seed}");
        }
    }
}
