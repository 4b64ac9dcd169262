//! `garret list REPO` (archives) and `garret list REPO::NAME` (items).

use super::common::{self, GlobalArgs};
use super::{location, Outcome};
use anyhow::Result;
use garret::archive::item::{Item, Kind};
use garret::archive::{self, Archive};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// One JSON object per line (items)
    #[arg(long)]
    pub json_lines: bool,
    /// JSON on stdout (archives)
    #[arg(long)]
    pub json: bool,
    /// Names only
    #[arg(long)]
    pub short: bool,
    /// REPO or REPO::NAME
    pub location: Option<String>,
    /// Only list these paths (and what is below them)
    pub paths: Vec<String>,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "-",
        Kind::Dir => "d",
        Kind::Symlink => "l",
        Kind::Hardlink => "h",
        Kind::Fifo => "p",
        Kind::CharDev => "c",
        Kind::BlockDev => "b",
        Kind::Socket => "s",
        Kind::Unknown => "?",
    }
}

fn item_json(it: &Item) -> serde_json::Value {
    serde_json::json!({
        "type": kind_name(it.kind),
        "mode": it.mode_string(),
        "user": it.user.clone().unwrap_or_else(|| it.uid.to_string()),
        "group": it.group.clone().unwrap_or_else(|| it.gid.to_string()),
        "uid": it.uid,
        "gid": it.gid,
        "path": it.path_lossy(),
        "healthy": it.chunks_healthy.is_empty(),
        "source": it.source.as_ref().map(|s| String::from_utf8_lossy(s).into_owned()).unwrap_or_default(),
        "linktarget": it.target.as_ref().map(|s| String::from_utf8_lossy(s).into_owned()).unwrap_or_default(),
        "size": it.size,
        "mtime": chrono::DateTime::from_timestamp(it.mtime.div_euclid(1_000_000_000), it.mtime.rem_euclid(1_000_000_000) as u32)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)).unwrap_or_default(),
    })
}

pub fn run(g: &GlobalArgs, a: &ListArgs) -> Result<Outcome> {
    let loc = location::parse_opt(a.location.as_deref())?;
    let repo = common::open(g, &loc.repo, false)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match &loc.archive {
        None => {
            let archives = &repo.manifest().archives;
            if a.json {
                let list: Vec<_> = archives
                    .iter()
                    .map(|e| serde_json::json!({"name": e.name, "id": e.id.hex(), "time": e.time, "hostname": e.hostname, "username": e.username}))
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&serde_json::json!({"archives": list}))?)?;
            } else {
                for e in archives {
                    if a.short {
                        writeln!(out, "{}", e.name)?;
                    } else {
                        writeln!(
                            out,
                            "{:<36} {} [{}] {}",
                            e.name,
                            common::show_time(&e.time),
                            e.id.short(),
                            e.hostname
                        )?;
                    }
                }
            }
        }
        Some(name) => {
            let entry = archive::lookup(&repo, name)?.clone();
            let ar = Archive::load(&repo, &entry)?;
            let wanted: Vec<&str> = a.paths.iter().map(|p| p.trim_start_matches('/').trim_end_matches('/')).collect();
            for it in ar.items(&repo) {
                let it = it?;
                let p = it.path_lossy();
                if !wanted.is_empty() && !wanted.iter().any(|w| p == *w || p.starts_with(&format!("{w}/"))) {
                    continue;
                }
                if a.json_lines {
                    writeln!(out, "{}", item_json(&it))?;
                } else if a.short {
                    writeln!(out, "{}", common::escape(&p))?;
                } else {
                    let mut line = format!(
                        "{} {:<8} {:<8} {:>10} {} {}",
                        it.mode_string(),
                        it.user.clone().unwrap_or_else(|| it.uid.to_string()),
                        it.group.clone().unwrap_or_else(|| it.gid.to_string()),
                        it.size,
                        common::show_ns(it.mtime),
                        common::escape(&p)
                    );
                    if let Some(t) = &it.target {
                        line.push_str(&format!(" -> {}", common::escape(&String::from_utf8_lossy(t))));
                    }
                    if let Some(s) = &it.source {
                        line.push_str(&format!(" link to {}", common::escape(&String::from_utf8_lossy(s))));
                    }
                    writeln!(out, "{line}")?;
                }
            }
        }
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
