//! `garret init` and `garret adopt`.

use super::common::{self, GlobalArgs};
use super::location;
use super::Outcome;
use anyhow::Result;
use garret::crypto::keyfile::{KdfParams, DEFAULT_MEMORY_KIB, MIN_MEMORY_KIB};
use garret::repository::{Encryption, Repository};

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Encryption mode: repokey (key in the repository), keyfile (key on this client), none
    #[arg(short = 'e', long = "encryption", default_value = "repokey")]
    pub encryption: Encryption,
    /// Argon2id memory in MiB for the passphrase KDF (at least 64)
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MEMORY_KIB / 1024)]
    pub kdf_memory: u32,
    /// Create missing parent directories of the repository
    #[arg(long)]
    pub make_parent_dirs: bool,
    /// JSON on stdout: {"repository", "id", "encryption", "format_version"}
    #[arg(long)]
    pub json: bool,
    /// borg's append-only and quota repositories: not supported yet (refused with the reason)
    #[arg(long, hide = true)]
    pub append_only: bool,
    #[arg(long, hide = true, value_name = "QUOTA")]
    pub storage_quota: Option<String>,
    /// Repository path (or GARRET_REPO)
    pub repository: Option<String>,
}

pub fn run(_g: &GlobalArgs, a: &InitArgs) -> Result<Outcome> {
    let loc = location::parse_opt(a.repository.as_deref())?;
    loc.forbid_archive()?;
    if a.append_only || a.storage_quota.is_some() {
        anyhow::bail!(
            "init --append-only/--storage-quota: not supported yet (append-only and quota repositories come \
             with garret's server, which enforces them); run init without them"
        );
    }
    if a.kdf_memory < MIN_MEMORY_KIB / 1024 || a.kdf_memory > 1024 {
        anyhow::bail!("--kdf-memory {} is out of range: use 64 to 1024 (MiB)", a.kdf_memory);
    }
    if !a.make_parent_dirs {
        if let Some(parent) = loc.repo.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                anyhow::bail!(
                    "parent directory {} does not exist; create it or pass --make-parent-dirs",
                    parent.display()
                );
            }
        }
    }
    let pass = match a.encryption {
        Encryption::None => {
            common::say(common::Level::Warning, "garret: WARNING: encryption mode none: the repository is NOT encrypted and NOT authenticated against tampering; anyone who can read it can read your data");
            None
        }
        _ => Some(common::passphrase(true)?),
    };
    let client = common::client_dirs();
    let config =
        Repository::init(&loc.repo, a.encryption, pass.as_deref(), KdfParams::with_memory_mib(a.kdf_memory), &client)?;
    if a.encryption != Encryption::None {
        let key_file = match a.encryption {
            Encryption::Keyfile => {
                format!(
                    " and back up the key file {}",
                    garret::repository::keyfile_path(&client, &config.repo_id()).display()
                )
            }
            _ => String::new(),
        };
        common::say(common::Level::Info, &format!(
            "garret: repository {} created (encryption {:?}). Keep the passphrase safe{key_file}: without it the backups cannot be read.",
            loc.repo.display(),
            a.encryption,
        ));
    }
    if a.json {
        let path = std::path::absolute(&loc.repo).unwrap_or_else(|_| loc.repo.clone());
        outln!(
            "{}",
            serde_json::json!({
                "repository": path.display().to_string(),
                "id": config.id,
                "encryption": format!("{:?}", a.encryption).to_lowercase(),
                "format_version": config.version,
            })
        )?;
    }
    Ok(Outcome::Ok)
}

#[derive(clap::Args, Debug)]
pub struct AdoptArgs {
    /// Repository path (or GARRET_REPO)
    pub repository: Option<String>,
    /// JSON on stdout: the repository and the manifest now trusted
    #[arg(long)]
    pub json: bool,
}

pub fn adopt(g: &GlobalArgs, a: &AdoptArgs) -> Result<Outcome> {
    let loc = location::parse_opt(a.repository.as_deref())?;
    loc.forbid_archive()?;
    let repo = common::open_with(g, &loc.repo, false, true)?;
    repo.adopt()?;
    if a.json {
        outln!(
            "{}",
            serde_json::json!({
                "repository": loc.repo.display().to_string(),
                "manifest_seq": repo.manifest().seq,
            })
        )?;
    } else {
        common::say(
            common::Level::Info,
            &format!("garret: now trusting manifest #{} of {}", repo.manifest().seq, loc.repo.display()),
        );
    }
    Ok(Outcome::Ok)
}
