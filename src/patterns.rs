//! Which paths create archives and extract restores: borg's pattern syntax over archive paths
//! (no leading '/').
//!
//! `--exclude GLOB` and `--exclude-from FILE` lines default to the `fm:` style (`*` also matches
//! '/'); `--pattern P` values and `--patterns-from FILE` lines default to `sh:` (`*` stays within a
//! component, `**` crosses) and carry a prefix: `+` include, `-` exclude, `!` exclude and do not
//! descend, `R` a root path to back up, `P` a default style for the following patterns. Styles:
//! `fm:`, `sh:`, `pp:` (path prefix), `pf:` (full path), `re:` (a regular expression found anywhere
//! in the path, as Python's `re.search`; Rust's `regex` syntax, which has no look-around or
//! back-references).
//!
//! As borg's: a pattern other than `pf:` matches a path and everything below it, and the first
//! pattern that matches a path or one of its parent directories decides; a path no pattern matches
//! is included. `--exclude` patterns and `!` lines stop the walk at a directory they match; a
//! directory matched by a `-` line is not stored, but is still walked when include patterns could
//! select something below it (`- home/*` after `+ pf:home/bob/notes.txt`).

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
    Regex,
}

#[derive(Clone)]
enum Matcher {
    Glob(GlobMatcher),
    Prefix(Vec<u8>),
    Full(Vec<u8>),
    Regex(regex::bytes::Regex),
}

/// What the first matching pattern says about a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Include,
    /// Not stored; a directory is still walked (a `-` line).
    Exclude,
    /// Not stored and, if a directory, not walked (`--exclude`, a `!` line).
    ExcludeNoRecurse,
}

#[derive(Clone)]
struct Rule {
    decision: Decision,
    matcher: Matcher,
}

#[derive(Clone)]
pub struct Patterns {
    rules: Vec<Rule>,
    /// Roots named by `R` lines.
    pub roots: Vec<PathBuf>,
    /// The style of `--pattern` values without one (`P` values change it).
    default_style: Style,
}

impl Default for Patterns {
    fn default() -> Self {
        Patterns { rules: Vec::new(), roots: Vec::new(), default_style: Style::Sh }
    }
}

fn split_style(p: &str, default: Style) -> Result<(Style, &str), String> {
    for (prefix, style) in [
        ("fm:", Style::Fm),
        ("sh:", Style::Sh),
        ("pp:", Style::PathPrefix),
        ("pf:", Style::PathFull),
        ("re:", Style::Regex),
    ] {
        if let Some(rest) = p.strip_prefix(prefix) {
            return Ok((style, rest));
        }
    }
    Ok((default, p))
}

fn matcher(style: Style, p: &str) -> Result<Matcher, String> {
    // Paths without their leading '/' and trailing '/' (but a lone "/"); regular expressions are
    // taken as written: archive paths have no leading '/', so `^home/` is how to anchor one.
    let trimmed = || {
        let p = p.trim_start_matches('/');
        if p.len() > 1 {
            p.trim_end_matches('/')
        } else {
            p
        }
    };
    Ok(match style {
        Style::Regex => Matcher::Regex(regex::bytes::Regex::new(p).map_err(|e| {
            let why = e.to_string().lines().last().unwrap_or_default().trim().to_string();
            format!(
                "invalid regular expression {p:?} ({why}); Rust regex syntax, without look-around or back-references"
            )
        })?),
        Style::PathPrefix => Matcher::Prefix(trimmed().as_bytes().to_vec()),
        Style::PathFull => Matcher::Full(trimmed().as_bytes().to_vec()),
        Style::Fm | Style::Sh => {
            let p = trimmed();
            Matcher::Glob(
                GlobBuilder::new(p)
                    .literal_separator(style == Style::Sh)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| format!("invalid pattern {p:?}: {e}"))?
                    .compile_matcher(),
            )
        }
    })
}

impl Matcher {
    /// Whether this pattern matches `path` itself (not its parents).
    fn hits(&self, path: &[u8]) -> bool {
        match self {
            Matcher::Glob(g) => g.is_match(Path::new(OsStr::from_bytes(path))),
            Matcher::Prefix(p) => {
                p.is_empty() || path == &p[..] || (path.starts_with(p) && path.get(p.len()) == Some(&b'/'))
            }
            Matcher::Full(p) => path == &p[..],
            Matcher::Regex(r) => r.is_match(path),
        }
    }

    /// Whether this pattern matches `path` or, unless it is a `pf:` pattern, one of its parents.
    fn hits_or_parent(&self, path: &[u8]) -> bool {
        if self.hits(path) {
            return true;
        }
        if !matches!(self, Matcher::Glob(_) | Matcher::Regex(_)) {
            return false; // a prefix already covers what lies below; a full path only itself
        }
        path.iter().enumerate().any(|(i, &b)| b == b'/' && self.hits(&path[..i]))
    }
}

fn parse_style_name(name: &str) -> Result<Style, String> {
    Ok(match name {
        "fm" => Style::Fm,
        "sh" => Style::Sh,
        "pp" => Style::PathPrefix,
        "pf" => Style::PathFull,
        "re" => Style::Regex,
        _ => return Err(format!("unknown pattern style {name:?}: use fm, sh, pp, pf or re")),
    })
}

impl Patterns {
    pub fn add_exclude(&mut self, pattern: &str) -> Result<(), String> {
        let (style, p) = split_style(pattern, Style::Fm)?;
        self.rules.push(Rule { decision: Decision::ExcludeNoRecurse, matcher: matcher(style, p)? });
        Ok(())
    }

    /// Lines of an `--exclude-from` file: one `fm:` pattern per line, `#` comments.
    pub fn add_exclude_file(&mut self, text: &str) -> Result<(), String> {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            self.add_exclude(line)?;
        }
        Ok(())
    }

    /// One `--pattern` value: a patterns-file line (`+ sh:home/*`, `R /srv`, `P fm`).
    pub fn add_pattern(&mut self, line: &str) -> Result<(), String> {
        let mut style = self.default_style;
        let r = self.add_line(line.trim(), &mut style);
        self.default_style = style;
        r
    }

    /// Lines of a `--patterns-from` file (each file starts with the `sh:` style).
    pub fn add_patterns_file(&mut self, text: &str) -> Result<(), String> {
        let mut style = Style::Sh;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            self.add_line(line, &mut style).map_err(|e| format!("patterns file: {e}"))?;
        }
        Ok(())
    }

    fn add_line(&mut self, line: &str, default: &mut Style) -> Result<(), String> {
        let Some(kind) = line.chars().next() else { return Err("empty pattern".into()) };
        let rest = line[kind.len_utf8()..].trim_start();
        if rest.is_empty() && "+-!RP".contains(kind) {
            let example = match kind {
                'P' => "P fm",
                'R' => "R /srv",
                _ => "- home/*/.cache",
            };
            return Err(format!("pattern {line:?} has nothing after its {kind:?} (e.g. \"{example}\")"));
        }
        let decision = match kind {
            '+' => Decision::Include,
            '-' => Decision::Exclude,
            '!' => Decision::ExcludeNoRecurse,
            'R' => {
                self.roots.push(PathBuf::from(rest));
                return Ok(());
            }
            'P' => {
                *default = parse_style_name(rest)?;
                return Ok(());
            }
            _ => return Err(format!("pattern {line:?} must start with +, -, !, R or P (e.g. \"- sh:**/.cache\")")),
        };
        let (style, p) = split_style(rest, *default)?;
        self.rules.push(Rule { decision, matcher: matcher(style, p)? });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether some pattern includes paths (only then can a walk find anything below a
    /// directory a `-` line excludes).
    pub fn has_includes(&self) -> bool {
        self.rules.iter().any(|r| r.decision == Decision::Include)
    }

    /// The verdict of the first pattern that matches the archive path or one of its parents.
    pub fn decide(&self, path: &[u8]) -> Decision {
        self.decide_at(path).0
    }

    /// [`Patterns::decide`], with the index of the deciding pattern (`None`: no pattern matched)
    /// for deciding the paths below this one with [`Patterns::decide_child`].
    pub fn decide_at(&self, path: &[u8]) -> (Decision, Option<usize>) {
        match self.rules.iter().position(|r| r.matcher.hits_or_parent(path)) {
            Some(i) => (self.rules[i].decision, Some(i)),
            None => (Decision::Include, None),
        }
    }

    /// [`Patterns::decide_at`] for a path whose parent directory was decided by pattern `parent`:
    /// only the patterns before that one need testing, and only against the path itself (what
    /// matches a parent was tested with the parent). A walk's cost per entry.
    pub fn decide_child(&self, path: &[u8], parent: Option<usize>) -> (Decision, Option<usize>) {
        let end = parent.unwrap_or(self.rules.len());
        match self.rules[..end].iter().position(|r| r.matcher.hits(path)) {
            Some(i) => (self.rules[i].decision, Some(i)),
            None => (parent.map_or(Decision::Include, |j| self.rules[j].decision), parent),
        }
    }

    /// Whether the archive path is left out.
    pub fn is_excluded(&self, path: &[u8]) -> bool {
        self.decide(path) != Decision::Include
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A walk deciding each component of `paths` from its parent's verdict agrees with deciding
    /// the path whole.
    fn walk_agrees(p: &Patterns, paths: &[&str]) {
        for path in paths {
            let comps: Vec<&str> = path.split('/').collect();
            let (_, mut rule) = p.decide_at(comps[0].as_bytes());
            for n in 2..=comps.len() {
                let sub = comps[..n].join("/");
                let (d, r) = p.decide_child(sub.as_bytes(), rule);
                assert_eq!(d, p.decide(sub.as_bytes()), "{sub}");
                rule = r;
            }
        }
    }

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
        assert!(p.add_exclude("re:(?<=x)y").unwrap_err().contains("look-around"));
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

    /// borg's example patterns file: a `-` directory is walked for includes below it, a `!`
    /// directory is not, and an include covers what lies below it.
    #[test]
    fn dash_excludes_are_walked_bang_excludes_are_not() {
        let mut p = Patterns::default();
        p.add_patterns_file(
            "P sh\nR /\n- /home/*/.cache\n+ /home/susan\n+ pf:/home/bobby/specialfile.txt\n- /home/*\n! /proc\n",
        )
        .unwrap();
        assert!(p.has_includes());
        assert_eq!(p.decide(b"home/bobby"), Decision::Exclude);
        assert_eq!(p.decide(b"home/bobby/specialfile.txt"), Decision::Include);
        assert_eq!(p.decide(b"home/bobby/other.txt"), Decision::Exclude, "- home/* covers what is below");
        assert_eq!(p.decide(b"home/bobby/specialfile.txt/x"), Decision::Exclude, "pf: is one path only");
        assert_eq!(p.decide(b"home/susan/.cache/x"), Decision::Exclude, "the earlier line wins");
        assert_eq!(p.decide(b"home/susan/notes/a.txt"), Decision::Include);
        assert_eq!(p.decide(b"proc"), Decision::ExcludeNoRecurse);
        assert_eq!(p.decide(b"proc/1/fd"), Decision::ExcludeNoRecurse);
        assert_eq!(p.decide(b"etc/hosts"), Decision::Include);
        walk_agrees(&p, &["home/bobby/specialfile.txt", "home/bobby/x/y", "home/susan/.cache/x", "proc/1", "etc/a"]);
        let mut e = Patterns::default();
        e.add_exclude("home/*").unwrap();
        assert_eq!(e.decide(b"home/bob/x"), Decision::ExcludeNoRecurse);
        assert!(!e.has_includes());
    }

    #[test]
    fn single_patterns_share_a_default_style() {
        let mut p = Patterns::default();
        p.add_pattern("- *.o").unwrap();
        assert!(!p.is_excluded(b"a/x.o"), "sh: by default");
        p.add_pattern("P fm").unwrap();
        p.add_pattern("-*.tmp").unwrap();
        assert!(p.is_excluded(b"a/x.tmp"), "fm: after P fm");
        p.add_pattern("R /srv").unwrap();
        assert_eq!(p.roots, vec![PathBuf::from("/srv")]);
        for bad in ["home", "P xx", "- re:(a", "+ a[", "R ", "-", "+  "] {
            assert!(p.add_pattern(bad).is_err(), "{bad}");
        }
    }

    /// `re:` as borg's: a search anywhere in the path (no leading '/'), unanchored unless the
    /// expression anchors it; like the globs, a match covers what lies below, and a walk deciding
    /// from the parent's verdict agrees with deciding the whole path.
    #[test]
    fn regular_expressions_search_the_path() {
        let mut p = Patterns::default();
        p.add_exclude(r"re:\.(tmp|bak)$").unwrap();
        p.add_exclude("re:^var/cache").unwrap();
        assert!(p.is_excluded(b"home/bob/a.tmp"));
        assert!(p.is_excluded(b"a.bak"));
        assert!(!p.is_excluded(b"home/bob/a.tmp.txt"), "anchored at the end");
        assert!(p.is_excluded(b"var/cache/apt/x"), "below a matching directory");
        assert!(!p.is_excluded(b"srv/var/cache"), "anchored at the start of the archive path");
        let mut q = Patterns::default();
        q.add_patterns_file("P re\n+ ^home/[a-z]+/keep\n- ^home/\n").unwrap();
        assert_eq!(q.decide(b"home/bob/keep/x"), Decision::Include);
        assert_eq!(q.decide(b"home/bob/other"), Decision::Exclude);
        assert_eq!(q.decide(b"etc/home/x"), Decision::Include);
        walk_agrees(&q, &["home/bob/keep/x/y", "home/bob/other/z", "etc/home/x"]);
        let err = Patterns::default().add_exclude("re:(?<=a)b").unwrap_err();
        assert!(err.contains("invalid regular expression") && err.contains("look-around"), "{err}");
    }
}
