//! Per-stage throughput of the create pipeline: chunking, keyed hashing, compression, sealing
//! (compress + pad + encrypt), pack assembly, and blob opening. Single-threaded figures; the
//! pipeline spreads hashing and sealing over all cores.
//!
//!     cargo bench --bench stages            # 64 MiB per stage
//!     GARRET_BENCH_MIB=256 cargo bench --bench stages

use garret::blob;
use garret::chunker::{Chunker, DATA_PARAMS};
use garret::compress::Compression;
use garret::crypto::{Keys, MasterKey};
use garret::id::{Id, ObjectType};
use garret::pack::PackBuilder;
use std::time::Instant;

fn data(n: usize) -> Vec<u8> {
    // Half text-like (compressible), half random.
    let mut out = Vec::with_capacity(n);
    let text = b"INSERT INTO accounts VALUES (42, 'alice', 1000.00, '2026-11-24 03:00:00');\n";
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while out.len() < n / 2 {
        out.extend_from_slice(text);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes()[..2]);
    }
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn report(stage: &str, bytes: usize, t: Instant) {
    let s = t.elapsed().as_secs_f64();
    println!("{stage:<28} {:>9.1} MB/s   ({:.3} s for {} MiB)", bytes as f64 / s / 1e6, s, bytes >> 20);
}

fn main() {
    let mib: usize = std::env::var("GARRET_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let input = data(mib << 20);
    let keys = Keys::derive(&MasterKey::generate(), Id([1; 32]), 1);

    let t = Instant::now();
    let mut chunks = vec![];
    let mut c = Chunker::new(&input[..], DATA_PARAMS, keys.chunker_seed(), Some(input.len() as u64));
    while let Some(ch) = c.next_chunk().unwrap() {
        chunks.push(ch);
    }
    report("chunk (FastCDC, seeded)", input.len(), t);

    let t = Instant::now();
    let ids: Vec<Id> = chunks.iter().map(|c| keys.blob_id(c)).collect();
    report("hash (keyed BLAKE3)", input.len(), t);

    let t = Instant::now();
    let mut z = 0;
    for c in &chunks {
        z += garret::compress::compress(Compression::Zstd(3), c).1.len();
    }
    report("compress (zstd,3)", input.len(), t);

    let t = Instant::now();
    let sealed: Vec<_> =
        chunks.iter().zip(&ids).map(|(c, id)| blob::seal(&keys, ObjectType::Data, *id, c, Compression::None)).collect();
    report("seal (pad + AES-GCM-SIV)", input.len(), t);

    let t = Instant::now();
    let sealed_z: Vec<_> = chunks
        .iter()
        .zip(&ids)
        .map(|(c, id)| blob::seal(&keys, ObjectType::Data, *id, c, Compression::Zstd(3)))
        .collect();
    report("seal (zstd,3 + pad + AES)", input.len(), t);

    let t = Instant::now();
    let mut total = 0;
    let mut pb = PackBuilder::default();
    for b in sealed {
        pb.add(b);
        if pb.is_full() {
            total += std::mem::take(&mut pb).finish(&keys).0.iter().map(|p| p.len()).sum::<usize>();
        }
    }
    total += pb.finish(&keys).0.iter().map(|p| p.len()).sum::<usize>();
    report("pack assembly (shuffle)", total, t);

    let t = Instant::now();
    for (b, id) in sealed_z.iter().zip(&ids) {
        blob::open(&keys, ObjectType::Data, id, &b.envelope).unwrap();
    }
    report("open (AES + zstd + re-hash)", input.len(), t);
    println!("compressed to {:.1}% of input", z as f64 * 100.0 / input.len() as f64);
    small_files(&keys);
}

/// Small files sealed one by one against sealed in bundles of up to 512 KiB, as create does:
/// this crate's own sources (real text, a few KiB a file) 8 times over, or the files under 128
/// KiB of the directory `GARRET_BENCH_SMALL` (say, `../shared/bench`'s tree) in walk order.
fn small_files(keys: &Keys) {
    let (dir, times) = match std::env::var("GARRET_BENCH_SMALL") {
        Ok(d) => (d, 1),
        Err(_) => (concat!(env!("CARGO_MANIFEST_DIR"), "/src").to_string(), 8),
    };
    let mut files: Vec<Vec<u8>> = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() && e.metadata().unwrap().len() <= 128 * 1024 {
            files.push(std::fs::read(e.path()).unwrap());
        }
    }
    let files: Vec<(Id, Vec<u8>)> =
        (0..times).flat_map(|_| files.iter()).map(|f| (keys.blob_id(f), f.clone())).collect();
    let bytes: usize = files.iter().map(|f| f.1.len()).sum();
    println!("small files: {} of {} bytes on average", files.len(), bytes / files.len().max(1));
    let t = Instant::now();
    let alone: usize = files
        .iter()
        .map(|(id, f)| blob::seal(keys, ObjectType::Data, *id, f, Compression::Zstd(3)).envelope.len())
        .sum();
    report("seal small files, each alone", bytes, t);
    let t = Instant::now();
    let mut bundles = Vec::new();
    let mut run: Vec<(Id, Vec<u8>)> = Vec::new();
    for f in &files {
        if !run.is_empty() && run.iter().map(|r| r.1.len()).sum::<usize>() + f.1.len() > 512 * 1024 {
            bundles.push(blob::seal_bundle(keys, std::mem::take(&mut run), Compression::Zstd(3)));
        }
        run.push(f.clone());
    }
    bundles.push(blob::seal_bundle(keys, run, Compression::Zstd(3)));
    let together: usize = bundles.iter().map(|b| b.envelope.len()).sum();
    report("seal small files, bundled", bytes, t);
    let t = Instant::now();
    for b in &bundles {
        let content = blob::open_bundle(keys, b.envelope.clone()).unwrap();
        for m in &b.members {
            blob::member(keys, &content, &m.id, m.start, m.len).unwrap();
        }
    }
    report("open bundles (every member)", bytes, t);
    println!("stored: each alone {alone} bytes, bundled {together} bytes");
}
