//! `garret break-lock REPO`: remove the writer lock and reader marks left by processes that
//! died on another host (a dead process on this host is detected without it). Needs no
//! passphrase, like borg's.

use super::common::{self, GlobalArgs};
use super::location;
use super::Outcome;
use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct BreakLockArgs {
    /// Repository path (or GARRET_REPO)
    pub repository: Option<String>,
    /// JSON on stdout: {"removed": [...]}
    #[arg(long)]
    pub json: bool,
}

pub fn run(_g: &GlobalArgs, a: &BreakLockArgs) -> Result<Outcome> {
    let loc = location::parse_opt(a.repository.as_deref())?;
    loc.forbid_archive()?;
    let removed = garret::repository::lock::break_locks(&loc.repo)?;
    if a.json {
        outln!("{}", serde_json::json!({ "removed": removed }))?;
    } else if removed.is_empty() {
        common::say(common::Level::Info, &format!("garret: {} holds no lock", loc.repo.display()));
    } else {
        for r in &removed {
            common::say(common::Level::Info, &format!("garret: removed the {r}"));
        }
    }
    Ok(Outcome::Ok)
}
