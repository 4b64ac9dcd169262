//! `REPO::NAME` locations (borg syntax, GARRET_REPO as default repository) and archive name
//! placeholders (`{now:%Y-%m-%d}`, `{hostname}`, ...).

use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct Location {
    pub repo: PathBuf,
    pub archive: Option<String>,
}

/// Parse `REPO`, `REPO::NAME` or `::NAME` (repository from GARRET_REPO, else BORG_REPO). As borg,
/// placeholders are expanded in the whole location and in the variable's value
/// (`/backups/{hostname}.garret::db-{now:%Y-%m-%d}`).
pub fn parse(s: &str) -> Result<Location> {
    let s = &expand_placeholders(s)?;
    // Split at the first "::" so that a name containing "::" reaches validation and is refused.
    let (repo, archive) = match s.split_once("::") {
        Some((r, a)) => (r.to_string(), Some(a.to_string())),
        None => (s.to_string(), None),
    };
    let repo = if repo.is_empty() {
        match super::common::var("REPO") {
            Some(r) if !r.is_empty() => expand_placeholders(&r)?,
            _ => bail!("no repository given: write REPO::NAME or set GARRET_REPO"),
        }
    } else {
        repo
    };
    if (repo.contains("://") && !repo.starts_with("file://")) || scp_style(&repo) {
        bail!("remote repository {repo:?} is not supported yet: use a local path");
    }
    let repo = PathBuf::from(repo.strip_prefix("file://").unwrap_or(&repo));
    let archive = archive.filter(|a| !a.is_empty());
    Ok(Location { repo, archive })
}

/// borg's scp-style remote location, `[user@]host:path` (a host without '/'), unless a local
/// path of that name exists.
fn scp_style(repo: &str) -> bool {
    let Some((host, _)) = repo.split_once(':') else { return false };
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    !host.is_empty() && !host.contains('/') && !std::path::Path::new(repo).exists()
}

/// The repository argument, which may be omitted when GARRET_REPO is set.
pub fn parse_opt(s: Option<&str>) -> Result<Location> {
    match s {
        Some(s) => parse(s),
        None => parse("::"),
    }
}

impl Location {
    pub fn require_archive(&self) -> Result<&str> {
        match &self.archive {
            Some(a) => Ok(a),
            None => bail!("no archive name given: write REPO::NAME"),
        }
    }
    pub fn forbid_archive(&self) -> Result<()> {
        if self.archive.is_some() {
            bail!("this command takes a repository, not an archive: write REPO without ::NAME");
        }
        Ok(())
    }
}

/// Expand `{now}`, `{now:FMT}`, `{utcnow}`, `{utcnow:FMT}`, `{hostname}`, `{fqdn}`, `{user}` and
/// the others borg knows; `{{` and `}}` are literal braces. Used for locations, `--comment`,
/// archive filters and new archive names, as borg does.
pub fn expand_placeholders(name: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = name;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let r = &rest[i..];
        if r.starts_with("{{") || r.starts_with("}}") {
            out.push_str(&r[..1]);
            rest = &r[2..];
            continue;
        }
        if r.starts_with('}') {
            bail!("unbalanced '}}' in archive name {name:?}");
        }
        let end = r.find('}').ok_or_else(|| anyhow::anyhow!("unterminated placeholder in archive name {name:?}"))?;
        let ph = &r[1..end];
        let (key, fmt) = match ph.split_once(':') {
            Some((k, f)) => (k, Some(f)),
            None => (ph, None),
        };
        let v = match key {
            "now" => format_time(chrono::Local::now(), fmt)?,
            "utcnow" => format_time(chrono::Utc::now(), fmt)?,
            "hostname" => {
                let h = garret::repository::lock::hostname();
                h.split('.').next().unwrap_or(&h).to_string()
            }
            "fqdn" => garret::repository::lock::hostname(),
            "reverse-fqdn" => garret::repository::lock::hostname().rsplit('.').collect::<Vec<_>>().join("."),
            "user" => uzers::get_current_username().map(|u| u.to_string_lossy().into_owned()).unwrap_or_default(),
            "pid" => std::process::id().to_string(),
            "uuid4" => uuid4(),
            // borg's version placeholders name the program that made the archive: garret here
            "garretversion" | "borgversion" => env!("CARGO_PKG_VERSION").to_string(),
            "garretmajor" | "borgmajor" => env!("CARGO_PKG_VERSION_MAJOR").to_string(),
            "garretminor" | "borgminor" => {
                format!("{}.{}", env!("CARGO_PKG_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MINOR"))
            }
            "garretpatch" | "borgpatch" => format!(
                "{}.{}.{}",
                env!("CARGO_PKG_VERSION_MAJOR"),
                env!("CARGO_PKG_VERSION_MINOR"),
                env!("CARGO_PKG_VERSION_PATCH")
            ),
            _ => bail!(
                "unknown placeholder {{{key}}} in archive name {name:?}; known: now, utcnow, hostname, fqdn, \
                 reverse-fqdn, user, pid, uuid4, garretversion, garretmajor, garretminor, garretpatch"
            ),
        };
        out.push_str(&v);
        rest = &r[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A random (version 4) UUID, lowercase, as borg's {uuid4}.
fn uuid4() -> String {
    let mut b = [0u8; 16];
    garret::crypto::random_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn format_time<Tz: chrono::TimeZone>(t: chrono::DateTime<Tz>, fmt: Option<&str>) -> Result<String>
where
    Tz::Offset: std::fmt::Display,
{
    use std::fmt::Write;
    // Python's %f (borg, borgmatic's default archive names) is microseconds: 6 digits, where
    // chrono's %f gives 9.
    let python = fmt.map(|f| f.replace("%f", "%6f"));
    let fmt = python.as_deref().unwrap_or("%Y-%m-%dT%H:%M:%S");
    let mut s = String::new();
    write!(s, "{}", t.format(fmt)).map_err(|_| anyhow::anyhow!("invalid time format {fmt:?} in archive name"))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let l = parse("/r/x.garret::a-1").unwrap();
        assert_eq!(l.repo, PathBuf::from("/r/x.garret"));
        assert_eq!(l.archive.as_deref(), Some("a-1"));
        assert!(parse("/r").unwrap().archive.is_none());
        for remote in ["ssh://u@h/./r", "u@backup.example:repos/r::a", "nas:r", "u@h:/r"] {
            assert!(parse(remote).unwrap_err().to_string().contains("not supported yet"), "{remote}");
        }
        assert_eq!(parse("/srv/a:b::x").unwrap().repo, PathBuf::from("/srv/a:b"));
        assert_eq!(parse("./a:b").unwrap().repo, PathBuf::from("./a:b"));
    }

    #[test]
    fn placeholders() {
        let y = chrono::Local::now().format("%Y").to_string();
        assert_eq!(expand_placeholders("db-{now:%Y}").unwrap(), format!("db-{y}"));
        assert_eq!(expand_placeholders("a{{b}}").unwrap(), "a{b}");
        assert!(expand_placeholders("x-{nope}").is_err());
        assert!(expand_placeholders("x-{now").is_err());
        assert_eq!(expand_placeholders("{pid}").unwrap(), std::process::id().to_string());
        let (u, v) = (expand_placeholders("{uuid4}").unwrap(), expand_placeholders("{uuid4}").unwrap());
        assert_ne!(u, v);
        let groups: Vec<usize> = u.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{u}");
        assert_eq!(&u[14..15], "4", "version 4: {u}");
        assert!("89ab".contains(&u[19..20]), "RFC 4122 variant: {u}");
        let fqdn = expand_placeholders("{fqdn}").unwrap();
        let rev = expand_placeholders("{reverse-fqdn}").unwrap();
        assert_eq!(rev.split('.').rev().collect::<Vec<_>>().join("."), fqdn);
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(expand_placeholders("{borgversion}").unwrap(), v);
        // borgmatic's default name: Python's %f is 6 digits of microseconds
        let name = expand_placeholders("{hostname}-{now:%Y-%m-%dT%H:%M:%S.%f}").unwrap();
        let frac = name.rsplit('.').next().unwrap();
        assert!(frac.len() == 6 && frac.bytes().all(|b| b.is_ascii_digit()), "{name}");
        assert!(v.starts_with(&expand_placeholders("{garretminor}").unwrap()));
        assert_eq!(expand_placeholders("{borgpatch}").unwrap(), v.split('-').next().unwrap());
    }
}
