//! Path selection flags shared by `create`, `extract`, `export-tar`, `list`, `diff` and `mount`: `--exclude`,
//! `--exclude-from`, `--pattern` and `--patterns-from`, combined in borg's order.
//!
//! borg considers `--exclude` and `--pattern` values first, in the order they appear on the
//! command line, then `--patterns-from` files, then `--exclude-from` files. clap's derive keeps
//! each flag's values apart, so `main` records where each value appeared ([`record_order`]).

use anyhow::{Context, Result};
use clap::ArgMatches;
use garret::patterns::Patterns;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Default)]
pub struct SelectionArgs {
    /// Leave out paths matching PATTERN (fm: style by default, e.g. '**/pgdata'); repeatable
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Read exclude patterns from FILE, one per line
    #[arg(long, value_name = "FILE")]
    pub exclude_from: Vec<PathBuf>,
    /// Include (+), exclude (-), exclude without descending (!) paths matching PATTERN (sh:
    /// style by default), or add a root (R PATH); repeatable, e.g. --pattern '+ home/susan'
    #[arg(long, value_name = "PATTERN", allow_hyphen_values = true)]
    pub pattern: Vec<String>,
    /// Read --pattern lines from FILE
    #[arg(long, value_name = "FILE")]
    pub patterns_from: Vec<PathBuf>,
    /// Command-line position of each `--exclude` (false) and `--pattern` (true) value, in the
    /// order given; filled in by [`record_order`].
    #[arg(skip)]
    pub order: Vec<bool>,
}

impl SelectionArgs {
    /// The patterns these flags describe.
    pub fn patterns(&self) -> Result<Patterns> {
        let mut p = Patterns::default();
        // Without recorded positions (a test building the arguments by hand): excludes first.
        let order: Vec<bool> = if self.order.len() == self.exclude.len() + self.pattern.len() {
            self.order.clone()
        } else {
            self.exclude.iter().map(|_| false).chain(self.pattern.iter().map(|_| true)).collect()
        };
        let (mut excludes, mut patterns) = (self.exclude.iter(), self.pattern.iter());
        for is_pattern in order {
            let r = if is_pattern {
                let v = patterns.next().expect("counted");
                p.add_pattern(v).map_err(|e| anyhow::anyhow!("--pattern {v:?}: {e}"))
            } else {
                p.add_exclude(excludes.next().expect("counted")).map_err(anyhow::Error::msg)
            };
            r?;
        }
        for f in &self.patterns_from {
            let text = std::fs::read_to_string(f).with_context(|| format!("--patterns-from {}", f.display()))?;
            p.add_patterns_file(&text).map_err(|e| anyhow::anyhow!("--patterns-from {}: {e}", f.display()))?;
        }
        for f in &self.exclude_from {
            let text = std::fs::read_to_string(f).with_context(|| format!("--exclude-from {}", f.display()))?;
            p.add_exclude_file(&text).map_err(|e| anyhow::anyhow!("--exclude-from {}: {e}", f.display()))?;
        }
        Ok(p)
    }
}

/// Directories left out by what they contain (`create`, `recreate`).
#[derive(clap::Args, Debug, Default)]
pub struct TagArgs {
    /// Exclude directories that hold a valid CACHEDIR.TAG
    #[arg(long)]
    pub exclude_caches: bool,
    /// Exclude directories that contain a file or directory NAME
    #[arg(long, value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
    /// Keep the tag files (and their directory) of excluded directories
    #[arg(long)]
    pub keep_exclude_tags: bool,
}

/// Where `--exclude` and `--pattern` values appeared in `m` (one subcommand's matches).
pub fn record_order(m: &ArgMatches, s: &mut SelectionArgs) {
    let at = |id: &str| -> Vec<usize> { m.indices_of(id).map(|i| i.collect()).unwrap_or_default() };
    let mut all: Vec<(usize, bool)> =
        at("exclude").into_iter().map(|i| (i, false)).chain(at("pattern").into_iter().map(|i| (i, true))).collect();
    all.sort_unstable();
    s.order = all.into_iter().map(|(_, p)| p).collect();
}
