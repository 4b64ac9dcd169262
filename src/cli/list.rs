//! `garret list REPO` (archives) and `garret list REPO::NAME` (items).

use super::checksum::{self, Checksums};
use super::common::{self, GlobalArgs};
use super::filter::ArchiveFilter;
use super::format::{Format, Value};
use super::{location, Outcome};
use anyhow::{bail, Result};
use garret::archive::item::{ChunkRef, Item, Kind};
use garret::archive::{self, Archive};
use garret::id::ObjectType;
use std::collections::HashMap;
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
    #[arg(long, conflicts_with = "format")]
    pub short: bool,
    /// Output format, as borg: e.g. '{archive:<36} {time} [{id}]{NL}' for archives, '{mode}
    /// {user:6} {size:8} {mtime} {path}{extra}{NL}' for items (see `garret help list`)
    #[arg(long, alias = "list-format", value_name = "FORMAT", long_help = FORMAT_HELP)]
    pub format: Option<String>,
    #[command(flatten)]
    pub filter: ArchiveFilter,
    /// Which items of an archive to list
    #[command(flatten)]
    pub select: super::select::SelectionArgs,
    /// REPO or REPO::NAME
    pub location: Option<String>,
    /// Only list these paths (and what is below them)
    pub paths: Vec<String>,
}

const ARCHIVE_KEYS: &[&str] = &[
    "archive",
    "barchive",
    "name",
    "id",
    "time",
    "start",
    "end",
    "hostname",
    "username",
    "comment",
    "bcomment",
    "command_line",
];
const ITEM_KEYS: &[&str] = &[
    "type",
    "mode",
    "uid",
    "gid",
    "user",
    "group",
    "path",
    "source",
    "linktarget",
    "size",
    "csize",
    "dsize",
    "dcsize",
    "mtime",
    "ctime",
    "atime",
    "isomtime",
    "isoctime",
    "isoatime",
    "health",
    "num_chunks",
    "unique_chunks",
    "extra",
    "archivename",
    "archiveid",
    "bpath",
    "flags",
];
const FORMAT_HELP: &str = "Output format, in Python's format syntax as borg: {key}, {key:SPEC} with Python's \
[[fill]align][sign][#][0][width][,][.precision][type] (e.g. {size:>12,} {size:08} {path:.40}), a strftime SPEC \
for times (e.g. {mtime:%Y-%m-%d}, {time:%H:%M}), {{ and }}, and {NL} {TAB} {SPACE} {CR} for those characters.
Archives: archive (or name), barchive, id, time (or start), end, hostname, username, comment, bcomment, \
command_line.
Items: type, mode, uid, gid, user, group, path, bpath, source and linktarget (a symlink's target or the first name \
of a hardlinked file), flags, size, csize (stored size of the file's chunks), dsize and dcsize (size and stored \
size of the chunks no other file or archive references), num_chunks, unique_chunks, mtime, ctime, atime, \
isomtime, isoctime, isoatime (garret stores no ctime, and atime only with `create --atime`: as borg for an item \
without them, these show the mtime), health, extra (' -> target' or ' link to source'), archivename, archiveid, \
and checksums of a file's content \
(read from the repository): md5, sha1, sha224, sha256, sha384, sha512, sha3_224, sha3_256, sha3_384, sha3_512, \
blake2b, blake2s, xxh64.";

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

/// The size `list` shows: a symlink's is the length of its target, as `ls -l` and borg show it.
fn shown_size(it: &Item) -> u64 {
    match (&it.kind, &it.target) {
        (Kind::Symlink, Some(t)) => t.len() as u64,
        _ => it.size,
    }
}

/// An archive time (RFC 3339) for `--format`: shown as borg shows it, or by a strftime spec.
fn time_value(rfc3339: &str) -> Value {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok().map(|t| t.with_timezone(&chrono::Local));
    Value::Time(t, common::show_time(rfc3339))
}

/// An item time (ns since the epoch) for `--format`: shown as borg shows it, or by a strftime
/// spec.
fn item_time(ns: i64) -> Value {
    let t = chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32);
    Value::Time(t.map(|t| t.with_timezone(&chrono::Local)), common::show_ns(ns))
}

/// A symlink's target or a hardlink's first name: borg's `source` and `linktarget` alike.
fn link_of(it: &Item) -> Option<&Vec<u8>> {
    it.target.as_ref().or(it.source.as_ref())
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
        "source": link_of(it).map(|s| String::from_utf8_lossy(s).into_owned()).unwrap_or_default(),
        "linktarget": link_of(it).map(|s| String::from_utf8_lossy(s).into_owned()).unwrap_or_default(),
        "flags": 0, // borg's BSD flags: garret stores none
        "size": shown_size(it),
        "mtime": common::iso_ns(it.mtime),
    })
}

pub fn run(g: &GlobalArgs, a: &ListArgs) -> Result<Outcome> {
    let loc = location::parse_opt(a.location.as_deref())?;
    let keys: Vec<&str> = match loc.archive {
        Some(_) => ITEM_KEYS.iter().chain(checksum::KEYS).copied().collect(),
        None => ARCHIVE_KEYS.to_vec(),
    };
    let format = a.format.as_deref().map(|f| Format::parse(f, &keys)).transpose()?;
    if loc.archive.is_some() && a.filter.is_set() {
        bail!("--prefix, --glob-archives, --sort-by, --first and --last select archives: give REPO, not REPO::NAME");
    }
    let repo = common::open(g, &loc.repo, false)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match &loc.archive {
        None => {
            let archives = a.filter.select(&repo.manifest().archives)?;
            if a.json {
                let list: Vec<_> = archives
                    .iter()
                    .map(|e| {
                        // borg's keys (`archive`, `barchive`, `start` repeat `name` and `time`)
                        // and garret's own
                        serde_json::json!({
                            "name": e.name, "archive": e.name, "barchive": e.name, "id": e.id.hex(),
                            "time": e.time, "start": e.time, "hostname": e.hostname, "username": e.username,
                        })
                    })
                    .collect();
                let v = serde_json::json!({
                    "archives": list,
                    "repository": super::info::repository_json(&repo),
                    "encryption": super::info::encryption_json(&repo),
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                for e in archives {
                    if let Some(f) = &format {
                        // Only these keys need the archive object itself.
                        let full = if ["end", "comment", "bcomment", "command_line"].iter().any(|k| f.uses(k)) {
                            Some(Archive::load(&repo, e)?)
                        } else {
                            None
                        };
                        let line = f.render(&|k| {
                            Value::Text(match k {
                                "time" | "start" => return time_value(&e.time),
                                "end" => return time_value(full.as_ref().map_or("", |a| &a.time_end)),
                                "archive" | "name" | "barchive" => e.name.clone(),
                                "id" => e.id.hex(),
                                "hostname" => e.hostname.clone(),
                                "username" => e.username.clone(),
                                "comment" => full.as_ref().map(|a| common::escape(&a.comment)).unwrap_or_default(),
                                "bcomment" => full.as_ref().map(|a| a.comment.clone()).unwrap_or_default(),
                                _ => {
                                    full.as_ref().map(|a| common::escape(&a.command_line.join(" "))).unwrap_or_default()
                                }
                            })
                        });
                        write!(out, "{line}")?;
                    } else if a.short {
                        writeln!(out, "{}", e.name)?;
                    } else {
                        // borg's default: '{archive:<36} {time} [{id}]'
                        writeln!(out, "{:<36} {} [{}]", e.name, common::show_time(&e.time), e.id.hex())?;
                    }
                }
            }
        }
        Some(name) => {
            let entry = archive::lookup(&repo, name)?.clone();
            let ar = Archive::load(&repo, &entry)?;
            let wanted: Vec<&str> = a.paths.iter().map(|p| p.trim_start_matches('/').trim_end_matches('/')).collect();
            let excludes = a.select.patterns()?;
            let checksums = format.as_ref().map(Checksums::of_format).filter(|c| !c.is_empty());
            // Content of hardlink masters, for the checksums of later names.
            let sources = ar.hardlink_sources(&repo)?;
            let mut masters: HashMap<Vec<u8>, Vec<ChunkRef>> = HashMap::new();
            let uses = |keys: &[&str]| format.as_ref().is_some_and(|f| keys.iter().any(|k| f.uses(k)));
            // Stored sizes from the index; reference counts over every archive (one pass over
            // all their items), only for the keys that need them.
            let stored = uses(&["csize", "dcsize"]).then(|| repo.index().known_blobs()).transpose()?;
            let refs =
                uses(&["dsize", "dcsize", "unique_chunks"]).then(|| archive::chunk_refcounts(&repo)).transpose()?;
            for it in ar.items(&repo) {
                let it = it?;
                if checksums.is_some() && archive::is_master(&it, &sources) {
                    masters.insert(it.path.clone(), it.chunks.clone());
                }
                let p = it.path_lossy();
                if !wanted.is_empty() && !wanted.iter().any(|w| p == *w || p.starts_with(&format!("{w}/"))) {
                    continue;
                }
                if excludes.is_excluded(&it.path) {
                    continue;
                }
                let extra = || {
                    let mut x = String::new();
                    if let Some(t) = &it.target {
                        x.push_str(&format!(" -> {}", common::escape(&String::from_utf8_lossy(t))));
                    }
                    if let Some(s) = &it.source {
                        x.push_str(&format!(" link to {}", common::escape(&String::from_utf8_lossy(s))));
                    }
                    x
                };
                if a.json_lines {
                    writeln!(out, "{}", item_json(&it))?;
                } else if let Some(f) = &format {
                    let content = match it.kind {
                        Kind::File => Some(&it.chunks),
                        Kind::Hardlink => it.source.as_ref().and_then(|s| masters.get(s)),
                        _ => None,
                    };
                    let digests = match (&checksums, content) {
                        (Some(c), Some(chunks)) => {
                            c.digests(chunks.iter().map(|c| repo.load_blob(ObjectType::Data, &c.0)))?
                        }
                        _ => vec![],
                    };
                    let csize =
                        |id: &garret::id::Id| stored.as_ref().and_then(|k| k.get(id)).copied().unwrap_or(0) as u64;
                    let unique = || it.chunks.iter().filter(|c| refs.as_ref().and_then(|r| r.get(&c.0)) == Some(&1));
                    let lossy = |b: &Option<Vec<u8>>| {
                        b.as_ref().map(|b| common::escape(&String::from_utf8_lossy(b))).unwrap_or_default()
                    };
                    let line = f.render(&|k| match k {
                        "uid" => Value::Num(it.uid as u64),
                        "gid" => Value::Num(it.gid as u64),
                        "size" => Value::Num(shown_size(&it)),
                        "num_chunks" => Value::Num(it.chunks.len() as u64),
                        "flags" => Value::Num(0), // borg's BSD flags: garret stores none
                        "csize" => Value::Num(it.chunks.iter().map(|c| csize(&c.0)).sum()),
                        "dsize" => Value::Num(unique().map(|c| c.1 as u64).sum()),
                        "dcsize" => Value::Num(unique().map(|c| csize(&c.0)).sum()),
                        "unique_chunks" => Value::Num(unique().count() as u64),
                        "mtime" | "ctime" => item_time(it.mtime),
                        "atime" => item_time(it.atime.unwrap_or(it.mtime)),
                        k if checksum::KEYS.contains(&k) => {
                            // Empty for what has no content (directories, symlinks), as borg's.
                            Value::Text(
                                digests.iter().find(|(d, _)| *d == k).map(|(_, h)| h.clone()).unwrap_or_default(),
                            )
                        }
                        k => Value::Text(match k {
                            "type" => kind_name(it.kind).to_string(),
                            "mode" => it.mode_string(),
                            "user" => it.user.clone().unwrap_or_else(|| it.uid.to_string()),
                            "group" => it.group.clone().unwrap_or_else(|| it.gid.to_string()),
                            "path" => common::escape(&p),
                            "bpath" => p.to_string(),
                            "source" | "linktarget" => lossy(&link_of(&it).cloned()),
                            "isomtime" | "isoctime" => common::iso_ns(it.mtime),
                            "isoatime" => common::iso_ns(it.atime.unwrap_or(it.mtime)),
                            "health" => if it.chunks_healthy.is_empty() { "healthy" } else { "broken" }.to_string(),
                            "extra" => extra(),
                            "archivename" => entry.name.clone(),
                            _ => entry.id.hex(),
                        }),
                    });
                    write!(out, "{line}")?;
                } else if a.short {
                    writeln!(out, "{}", common::escape(&p))?;
                } else {
                    // borg's default: '{mode} {user:6} {group:6} {size:8} {mtime} {path}{extra}'
                    let line = format!(
                        "{} {:<6} {:<6} {:>8} {} {}{}",
                        it.mode_string(),
                        it.user.clone().unwrap_or_else(|| it.uid.to_string()),
                        it.group.clone().unwrap_or_else(|| it.gid.to_string()),
                        shown_size(&it),
                        common::show_ns(it.mtime),
                        common::escape(&p),
                        extra()
                    );
                    writeln!(out, "{line}")?;
                }
            }
        }
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
