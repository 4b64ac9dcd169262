//! borg's archive filters (`-P/--prefix`, `-a/--glob-archives`, `--sort-by`, `--first`,
//! `--last`): which archives of the manifest a command looks at, in which order.

use anyhow::{bail, Result};
use garret::repository::manifest::ArchiveEntry;

/// The glob an archive name must match, from `--glob-archives` or `--prefix` (at most one).
/// Both take the archive-name placeholders first, as borg's do (borgmatic prunes with
/// `--glob-archives '{hostname}-*'`).
pub fn archive_glob(glob: Option<&str>, prefix: Option<&str>) -> Result<Option<globset::GlobMatcher>> {
    let expand = super::location::expand_placeholders;
    let pattern = match (glob, prefix) {
        (Some(_), Some(_)) => bail!("--glob-archives and --prefix cannot be combined"),
        (Some(g), None) => expand(g)?,
        (None, Some(p)) => format!("{}*", globset::escape(&expand(p)?)),
        (None, None) => return Ok(None),
    };
    Ok(Some(
        globset::Glob::new(&pattern)
            .map_err(|e| anyhow::anyhow!("invalid --glob-archives {pattern:?}: {e}"))?
            .compile_matcher(),
    ))
}

#[derive(clap::Args, Debug, Default)]
pub struct ArchiveFilter {
    /// Only consider archive names starting with this prefix (attic/borg 1.x)
    #[arg(short = 'P', long)]
    pub prefix: Option<String>,
    /// Only consider archive names matching GLOB
    #[arg(short = 'a', long, value_name = "GLOB")]
    pub glob_archives: Option<String>,
    /// Sort archives by these comma-separated keys: timestamp, name (or archive), id
    #[arg(long, value_name = "KEYS", default_value = "timestamp")]
    pub sort_by: String,
    /// Only the first N archives (after sorting)
    #[arg(long, value_name = "N", conflicts_with = "last")]
    pub first: Option<usize>,
    /// Only the last N archives (after sorting)
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
}

#[derive(Clone, Copy)]
enum Key {
    Timestamp,
    Name,
    Id,
}

impl ArchiveFilter {
    /// Whether any option narrows or reorders the archives.
    pub fn is_set(&self) -> bool {
        self.prefix.is_some()
            || self.glob_archives.is_some()
            || self.first.is_some()
            || self.last.is_some()
            || self.sort_by != "timestamp"
    }

    /// The selected archives, in order. Archive times are compared as instants, so archives
    /// made under different UTC offsets sort correctly.
    pub fn select<'a>(&self, archives: &'a [ArchiveEntry]) -> Result<Vec<&'a ArchiveEntry>> {
        let keys = self
            .sort_by
            .split(',')
            .map(|k| match k.trim() {
                "timestamp" => Ok(Key::Timestamp),
                "name" | "archive" => Ok(Key::Name),
                "id" => Ok(Key::Id),
                other => bail!("invalid --sort-by key {other:?}: use timestamp, name or id, separated by commas"),
            })
            .collect::<Result<Vec<_>>>()?;
        let glob = archive_glob(self.glob_archives.as_deref(), self.prefix.as_deref())?;
        // Each archive's time parsed once, not once per comparison.
        let mut v: Vec<(Option<chrono::DateTime<chrono::FixedOffset>>, &ArchiveEntry)> = archives
            .iter()
            .filter(|e| glob.as_ref().is_none_or(|g| g.is_match(&e.name)))
            .map(|e| (chrono::DateTime::parse_from_rfc3339(&e.time).ok(), e))
            .collect();
        v.sort_by(|(ta, a), (tb, b)| {
            keys.iter()
                .map(|k| match k {
                    Key::Timestamp => ta.cmp(tb),
                    Key::Name => a.name.cmp(&b.name),
                    Key::Id => a.id.0.cmp(&b.id.0),
                })
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut v: Vec<&ArchiveEntry> = v.into_iter().map(|(_, e)| e).collect();
        if let Some(n) = self.first {
            v.truncate(n);
        }
        if let Some(n) = self.last {
            v.drain(..v.len().saturating_sub(n));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use garret::id::Id;

    fn entry(name: &str, time: &str, id: u8) -> ArchiveEntry {
        ArchiveEntry {
            name: name.into(),
            id: Id([id; 32]),
            time: time.into(),
            hostname: "h".into(),
            username: "u".into(),
        }
    }

    fn names(f: &ArchiveFilter, v: &[ArchiveEntry]) -> Vec<String> {
        f.select(v).unwrap().iter().map(|e| e.name.clone()).collect()
    }

    #[test]
    fn filters_sort_and_cut_like_borg() {
        let v = vec![
            entry("db-2", "2026-11-24T03:00:00+01:00", 3),
            entry("projects-1", "2026-11-23T01:00:00+00:00", 9),
            // earlier than db-2 as an instant, though later on the wall clock
            entry("db-1", "2026-11-24T03:30:00+02:00", 1),
            entry("projects-2", "2026-11-25T01:00:00+00:00", 2),
        ];
        let all = ArchiveFilter { sort_by: "timestamp".into(), ..Default::default() };
        assert!(!all.is_set());
        assert_eq!(names(&all, &v), ["projects-1", "db-1", "db-2", "projects-2"]);
        let f = ArchiveFilter { prefix: Some("db-".into()), last: Some(1), ..all_with("timestamp") };
        assert!(f.is_set());
        assert_eq!(names(&f, &v), ["db-2"]);
        let f = ArchiveFilter { glob_archives: Some("projects-*".into()), first: Some(1), ..all_with("timestamp") };
        assert_eq!(names(&f, &v), ["projects-1"]);
        assert_eq!(names(&all_with("name"), &v), ["db-1", "db-2", "projects-1", "projects-2"]);
        assert_eq!(names(&all_with("archive"), &v), names(&all_with("name"), &v));
        assert_eq!(names(&all_with("id"), &v), ["db-1", "projects-2", "db-2", "projects-1"]);
        let f = ArchiveFilter { last: Some(10), ..all_with("name") };
        assert_eq!(names(&f, &v).len(), 4);
        assert!(all_with("size").select(&v).unwrap_err().to_string().contains("--sort-by"));
        let f = ArchiveFilter { prefix: Some("a".into()), glob_archives: Some("b".into()), ..all_with("name") };
        assert!(f.select(&v).is_err());
        // placeholders, as borg expands them in these options
        let host = super::super::location::expand_placeholders("{hostname}").unwrap();
        let w = vec![
            entry(&format!("{host}-1"), "2026-11-24T03:00:00+00:00", 1),
            entry("other-1", "2026-11-24T04:00:00+00:00", 2),
        ];
        let f = ArchiveFilter { glob_archives: Some("{hostname}-*".into()), ..all_with("timestamp") };
        assert_eq!(names(&f, &w), [format!("{host}-1")]);
        let f = ArchiveFilter { prefix: Some("{hostname}-".into()), ..all_with("timestamp") };
        assert_eq!(names(&f, &w), [format!("{host}-1")]);
    }

    fn all_with(sort_by: &str) -> ArchiveFilter {
        ArchiveFilter { sort_by: sort_by.into(), ..Default::default() }
    }
}
