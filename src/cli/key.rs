//! `garret key export|import|change-passphrase`.

use super::common::{self, GlobalArgs};
use super::{location, Outcome};
use anyhow::{bail, Context, Result};
use garret::crypto::paper;
use garret::repository::keys;
use std::io::Read;

#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// Write the repository's key (still protected by the passphrase) to FILE, or to stdout when
    /// FILE is `-` or not given (as borg's `key export REPO > kit.txt`)
    Export {
        /// A printable form with a checksum on every line
        #[arg(long, conflicts_with = "qr_html")]
        paper: bool,
        /// A printable HTML page: the key file as a QR code, and the --paper form
        #[arg(long)]
        qr_html: bool,
        /// JSON on stdout: repository, file, form and size (FILE must not be `-`)
        #[arg(long)]
        json: bool,
        /// Repository (or GARRET_REPO)
        repository: Option<String>,
        file: Option<String>,
    },
    /// Install a key exported earlier (checks it opens with the passphrase first)
    Import {
        /// FILE holds the printable form
        #[arg(long)]
        paper: bool,
        /// JSON on stdout: the repository the key was imported into
        #[arg(long)]
        json: bool,
        /// Repository (or GARRET_REPO)
        repository: Option<String>,
        /// FILE, or `-` for stdin (with --paper, stdin when not given: type the lines in)
        file: Option<String>,
    },
    /// Re-wrap the key under a new passphrase (GARRET_NEW_PASSPHRASE, or asked twice)
    ChangePassphrase {
        /// JSON on stdout: the repository whose passphrase changed
        #[arg(long)]
        json: bool,
        repository: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

pub fn run(_g: &GlobalArgs, a: &KeyArgs) -> Result<Outcome> {
    let client = common::client_dirs();
    match &a.command {
        KeyCommand::Export { paper: as_paper, qr_html, json, repository, file } => {
            let loc = location::parse_opt(repository.as_deref())?;
            let file = file.as_deref().unwrap_or("-");
            loc.forbid_archive()?;
            if *json && file == "-" {
                bail!("--json needs an output FILE: with `-` standard output carries the key (drop --json, or name a file)");
            }
            let bytes = keys::export(&loc.repo, &client)?;
            let out = if *as_paper {
                paper::encode(&bytes, &keys::repository_id(&loc.repo)?).into_bytes()
            } else if *qr_html {
                paper::qr_html(&bytes, &keys::repository_id(&loc.repo)?)?.into_bytes()
            } else {
                bytes
            };
            if file == "-" {
                use std::io::Write;
                std::io::stdout().write_all(&out)?;
            } else {
                write_synced(std::path::Path::new(file), &out).with_context(|| format!("writing {file}"))?;
            }
            if *json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "repository": loc.repo.display().to_string(),
                        "file": file,
                        "form": if *as_paper { "paper" } else if *qr_html { "qr-html" } else { "file" },
                        "bytes": out.len(),
                    })
                )?;
            }
        }
        KeyCommand::Import { paper: as_paper, json, repository, file } => {
            let loc = location::parse_opt(repository.as_deref())?;
            loc.forbid_archive()?;
            let file = match (file.as_deref(), as_paper) {
                (Some(f), _) => f,
                (None, true) => "-",
                (None, false) => bail!(
                    "key import needs the exported key: give FILE (or `-` for stdin) after the repository, or \
                     --paper to type in the printed form"
                ),
            };
            let mut raw = Vec::new();
            if file == "-" {
                std::io::stdin().read_to_end(&mut raw)?;
            } else {
                raw = std::fs::read(file).with_context(|| format!("reading {file}"))?;
            }
            let bytes = if *as_paper { paper::decode(&String::from_utf8_lossy(&raw))? } else { raw };
            let pf = || common::passphrase(false).map_err(|e| garret::Error::Key(format!("{e:#}")));
            keys::import(&loc.repo, &client, &bytes, &pf)?;
            report(*json, "imported", &loc.repo, "key imported into")?;
        }
        KeyCommand::ChangePassphrase { json, repository } => {
            let loc = location::parse_opt(repository.as_deref())?;
            loc.forbid_archive()?;
            let old = common::passphrase(false)?;
            let new = match common::var("NEW_PASSPHRASE") {
                Some(p) => p.into_bytes(),
                None => common::prompt_new_passphrase()?,
            };
            keys::change_passphrase(&loc.repo, &client, &old, &new, None)?;
            report(*json, "passphrase_changed", &loc.repo, "passphrase changed for")?;
        }
    }
    Ok(Outcome::Ok)
}

/// One line on what was done: JSON on stdout, or a sentence on stderr.
fn report(json: bool, done: &str, repo: &std::path::Path, sentence: &str) -> Result<()> {
    if json {
        outln!("{}", serde_json::json!({ "repository": repo.display().to_string(), done: true }))?;
    } else {
        common::say(common::Level::Info, &format!("garret: {sentence} {}", repo.display()));
    }
    Ok(())
}

/// Write a recovery kit so that it survives a power cut once this command says it is written
/// (the file, then its directory entry).
fn write_synced(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    Ok(garret::backend::sync_dir(dir)?)
}
