//! borg's `--format` strings: Python's format syntax, as borg users write it: `{key}`,
//! `{key:spec}` with Python's format-spec mini-language (`[[fill]align][sign][#][0][width]
//! [grouping][.precision][type]`: `{size:>12,}`, `{size:08}`, `{size:x}`, `{path:.20}`), a
//! strftime spec for times as Python's datetime takes (`{mtime:%Y-%m-%d}`), `{{` and `}}`, and the
//! keys `NL`, `NEWLINE`, `LF`, `CR`, `TAB` and `SPACE` for those characters. Unknown keys and
//! malformed specs are refused when the string is parsed, before anything is read.

use anyhow::{bail, Result};

/// A field's value; numbers align right by default, text and times left (as in Python).
pub enum Value {
    Text(String),
    Num(u64),
    /// A time, shown as `text` unless the spec is a strftime format.
    Time(Option<chrono::DateTime<chrono::Local>>, String),
}

/// One field's spec, parsed.
#[derive(Default)]
struct Spec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    alternate: bool,
    zero: bool,
    width: usize,
    grouping: Option<char>,
    precision: Option<usize>,
    kind: Option<char>,
    /// A spec with a '%' in it: strftime, for times.
    strftime: Option<String>,
}

enum Piece {
    Lit(String),
    Field { key: String, spec: Spec },
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

/// Parse Python's format spec (or a strftime format); `None` when it is not one.
fn parse_spec(spec: &str) -> Option<Spec> {
    if spec.contains('%') {
        let bad = chrono::format::StrftimeItems::new(spec).any(|i| matches!(i, chrono::format::Item::Error));
        return (!bad).then(|| Spec { strftime: Some(spec.to_string()), ..Default::default() });
    }
    let c: Vec<char> = spec.chars().collect();
    let mut i = 0;
    let mut s = Spec::default();
    let is_align = |c: Option<&char>| c.is_some_and(|c| "<>=^".contains(*c));
    if is_align(c.get(1)) {
        (s.fill, s.align, i) = (Some(c[0]), Some(c[1]), 2);
    } else if is_align(c.first()) {
        (s.align, i) = (Some(c[0]), 1);
    }
    if let Some(&sg) = c.get(i).filter(|c| "+- ".contains(**c)) {
        (s.sign, i) = (Some(sg), i + 1);
    }
    if c.get(i) == Some(&'#') {
        (s.alternate, i) = (true, i + 1);
    }
    if c.get(i) == Some(&'0') {
        (s.zero, i) = (true, i + 1);
    }
    let digits = |i: &mut usize| {
        let from = *i;
        while c.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        c[from..*i].iter().collect::<String>()
    };
    let w = digits(&mut i);
    s.width = if w.is_empty() { 0 } else { w.parse().ok()? };
    if let Some(&g) = c.get(i).filter(|c| ",_".contains(**c)) {
        (s.grouping, i) = (Some(g), i + 1);
    }
    if c.get(i) == Some(&'.') {
        i += 1;
        let p = digits(&mut i);
        s.precision = Some(p.parse().ok()?);
    }
    if let Some(&k) = c.get(i) {
        if !"bdoxXns".contains(k) {
            return None;
        }
        (s.kind, i) = (Some(k), i + 1);
    }
    (i == c.len()).then_some(s)
}

/// `digits` in groups of `n`, separated by `sep`.
fn group(digits: &str, sep: char, n: usize) -> String {
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % n == 0 {
            out.push(sep);
        }
        out.push(d);
    }
    out
}

impl Spec {
    /// `value` formatted as Python formats it (a time with a strftime spec as its datetime).
    /// Numeric-only parts of a spec given to text are left out rather than refused.
    fn apply(&self, value: Value) -> String {
        let (prefix, body, default_align) = match value {
            Value::Time(Some(t), _) if self.strftime.is_some() => {
                let mut out = String::new();
                use std::fmt::Write as _;
                // Checked when parsed; a time that cannot be shown so gives nothing.
                let _ = write!(out, "{}", t.format(self.strftime.as_deref().unwrap_or_default()));
                return out;
            }
            Value::Time(_, text) | Value::Text(text) => {
                let text = match self.precision {
                    Some(p) => text.chars().take(p).collect(),
                    None => text,
                };
                (String::new(), text, '<')
            }
            Value::Num(n) => {
                let (digits, radix_prefix, every) = match self.kind {
                    Some('b') => (format!("{n:b}"), "0b", 4),
                    Some('o') => (format!("{n:o}"), "0o", 4),
                    Some('x') => (format!("{n:x}"), "0x", 4),
                    Some('X') => (format!("{n:X}"), "0X", 4),
                    _ => (n.to_string(), "", 3),
                };
                let digits = match self.grouping {
                    Some(g) => group(&digits, g, every),
                    None => digits,
                };
                let mut prefix = match self.sign {
                    Some('+') => "+".to_string(),
                    Some(' ') => " ".to_string(),
                    _ => String::new(),
                };
                if self.alternate {
                    prefix.push_str(radix_prefix);
                }
                (prefix, digits, '>')
            }
        };
        // The '0' flag fills with zeros unless a fill is given, and puts a number's sign first.
        let fill = self.fill.unwrap_or(if self.zero { '0' } else { ' ' });
        let align = self.align.unwrap_or(if self.zero && default_align == '>' { '=' } else { default_align });
        let len = prefix.chars().count() + body.chars().count();
        let pad = self.width.saturating_sub(len);
        let fills = |n: usize| std::iter::repeat_n(fill, n).collect::<String>();
        match align {
            '<' => format!("{prefix}{body}{}", fills(pad)),
            '>' => format!("{}{prefix}{body}", fills(pad)),
            '=' => format!("{prefix}{}{body}", fills(pad)),
            _ => format!("{}{prefix}{body}{}", fills(pad / 2), fills(pad - pad / 2)),
        }
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
                    let Some(spec) = parse_spec(spec) else {
                        bail!(
                            "invalid --format {s:?}: {{{field}}}: use Python's [[fill]align][sign][#][0][width][,][.precision][type] \
                             (type one of b, d, o, x, X, n, s), or a strftime format such as %Y-%m-%d for times"
                        );
                    };
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Field { key: key.to_string(), spec });
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
                Piece::Field { key, spec } => out.push_str(&spec.apply(get(key))),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: &str) -> String {
        let fmt = Format::parse(f, &["name", "size", "big", "t"]).unwrap();
        fmt.render(&|k| match k {
            "name" => Value::Text("ab".into()),
            "big" => Value::Num(1234567),
            "t" => Value::Time(
                chrono::DateTime::from_timestamp(1_700_000_000, 0).map(|t| t.with_timezone(&chrono::Local)),
                "shown".into(),
            ),
            _ => Value::Num(42),
        })
    }

    /// Expected strings as Python 3.11 gives them (`format(42, '08')` and so on).
    #[test]
    fn python_format_spec() {
        assert_eq!(render("{name}{NL}"), "ab\n");
        assert_eq!(render("{name:<5}|{size:5}|{name:5}|{size:<4}|"), "ab   |   42|ab   |42  |");
        assert_eq!(render("{name:*^6}{TAB}{{x}}{SPACE}{CR}{LF}{NEWLINE}"), "**ab**\t{x} \r\n\n");
        assert_eq!(render("plain"), "plain");
        assert_eq!(render("{name:1}"), "ab");
        assert_eq!(render("[{name:.1}][{name:>4.1}][{name:5s}]"), "[a][   a][ab   ]");
        assert_eq!(
            render("{size:08}|{size:8d}|{size:<08}|{size:+}|{size:=+6}|{size: 4}"),
            "00000042|      42|42000000|+42|+   42|  42"
        );
        assert_eq!(
            render("{big:,}|{big:>12,}|{big:_}|{big:x}|{big:#X}|{big:_b}|{big:#o}"),
            "1,234,567|   1,234,567|1_234_567|12d687|0X12D687|1_0010_1101_0110_1000_0111|0o4553207"
        );
        assert_eq!(render("{name:05}|{name:>5}"), "ab000|   ab");
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap().with_timezone(&chrono::Local);
        assert_eq!(render("{t:%Y-%m-%d %H:%M}|{t}|{t:>7}"), format!("{}|shown|  shown", t.format("%Y-%m-%d %H:%M")));
        for bad in ["{nope}", "{name", "}", "{name:.x}", "{size:q}", "{size:5.3.1}", "{t:%Y-%Q}", "{size:,,}"] {
            assert!(Format::parse(bad, &["name", "size", "t"]).is_err(), "{bad}");
        }
        let f = Format::parse("{name} {size}", &["name", "size"]).unwrap();
        assert!(f.uses("size") && !f.uses("path"));
    }
}
