//! The printable forms of a key file, for a recovery kit. The paper form: hex in short numbered
//! lines, each with a checksum, so a typo is caught on the line where it was made. The HTML form
//! (`key export --qr-html`): a page to print with the key file as a QR code and the paper form.
//!
//! ```text
//! garret key v1, repository <id>
//! 001: 7b22 7665 7273 696f 6e22 3a31 2c22 7265 706f - 3fa1
//! ```
//!
//! The checksum is the first two bytes of BLAKE3(line number (u16 LE) || line bytes), in hex.

use crate::error::{Error, Result};

const PER_LINE: usize = 18;

fn checksum(n: u16, data: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&n.to_le_bytes());
    h.update(data);
    hex::encode(&h.finalize().as_bytes()[..2])
}

pub fn encode(bytes: &[u8], repo_id: &str) -> String {
    let mut out = format!("garret key v1, repository {repo_id}\n");
    for (i, line) in bytes.chunks(PER_LINE).enumerate() {
        let n = (i + 1) as u16;
        let groups: Vec<String> = line.chunks(2).map(hex::encode).collect();
        out.push_str(&format!("{n:03}: {} - {}\n", groups.join(" "), checksum(n, line)));
    }
    out
}

/// A printable HTML page: the key file as a QR code (scanned into a file, it is what
/// `garret key import` reads) and the paper form (for `garret key import --paper`).
pub fn qr_html(bytes: &[u8], repo_id: &str) -> Result<String> {
    let code = qrcode::QrCode::with_error_correction_level(bytes, qrcode::EcLevel::M)
        .map_err(|e| Error::Key(format!("key file too large for a QR code: {e}")))?;
    let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(400, 400).build();
    // Inline in HTML: without the XML declaration.
    let svg = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    Ok(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>garret key, repository {id}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}} pre{{font-size:11pt}}</style></head><body>\n\
         <h1>garret repository key</h1>\n<p>Repository {id}. The key is still protected by its passphrase: keep the \
         passphrase apart from this page.</p>\n{svg}\n<p>Scan the code into a file and run <code>garret key import \
         REPO FILE</code>, or type the lines below into a file and run <code>garret key import --paper REPO \
         FILE</code>.</p>\n<pre>{paper}</pre>\n</body></html>\n",
        id = escape(repo_id),
        paper = escape(&encode(bytes, repo_id)),
    ))
}

pub fn decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut expect: u16 = 1;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with("garret key") {
            continue;
        }
        let bad = |why: &str| Error::Key(format!("paper key line {expect}: {why} (re-type that line)"));
        let (num, rest) = line.split_once(':').ok_or_else(|| bad("missing 'NNN:'"))?;
        let n: u16 = num.trim().parse().map_err(|_| bad("bad line number"))?;
        if n != expect {
            return Err(bad(&format!("found line {n}, lines must come in order")));
        }
        let (data, sum) = rest.rsplit_once('-').ok_or_else(|| bad("missing '- checksum'"))?;
        let hexdata: String = data.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = hex::decode(&hexdata).map_err(|_| bad("not hex"))?;
        if checksum(n, &bytes) != sum.trim().to_lowercase() {
            return Err(bad("checksum mismatch"));
        }
        out.extend_from_slice(&bytes);
        expect += 1;
    }
    if out.is_empty() {
        return Err(Error::Key("no key lines found in the paper key".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_typo_caught_on_its_line() {
        let data: Vec<u8> = (0..200u8).collect();
        let text = encode(&data, "abc");
        assert_eq!(decode(&text).unwrap(), data);
        let typo = text.replacen("001: 0001", "001: 0002", 1);
        let e = decode(&typo).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("checksum"), "{e}");
    }
}
