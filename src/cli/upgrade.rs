//! `garret upgrade REPO`: borg's format upgrades. A garret repository authenticates its manifests
//! and archives always (borg's "TAM"), and a version-1 repository is read and written as it is
//! (it only stores small files without bundles: changing its version would mean re-encrypting
//! every object, whose AAD names the version), so there is nothing to upgrade; the command says
//! so, and refuses to switch authentication off.

use super::common::{self, GlobalArgs};
use super::{location, Outcome};
use anyhow::{bail, Result};
use garret::repository::keys;

#[derive(clap::Args, Debug)]
pub struct UpgradeArgs {
    /// borg's: switch off manifest authentication (refused)
    #[arg(long)]
    pub disable_tam: bool,
    /// borg's TAM and in-place options: accepted (garret always authenticates manifests and
    /// archives, and changes nothing here)
    #[arg(long, hide = true)]
    pub tam: bool,
    #[arg(long, hide = true)]
    pub check_tam: bool,
    #[arg(long, hide = true)]
    pub archives_tam: bool,
    #[arg(long, hide = true)]
    pub inplace: bool,
    #[arg(long, hide = true)]
    pub force: bool,
    #[arg(short = 'n', long, hide = true)]
    pub dry_run: bool,
    /// JSON on stdout: {"repository", "format_version", "upgraded": false}
    #[arg(long)]
    pub json: bool,
    /// Repository (or GARRET_REPO)
    pub repository: Option<String>,
}

pub fn run(_g: &GlobalArgs, a: &UpgradeArgs) -> Result<Outcome> {
    if a.disable_tam {
        bail!("upgrade --disable-tam: garret always authenticates manifests and archives; this cannot be switched off");
    }
    let loc = location::parse_opt(a.repository.as_deref())?;
    loc.forbid_archive()?;
    let c = keys::repository_config(&loc.repo)?;
    if a.json {
        outln!(
            "{}",
            serde_json::json!({ "repository": loc.repo.display().to_string(), "format_version": c.version, "upgraded": false })
        )?;
    } else if c.version < garret::repository::FORMAT_VERSION {
        common::info(&format!(
            "{}: garret repository format version {}, read and written as it is (new repositories are version {}, \
             which also stores small files together in bundles); manifests and archives are always authenticated. \
             Nothing to upgrade.",
            loc.repo.display(),
            c.version,
            garret::repository::FORMAT_VERSION
        ));
    } else {
        common::info(&format!(
            "{}: garret repository format version {} is current; manifests and archives are always \
             authenticated. Nothing to upgrade.",
            loc.repo.display(),
            c.version
        ));
    }
    Ok(Outcome::Ok)
}
