//! Retention: which archives `prune` keeps, with BorgBackup 1.2's exact semantics, and applying
//! that decision to the repository.
//!
//! [`select`] is a pure function over (archives, policy, now), so the rules can be tested against
//! borg's behaviour case by case. Semantics (borg 1.2 `prune_within`/`prune_split`):
//! - archives are considered newest first, by start time;
//! - `--keep-within` keeps every archive newer than now minus the interval;
//! - then each period rule in the order secondly (= `--keep-last`), minutely, hourly, daily,
//!   weekly (ISO weeks), monthly, yearly keeps the newest archive of each period (periods in local
//!   time) that no earlier rule kept, until it has kept N (N = -1: no limit); an archive already
//!   kept by an earlier rule does not count towards N but still "uses up" its period;
//! - if a rule ran out of archives before keeping N, it also keeps the oldest archive
//!   (rule name suffixed `[oldest]`).

use crate::error::{Error, Result};
use crate::repository::{ArchiveEntry, Repository};
use chrono::{DateTime, FixedOffset, Local, Utc};

/// The period rules in the order borg applies them, with their strftime period keys.
pub const RULES: [(&str, &str); 7] = [
    ("secondly", "%Y-%m-%d %H:%M:%S"),
    ("minutely", "%Y-%m-%d %H:%M"),
    ("hourly", "%Y-%m-%d %H"),
    ("daily", "%Y-%m-%d"),
    ("weekly", "%G-%V"),
    ("monthly", "%Y-%m"),
    ("yearly", "%Y"),
];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `--keep-within`, in hours.
    pub within_hours: Option<u64>,
    /// N per rule of [`RULES`] (index 0 = secondly = `--keep-last`).
    pub keep: [Option<i64>; 7],
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.within_hours.is_none() && self.keep.iter().all(|k| k.is_none())
    }
}

/// Parse a borg interval: a positive integer and a unit H (hours), d, w, m (31 days), y (365 days).
pub fn parse_interval(s: &str) -> std::result::Result<u64, String> {
    let unit = s.chars().last().ok_or_else(|| "empty interval: use e.g. 2d, 3w, 6m, 1y".to_string())?;
    let mult = match unit {
        'H' => 1,
        'd' => 24,
        'w' => 24 * 7,
        'm' => 24 * 31,
        'y' => 24 * 365,
        _ => return Err(format!("unexpected interval time unit {unit:?} in {s:?}: expected one of H, d, w, m, y")),
    };
    let n: u64 = s[..s.len() - unit.len_utf8()]
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("unexpected interval number in {s:?}: expected an integer greater than 0"))?;
    Ok(n * mult)
}

/// An archive as prune sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub name: String,
    pub time: DateTime<FixedOffset>,
}

/// Why an archive is kept: the rule and its running count (borg's `daily #3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub rule: String,
    pub n: usize,
}

/// For each candidate (same order as given), `Some(reason)` if kept, `None` if pruned.
pub fn select(candidates: &[Candidate], policy: &Policy, now: DateTime<Utc>) -> Vec<Option<Kept>> {
    // Newest first; a stable sort keeps the given order among equal times.
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| candidates[b].time.cmp(&candidates[a].time));
    let mut kept: Vec<Option<Kept>> = vec![None; candidates.len()];
    if let Some(h) = policy.within_hours {
        let cutoff = now - chrono::Duration::hours(h as i64);
        let mut count = 0;
        for &i in &order {
            if candidates[i].time > cutoff {
                count += 1;
                kept[i] = Some(Kept { rule: "within".into(), n: count });
            }
        }
    }
    for (r, (rule, pattern)) in RULES.iter().enumerate() {
        let Some(n) = policy.keep[r] else { continue };
        if n == 0 {
            continue;
        }
        let mut last: Option<String> = None;
        let mut count: i64 = 0;
        let mut reached = false;
        for &i in &order {
            let period = candidates[i].time.with_timezone(&Local).format(pattern).to_string();
            if last.as_deref() != Some(&period) {
                last = Some(period);
                if kept[i].is_none() {
                    count += 1;
                    kept[i] = Some(Kept { rule: rule.to_string(), n: count as usize });
                    if count == n {
                        reached = true;
                        break;
                    }
                }
            }
        }
        // Borg keeps the oldest archive when a rule could not keep N (not for N = -1).
        if !reached && n > 0 && count < n {
            if let Some(&oldest) = order.last() {
                if kept[oldest].is_none() {
                    count += 1;
                    kept[oldest] = Some(Kept { rule: format!("{rule}[oldest]"), n: count as usize });
                }
            }
        }
    }
    kept
}

/// The archives of the manifest matching `glob` (all when `None`), as candidates.
pub fn candidates(repo: &Repository, glob: Option<&globset::GlobMatcher>) -> Result<Vec<(ArchiveEntry, Candidate)>> {
    let mut out = vec![];
    for e in &repo.manifest().archives {
        if glob.is_some_and(|g| !g.is_match(&e.name)) {
            continue;
        }
        let time = DateTime::parse_from_rfc3339(&e.time).map_err(|err| {
            Error::malformed(format!("archive {:?}", e.name), format!("start time {:?}: {err}", e.time))
        })?;
        out.push((e.clone(), Candidate { name: e.name.clone(), time }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Archives at the given local times (y, m, d, h, min), named by position.
    fn archives(times: &[(i32, u32, u32, u32, u32)]) -> Vec<Candidate> {
        times
            .iter()
            .enumerate()
            .map(|(i, &(y, mo, d, h, mi))| Candidate {
                name: format!("a{i:02}"),
                time: Local.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap().fixed_offset(),
            })
            .collect()
    }

    fn kept_names(c: &[Candidate], p: &Policy, now: DateTime<Utc>) -> Vec<String> {
        let k = select(c, p, now);
        let mut v: Vec<String> = c.iter().zip(&k).filter(|(_, k)| k.is_some()).map(|(c, _)| c.name.clone()).collect();
        v.sort();
        v
    }

    fn policy(rule: &str, n: i64) -> Policy {
        let mut p = Policy::default();
        let i = RULES.iter().position(|(r, _)| *r == rule).unwrap();
        p.keep[i] = Some(n);
        p
    }

    fn now() -> DateTime<Utc> {
        Local.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).single().unwrap().with_timezone(&Utc)
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("2d"), Ok(48));
        assert_eq!(parse_interval("3w"), Ok(504));
        assert_eq!(parse_interval("6m"), Ok(6 * 744));
        assert_eq!(parse_interval("1y"), Ok(8760));
        assert_eq!(parse_interval("12H"), Ok(12));
        assert!(parse_interval("2x").is_err());
        assert!(parse_interval("0d").is_err());
        assert!(parse_interval("-1d").is_err());
        assert!(parse_interval("d").is_err());
        assert!(parse_interval("").is_err());
    }

    #[test]
    fn keep_daily_takes_newest_of_each_day() {
        // two archives on Nov 20, one each on 21..23
        let c = archives(&[
            (2026, 11, 20, 1, 0),
            (2026, 11, 20, 23, 0),
            (2026, 11, 21, 3, 0),
            (2026, 11, 22, 3, 0),
            (2026, 11, 23, 3, 0),
        ]);
        assert_eq!(kept_names(&c, &policy("daily", 3), now()), vec!["a02", "a03", "a04"]);
        assert_eq!(kept_names(&c, &policy("daily", 4), now()), vec!["a01", "a02", "a03", "a04"]);
        // 5 wanted, only 4 days: the oldest archive is kept too ("daily[oldest]")
        assert_eq!(kept_names(&c, &policy("daily", 5), now()), vec!["a00", "a01", "a02", "a03", "a04"]);
        let k = select(&c, &policy("daily", 5), now());
        assert_eq!(k[0], Some(Kept { rule: "daily[oldest]".into(), n: 5 }));
        assert_eq!(k[4], Some(Kept { rule: "daily".into(), n: 1 }));
        // -1: every day, but no extra oldest
        assert_eq!(kept_names(&c, &policy("daily", -1), now()), vec!["a01", "a02", "a03", "a04"]);
        assert!(kept_names(&c, &policy("daily", 0), now()).is_empty());
    }

    #[test]
    fn keep_last_is_secondly() {
        let c = archives(&[(2026, 11, 20, 1, 0), (2026, 11, 21, 1, 0), (2026, 11, 22, 1, 0)]);
        assert_eq!(kept_names(&c, &policy("secondly", 2), now()), vec!["a01", "a02"]);
        assert_eq!(kept_names(&c, &policy("secondly", 1), now()), vec!["a02"]);
    }

    #[test]
    fn weekly_uses_iso_weeks() {
        // 2026-01-01 is a Thursday: ISO week 2026-W01 runs Dec 29 2025 .. Jan 4 2026.
        let c = archives(&[(2025, 12, 28, 12, 0), (2025, 12, 29, 12, 0), (2026, 1, 4, 12, 0), (2026, 1, 5, 12, 0)]);
        // weeks: a00 2025-W52, a01+a02 2026-W01, a03 2026-W02
        assert_eq!(kept_names(&c, &policy("weekly", -1), now()), vec!["a00", "a02", "a03"]);
    }

    #[test]
    fn earlier_rules_take_archives_but_periods_still_advance() {
        // daily 2 then weekly 2 over 10 consecutive days (Mon Nov 9 .. Wed Nov 18 2026)
        let c: Vec<_> = archives(&(9..=18).map(|d| (2026, 11, d, 3, 0)).collect::<Vec<_>>());
        let mut p = policy("daily", 2);
        p.keep[4] = Some(2);
        let k = select(&c, &p, now());
        // daily: Nov 18, Nov 17. weekly: week of Nov 16-22 -> newest is Nov 18 (already kept),
        // so its period is used up; next week Nov 9-15 -> Nov 15. Then list ends: oldest Nov 9.
        let kept: Vec<_> =
            c.iter().zip(&k).filter_map(|(c, k)| k.as_ref().map(|k| (c.name.clone(), k.rule.clone()))).collect();
        assert_eq!(
            kept,
            vec![
                ("a00".to_string(), "weekly[oldest]".to_string()),
                ("a06".into(), "weekly".into()),
                ("a08".into(), "daily".into()),
                ("a09".into(), "daily".into())
            ]
        );
    }

    #[test]
    fn within_and_combined_rules() {
        let c = archives(&[
            (2026, 1, 15, 3, 0),
            (2026, 6, 15, 3, 0),
            (2026, 11, 1, 3, 0),
            (2026, 11, 22, 3, 0),
            (2026, 11, 23, 3, 0),
            (2026, 11, 24, 3, 0),
        ]);
        let mut p = Policy { within_hours: Some(parse_interval("2d").unwrap()), ..Default::default() };
        assert_eq!(kept_names(&c, &p, now()), vec!["a04", "a05"]);
        p.keep[5] = Some(3); // monthly 3: Nov (a05 already within -> period used), Jun, Jan
        let k = select(&c, &p, now());
        assert_eq!(k[4].as_ref().unwrap().rule, "within");
        assert_eq!(k[1], Some(Kept { rule: "monthly".into(), n: 1 }));
        assert_eq!(k[0], Some(Kept { rule: "monthly".into(), n: 2 }));
        assert!(k[2].is_none() && k[3].is_none());
        // gaps of months with yearly
        let mut p = policy("yearly", 2);
        p.keep[5] = Some(1);
        assert_eq!(kept_names(&c, &p, now()), vec!["a00", "a05"]);
    }

    #[test]
    fn empty_and_single() {
        assert!(select(&[], &policy("daily", 7), now()).is_empty());
        let c = archives(&[(2026, 11, 1, 3, 0)]);
        assert_eq!(select(&c, &policy("daily", 7), now())[0], Some(Kept { rule: "daily".into(), n: 1 }));
    }
}
