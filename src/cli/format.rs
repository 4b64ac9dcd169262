//! borg's `--format` strings: Python's format syntax, the part borg users write: `{key}`,
//! `{key:[[fill]align][width][.precision]}` (precision cuts text) with align `<`, `>` or `^`, `{{` and `}}`, and the keys `NL`,
//! `NEWLINE`, `LF`, `CR`, `TAB` and `SPACE` for those characters. Unknown keys are refused
//! when the string is parsed, before anything is read.

use anyhow::{bail, Result};

/// A field's value; numbers align right by default, text left (as in Python).
pub enum Value {
    Text(String),
    Num(u64),
}

enum Piece {
    Lit(String),
    Field { key: String, fill: char, align: Option<char>, width: usize, precision: Option<usize> },
}

pub struct Format {
    pieces: Vec<Piece>,
}

fn literal_key(key: &str) -> Option<&'static str> {
    match key {
        "NL" | "NEWLINE" | "LF" => Some("\n"),
        "CR" => Some("\r"),
        "TAB" => Some("\t"),
        "SPACE" => Some(" "),
        _ => None,
    }
}

impl Format {
    /// Parse `s`, allowing the field names in `known`.
    pub fn parse(s: &str, known: &[&str]) -> Result<Format> {
        let mut pieces = vec![];
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => bail!("invalid --format {s:?}: a lone '}}' (write '}}}}' for one)"),
                '{' => {
                    let mut field = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => field.push(c),
                            None => bail!("invalid --format {s:?}: '{{' without its '}}'"),
                        }
                    }
                    let (key, spec) = field.split_once(':').unwrap_or((&field, ""));
                    if let Some(l) = literal_key(key) {
                        lit.push_str(l);
                        continue;
                    }
                    if !known.contains(&key) {
                        bail!("invalid --format {s:?}: unknown key {key:?}; known keys: {}", known.join(", "));
                    }
                    let spec: Vec<char> = spec.chars().collect();
                    let is_align = |c: Option<&char>| c.is_some_and(|c| "<>^".contains(*c));
                    let (fill, align, rest) = if is_align(spec.get(1)) {
                        (spec[0], Some(spec[1]), &spec[2..])
                    } else if is_align(spec.first()) {
                        (' ', Some(spec[0]), &spec[1..])
                    } else {
                        (' ', None, &spec[..])
                    };
                    let rest: String = rest.iter().collect();
                    let (width, precision) = rest.split_once('.').map_or((rest.as_str(), None), |(w, p)| (w, Some(p)));
                    let number = |n: &str| {
                        n.parse::<usize>().map_err(|_| {
                            anyhow::anyhow!(
                                "invalid --format {s:?}: {{{field}}}: only [[fill]align][width][.precision] is supported"
                            )
                        })
                    };
                    let width = if width.is_empty() { 0 } else { number(width)? };
                    let precision = precision.map(number).transpose()?;
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Field { key: key.to_string(), fill, align, width, precision });
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Format { pieces })
    }

    /// Whether the format uses field `key`.
    pub fn uses(&self, key: &str) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Field { key: k, .. } if k == key))
    }

    pub fn render(&self, get: &dyn Fn(&str) -> Value) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Field { key, fill, align, width, precision } => {
                    let (mut text, default) = match get(key) {
                        Value::Text(t) => (t, '<'),
                        Value::Num(n) => (n.to_string(), '>'),
                    };
                    if let Some(p) = precision {
                        text = text.chars().take(*p).collect();
                    }
                    let pad = width.saturating_sub(text.chars().count());
                    let (left, right) = match align.unwrap_or(default) {
                        '<' => (0, pad),
                        '>' => (pad, 0),
                        _ => (pad / 2, pad - pad / 2),
                    };
                    out.extend(std::iter::repeat_n(*fill, left));
                    out.push_str(&text);
                    out.extend(std::iter::repeat_n(*fill, right));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: &str) -> String {
        let fmt = Format::parse(f, &["name", "size"]).unwrap();
        fmt.render(&|k| match k {
            "name" => Value::Text("ab".into()),
            _ => Value::Num(42),
        })
    }

    #[test]
    fn python_format_subset() {
        assert_eq!(render("{name}{NL}"), "ab\n");
        assert_eq!(render("{name:<5}|{size:5}|{name:5}|{size:<4}|"), "ab   |   42|ab   |42  |");
        assert_eq!(render("{name:*^6}{TAB}{{x}}{SPACE}{CR}{LF}{NEWLINE}"), "**ab**\t{x} \r\n\n");
        assert_eq!(render("plain"), "plain");
        assert_eq!(render("{name:1}"), "ab");
        assert_eq!(render("[{name:.1}][{name:>4.1}]"), "[a][   a]");
        for bad in ["{nope}", "{name", "}", "{name:.x}", "{size:d}", "{name:5.3s}"] {
            assert!(Format::parse(bad, &["name", "size"]).is_err(), "{bad}");
        }
        let f = Format::parse("{name} {size}", &["name", "size"]).unwrap();
        assert!(f.uses("size") && !f.uses("path"));
    }
}
