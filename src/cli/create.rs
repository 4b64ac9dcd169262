//! `garret create REPO::NAME PATH...`

use super::common::{self, GlobalArgs, StderrReporter};
use super::{info, location, Outcome};
use anyhow::Result;
use garret::compress::Compression;
use garret::create::{self, CreateOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Exclude paths matching GLOB (e.g. '**/pgdata'); repeatable
    #[arg(short = 'e', long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Compression: none, zstd or zstd,N (1..22)
    #[arg(short = 'C', long, default_value = "zstd,3")]
    pub compression: Compression,
    /// Print sizes and counts at the end
    #[arg(short = 's', long)]
    pub stats: bool,
    /// Print one status line per item (A added, E error, x excluded, h hardlink)
    #[arg(long)]
    pub list: bool,
    /// Only list items with these status letters (with --list)
    #[arg(long, value_name = "STATUSCHARS")]
    pub filter: Option<String>,
    /// Print a JSON summary on stdout
    #[arg(long)]
    pub json: bool,
    /// Archive comment
    #[arg(long, default_value = "")]
    pub comment: String,
    /// REPO::NAME (placeholders like {now:%Y-%m-%d} and {hostname} are expanded)
    pub archive: String,
    /// Files and directories to back up
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn run(g: &GlobalArgs, a: &CreateArgs) -> Result<Outcome> {
    let loc = location::parse(&a.archive)?;
    let name = location::expand_placeholders(loc.require_archive()?)?;
    garret::archive::validate_name(&name)?;
    let mut repo = common::open(g, &loc.repo, true)?;
    let reporter = StderrReporter::new(a.list, a.filter.clone());
    let opts = CreateOptions {
        name,
        paths: a.paths.clone(),
        excludes: a.exclude.clone(),
        compression: a.compression,
        command_line: std::env::args().collect(),
        comment: a.comment.clone(),
    };
    let out = create::run(&mut repo, &opts, &reporter)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info::archive_json(&repo, &out.archive, &out.id))?
        );
    } else if a.stats {
        print!("{}", info::archive_text(&out.archive, &out.id));
    }
    Ok(if reporter.warned() {
        Outcome::Warning
    } else {
        Outcome::Ok
    })
}
