//! `garret benchmark crud REPO PATH`: borg's benchmark. For each of six data sets (all-zero and
//! random files, big, medium and small) written under PATH, it times create (C, files cache off),
//! extract (R: every file read back, decrypted and checked, nothing written), an unchanged re-run
//! (U) and delete (D), each a run of this same binary (so each includes unlocking the key, about
//! 0.1 s), and prints borg's lines.

use super::common::{self, GlobalArgs};
use super::{location, Outcome};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(clap::Subcommand, Debug)]
pub enum BenchmarkCommand {
    /// Time create, extract, unchanged re-run and delete on test data written under PATH
    Crud {
        /// JSON lines on stdout instead: {"test", "op", "seconds", "bytes", "mb_per_s"}
        #[arg(long)]
        json: bool,
        /// Tiny data sets (for testing the command itself)
        #[arg(long, hide = true)]
        tiny: bool,
        /// Repository (its archives are left as they were)
        repository: String,
        /// A directory for the test data (on the file system to measure reading from)
        path: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct BenchmarkArgs {
    #[command(subcommand)]
    pub command: BenchmarkCommand,
}

/// borg's data sets: name, file count, file size, all zeros?
const SETS: [(&str, usize, usize, bool); 6] = [
    ("Z-BIG", 10, 100_000_000, true),
    ("R-BIG", 10, 100_000_000, false),
    ("Z-MEDIUM", 1000, 1_000_000, true),
    ("R-MEDIUM", 1000, 1_000_000, false),
    ("Z-SMALL", 10000, 10_000, true),
    ("R-SMALL", 10000, 10_000, false),
];

pub fn run(_g: &GlobalArgs, a: &BenchmarkArgs) -> Result<Outcome> {
    let BenchmarkCommand::Crud { json, tiny, repository, path } = &a.command;
    let loc = location::parse(repository)?;
    loc.forbid_archive()?;
    let exe = std::env::current_exe().context("finding garret's own binary")?;
    if !path.is_dir() {
        anyhow::bail!(
            "{} is not a directory: give benchmark crud an existing directory for its test data",
            path.display()
        );
    }
    let data = path.join(format!("garret-benchmark-crud-{}", std::process::id()));
    std::fs::create_dir(&data).with_context(|| format!("creating {}", data.display()))?;
    let result = (|| {
        for (name, count, size, zeros) in SETS {
            let (count, size) = if *tiny { (count.min(3), size / 10_000) } else { (count, size) };
            write_set(&data, count, size, zeros)?;
            let times = measure(&exe, &loc.repo, &data)?;
            let total = (count * size) as f64;
            for (op, secs) in ["C", "R", "U", "D"].iter().zip(times) {
                let mbps = total / secs.max(1e-9) / 1e6;
                if *json {
                    outln!(
                        "{}",
                        serde_json::json!({ "test": name, "op": op, "seconds": secs, "bytes": count * size, "mb_per_s": mbps })
                    )?;
                } else {
                    let kind = if zeros { "all-zero" } else { "random" };
                    outln!(
                        "{:<16}{mbps:>9.2} MB/s ({count} * {} {kind} files: {secs:.2}s)",
                        format!("{op}-{name}"),
                        common::size(size as u64)
                    )?;
                }
            }
            std::fs::remove_dir_all(&data).and_then(|_| std::fs::create_dir(&data))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&data);
    result.map(|()| Outcome::Ok)
}

/// `count` files of `size` bytes, zeros or random (incompressible, each file different).
fn write_set(dir: &Path, count: usize, size: usize, zeros: bool) -> Result<()> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("seeding the random data: {e}"))?;
    let mut buf = vec![0u8; size];
    for i in 0..count {
        if !zeros {
            let mut h = blake3::Hasher::new_keyed(&seed);
            h.update(&(i as u64).to_le_bytes());
            h.finalize_xof().fill(&mut buf);
        }
        let f = dir.join(format!("file_{i}"));
        std::fs::write(&f, &buf).with_context(|| format!("writing {}", f.display()))?;
    }
    Ok(())
}

/// Seconds for C, R, U and D, as borg measures them.
fn measure(exe: &Path, repo: &Path, data: &Path) -> Result<[f64; 4]> {
    let repo = repo.display().to_string();
    let name = |n: u32| format!("{repo}::garret-benchmark-crud{n}");
    let data = data.display().to_string();
    let run = |args: &[&str]| -> Result<f64> {
        let t = Instant::now();
        let out = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(if args[0] == "extract" { Stdio::null() } else { Stdio::piped() })
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        let secs = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!("garret {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(secs)
    };
    let create = run(&["create", "--compression", "none", "--files-cache", "disabled", &name(1), &data])?;
    run(&["create", "--compression", "none", &name(2), &data])?; // fills the files cache
    run(&["delete", &name(2)])?;
    let update = run(&["create", "--compression", "none", &name(3), &data])?;
    run(&["delete", &name(3)])?;
    let read = run(&["extract", "--stdout", &name(1)])?;
    let delete = run(&["delete", &name(1)])?;
    Ok([create, read, update, delete])
}
