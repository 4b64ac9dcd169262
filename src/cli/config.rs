//! `garret config REPO [NAME]`: show the repository's settings (borg's `config`). They are fixed
//! when the repository is made, so setting or deleting one is refused.

use super::common::GlobalArgs;
use super::{location, Outcome};
use anyhow::{bail, Result};
use garret::repository::keys;

#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// List every setting (the default without NAME)
    #[arg(short = 'l', long)]
    pub list: bool,
    /// borg's: delete NAME (refused: garret's settings are fixed at init)
    #[arg(short = 'd', long)]
    pub delete: bool,
    /// borg's: the client cache's settings (garret's cache has none)
    #[arg(short = 'c', long)]
    pub cache: bool,
    /// All settings as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
    /// Repository (or GARRET_REPO)
    pub repository: Option<String>,
    /// Show this setting only: id, version, encryption, chunker, tree_chunker, append_only,
    /// storage_quota
    pub name: Option<String>,
    /// borg's: set NAME (refused: garret's settings are fixed at init)
    pub value: Option<String>,
}

pub fn run(_g: &GlobalArgs, a: &ConfigArgs) -> Result<Outcome> {
    if a.cache {
        bail!("config --cache: garret's client cache has no settings");
    }
    let loc = location::parse_opt(a.repository.as_deref())?;
    loc.forbid_archive()?;
    let c = keys::repository_config(&loc.repo)?;
    let triple = |p: &garret::chunker::ChunkerParams| format!("{},{},{}", p.min, p.avg, p.max);
    // append_only and storage_quota: garret repositories are neither append-only nor limited.
    let settings: Vec<(&str, String)> = vec![
        ("version", c.version.to_string()),
        ("id", c.id.clone()),
        ("encryption", format!("{:?}", c.encryption).to_lowercase()),
        ("chunker", triple(&c.chunker)),
        ("tree_chunker", triple(&c.tree_chunker)),
        ("append_only", "0".into()),
        ("storage_quota", "0".into()),
    ];
    if let Some(name) = &a.name {
        if a.value.is_some() || a.delete {
            bail!(
                "config {name}: a garret repository's settings are fixed when it is made (`garret init`); \
                 they cannot be changed or deleted"
            );
        }
        let Some((_, v)) = settings.iter().find(|(k, _)| k == name) else {
            let known: Vec<&str> = settings.iter().map(|(k, _)| *k).collect();
            bail!("config: no setting {name:?}; the settings are {}", known.join(", "));
        };
        outln!("{v}")?;
        return Ok(Outcome::Ok);
    }
    if a.delete {
        bail!("config --delete needs a NAME, and garret's settings cannot be deleted");
    }
    if a.json {
        let m: serde_json::Map<String, serde_json::Value> =
            settings.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone()))).collect();
        outln!("{}", serde_json::Value::Object(m))?;
    } else {
        outln!("[repository]")?;
        for (k, v) in &settings {
            outln!("{k} = {v}")?;
        }
    }
    Ok(Outcome::Ok)
}
