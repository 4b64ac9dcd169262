//! `garret key export|import|change-passphrase`.

use super::common::{self, GlobalArgs};
use super::{location, Outcome};
use anyhow::{Context, Result};
use garret::crypto::paper;
use garret::repository::keys;
use std::io::Read;

#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// Write the repository's key (still protected by the passphrase) to FILE, or `-` for stdout
    Export {
        /// A printable form with a checksum on every line
        #[arg(long)]
        paper: bool,
        repository: String,
        file: String,
    },
    /// Install a key exported earlier (checks it opens with the passphrase first)
    Import {
        /// FILE holds the printable form
        #[arg(long)]
        paper: bool,
        repository: String,
        /// FILE, or `-` for stdin
        file: String,
    },
    /// Re-wrap the key under a new passphrase (GARRET_NEW_PASSPHRASE, or asked twice)
    ChangePassphrase { repository: Option<String> },
}

#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

pub fn run(_g: &GlobalArgs, a: &KeyArgs) -> Result<Outcome> {
    let client = common::client_dirs();
    match &a.command {
        KeyCommand::Export { paper: as_paper, repository, file } => {
            let loc = location::parse(repository)?;
            loc.forbid_archive()?;
            let bytes = keys::export(&loc.repo, &client)?;
            let out =
                if *as_paper { paper::encode(&bytes, &keys::repository_id(&loc.repo)?).into_bytes() } else { bytes };
            if file == "-" {
                use std::io::Write;
                std::io::stdout().write_all(&out)?;
            } else {
                std::fs::write(file, &out).with_context(|| format!("writing {file}"))?;
            }
        }
        KeyCommand::Import { paper: as_paper, repository, file } => {
            let loc = location::parse(repository)?;
            loc.forbid_archive()?;
            let mut raw = Vec::new();
            if file == "-" {
                std::io::stdin().read_to_end(&mut raw)?;
            } else {
                raw = std::fs::read(file).with_context(|| format!("reading {file}"))?;
            }
            let bytes = if *as_paper { paper::decode(&String::from_utf8_lossy(&raw))? } else { raw };
            let pf = || common::passphrase(false).map_err(|e| garret::Error::Key(format!("{e:#}")));
            keys::import(&loc.repo, &client, &bytes, &pf)?;
            eprintln!("garret: key imported into {}", loc.repo.display());
        }
        KeyCommand::ChangePassphrase { repository } => {
            let loc = location::parse_opt(repository.as_deref())?;
            loc.forbid_archive()?;
            let old = common::passphrase(false)?;
            let new = match std::env::var("GARRET_NEW_PASSPHRASE") {
                Ok(p) => p.into_bytes(),
                Err(_) => common::prompt_new_passphrase()?,
            };
            keys::change_passphrase(&loc.repo, &client, &old, &new, None)?;
            eprintln!("garret: passphrase changed for {}", loc.repo.display());
        }
    }
    Ok(Outcome::Ok)
}
