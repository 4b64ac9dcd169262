//! Which paths create archives and extract restores: borg's pattern syntax over archive paths
//! (no leading '/').
//!
//! `--exclude GLOB` and `--exclude-from FILE` lines default to the `fm:` style (`*` also matches
//! '/'); `--patterns-from FILE` lines default to `sh:` (`*` stays within a component, `**` crosses)
//! and carry a prefix: `+` include, `-` exclude, `!` exclude, `R` a root path to back up, `P` a
//! default style for the following lines. Styles: `fm:`, `sh:`, `pp:` (path prefix), `pf:` (full
//! path). The first pattern that matches decides; a path no pattern matches is included. An
//! excluded directory is never descended into.

use globset::{GlobBuilder, GlobMatcher};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Fm,
    Sh,
    PathPrefix,
    PathFull,
}

enum Matcher {
    Glob(GlobMatcher),
    Prefix(Vec<u8>),
    Full(Vec<u8>),
}

struct Rule {
    include: bool,
    matcher: Matcher,
}

#[derive(Default)]
pub struct Patterns {
    rules: Vec<Rule>,
    /// Roots named by `R` lines of a patterns file.
    pub roots: Vec<PathBuf>,
}

fn split_style(p: &str, default: Style) -> Result<(Style, &str), String> {
    for (prefix, style) in
        [("fm:", Style::Fm), ("sh:", Style::Sh), ("pp:", Style::PathPrefix), ("pf:", Style::PathFull)]
    {
        if let Some(rest) = p.strip_prefix(prefix) {
            return Ok((style, rest));
        }
    }
    if p.starts_with("re:") {
        return Err(format!(
            "pattern {p:?}: re: (regular expression) patterns are not supported; use sh: or fm: globs"
        ));
    }
    Ok((default, p))
}

fn matcher(style: Style, p: &str) -> Result<Matcher, String> {
    let p = p.trim_start_matches('/');
    let p = if p.len() > 1 { p.trim_end_matches('/') } else { p };
    Ok(match style {
        Style::PathPrefix => Matcher::Prefix(p.as_bytes().to_vec()),
        Style::PathFull => Matcher::Full(p.as_bytes().to_vec()),
        Style::Fm | Style::Sh => Matcher::Glob(
            GlobBuilder::new(p)
                .literal_separator(style == Style::Sh)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("invalid pattern {p:?}: {e}"))?
                .compile_matcher(),
        ),
    })
}

impl Patterns {
    pub fn add_exclude(&mut self, pattern: &str) -> Result<(), String> {
        let (style, p) = split_style(pattern, Style::Fm)?;
        self.rules.push(Rule { include: false, matcher: matcher(style, p)? });
        Ok(())
    }

    /// Lines of an `--exclude-from` file: one `fm:` pattern per line, `#` comments.
    pub fn add_exclude_file(&mut self, text: &str) -> Result<(), String> {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            self.add_exclude(line)?;
        }
        Ok(())
    }

    /// Lines of a `--patterns-from` file.
    pub fn add_patterns_file(&mut self, text: &str) -> Result<(), String> {
        let mut default = Style::Sh;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (kind, rest) = line.split_at(1);
            let rest = rest.trim_start();
            match kind {
                "+" | "-" | "!" => {
                    let (style, p) = split_style(rest, default)?;
                    self.rules.push(Rule { include: kind == "+", matcher: matcher(style, p)? });
                }
                "R" => self.roots.push(PathBuf::from(rest)),
                "P" => {
                    default = match rest {
                        "fm" => Style::Fm,
                        "sh" => Style::Sh,
                        "pp" => Style::PathPrefix,
                        "pf" => Style::PathFull,
                        _ => return Err(format!("patterns file: unknown style {rest:?} in line {line:?}")),
                    }
                }
                _ => return Err(format!("patterns file: line {line:?} must start with +, -, !, R or P")),
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether the archive path is excluded.
    /// Excluded by a pattern, itself or through an excluded parent directory (extract,
    /// export-tar: archive paths, no walk that could prune directories).
    pub fn excludes_path_or_parent(&self, path: &[u8]) -> bool {
        if self.is_empty() {
            return false;
        }
        let mut end = 0;
        while end <= path.len() {
            let next = path[end..].iter().position(|&b| b == b'/').map(|i| end + i).unwrap_or(path.len());
            if self.is_excluded(&path[..next]) {
                return true;
            }
            end = next + 1;
        }
        false
    }

    pub fn is_excluded(&self, path: &[u8]) -> bool {
        for r in &self.rules {
            let hit = match &r.matcher {
                Matcher::Glob(g) => g.is_match(Path::new(OsStr::from_bytes(path))),
                Matcher::Prefix(p) => {
                    p.is_empty() || path == &p[..] || (path.starts_with(p) && path.get(p.len()) == Some(&b'/'))
                }
                Matcher::Full(p) => path == &p[..],
            };
            if hit {
                return !r.include;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_globs_match_dirs_anywhere() {
        let mut p = Patterns::default();
        p.add_exclude("**/pgdata").unwrap();
        p.add_exclude("*.tmp").unwrap();
        assert!(p.is_excluded(b"store/projects/pgdata"));
        assert!(p.is_excluded(b"pgdata"));
        assert!(!p.is_excluded(b"store/projects/pgdata2"));
        assert!(p.is_excluded(b"a/b/c.tmp"), "fm: * crosses '/'");
        assert!(p.add_exclude("a[").is_err());
        assert!(p.add_exclude("re:^x").is_err());
    }

    #[test]
    fn patterns_file_first_match_wins() {
        let mut p = Patterns::default();
        p.add_patterns_file("# comment\nR /home\n+ /home/susan\n- /home/*\n- *.o\n+ pp:/srv/keep\n! /srv\n").unwrap();
        assert_eq!(p.roots, vec![PathBuf::from("/home")]);
        assert!(!p.is_excluded(b"home/susan"));
        assert!(p.is_excluded(b"home/bob"));
        assert!(!p.is_excluded(b"home"));
        assert!(p.is_excluded(b"x.o"));
        assert!(!p.is_excluded(b"a/x.o"), "sh: * stays within one component");
        assert!(!p.is_excluded(b"srv/keep/x"));
        assert!(p.is_excluded(b"srv"));
        assert!(p.add_patterns_file("? x").is_err());
    }
}
