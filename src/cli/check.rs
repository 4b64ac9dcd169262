//! `garret check REPO[::NAME]`: verify repository and archives; exit 0 clean, 1 warnings,
//! 2 damage found.

use super::common::{self, GlobalArgs};
use super::{location, Outcome};
use anyhow::Result;
use garret::check::{self, CheckOptions};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Only check packs and the index
    #[arg(long, conflicts_with = "archives_only")]
    pub repository_only: bool,
    /// Only check archives and their items
    #[arg(long)]
    pub archives_only: bool,
    /// Also read, decrypt, decompress and re-hash every blob
    #[arg(long)]
    pub verify_data: bool,
    /// Stop data verification after SECONDS; the next run resumes where this one stopped
    #[arg(long, value_name = "SECONDS")]
    pub max_duration: Option<u64>,
    /// JSON report on stdout
    #[arg(long)]
    pub json: bool,
    /// REPO or REPO::NAME
    pub location: Option<String>,
}

pub fn run(g: &GlobalArgs, a: &CheckArgs) -> Result<Outcome> {
    let loc = location::parse_opt(a.location.as_deref())?;
    let repo = common::open(g, &loc.repo, false)?;
    let opts = CheckOptions {
        repository: !a.archives_only && loc.archive.is_none(),
        archives: !a.repository_only,
        verify_data: a.verify_data,
        archive: loc.archive.clone(),
        max_duration: a.max_duration.map(std::time::Duration::from_secs),
        state_dir: Some(common::cache_dir()),
    };
    let rep = check::run(&repo, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        for e in &rep.errors {
            eprintln!("garret: error: {}", common::one_line(e));
        }
        for w in &rep.warnings {
            eprintln!("garret: warning: {}", common::one_line(w));
        }
        if g.verbose || g.info {
            eprintln!(
                "checked {} packs, {} blobs ({} verified), {} archives; {} unreferenced blobs (freed by compact){}",
                rep.packs_checked,
                rep.blobs_checked,
                common::size(rep.bytes_verified),
                rep.archives_checked,
                rep.unreferenced_blobs,
                if rep.complete { "" } else { "; data verification stopped at --max-duration, the next run resumes" }
            );
        }
        if rep.damaged() {
            for d in &rep.damaged_archives {
                for f in &d.files {
                    eprintln!("damaged: {}: {}", d.name, common::escape(f));
                }
            }
        }
    }
    Ok(if rep.damaged() {
        Outcome::Error
    } else if !rep.warnings.is_empty() {
        Outcome::Warning
    } else {
        Outcome::Ok
    })
}
