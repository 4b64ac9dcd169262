//! `diff`: what changed between two archives, from their item metadata and chunk ids. File data
//! is read only for a file whose chunks were cut at other places but add up to the same size
//! (archives made with other `--chunker-params`): its content decides.

use crate::archive::item::{ChunkRef, Item, Kind};
use crate::archive::Archive;
use crate::error::Result;
use crate::id::{Id, ObjectType};
use crate::repository::Repository;
use std::collections::{BTreeMap, HashMap};

/// One change of one path.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    Added {
        size: u64,
    },
    Removed {
        size: u64,
    },
    /// Content differs: bytes of chunks only in the new / only in the old version.
    Modified {
        added: u64,
        removed: u64,
    },
    Mode {
        old_mode: String,
        new_mode: String,
    },
    Owner {
        old_user: String,
        old_group: String,
        new_user: String,
        new_group: String,
    },
    Mtime {
        old_mtime: i64,
        new_mtime: i64,
    },
    Target {
        old_target: String,
        new_target: String,
    },
}

fn owner(it: &Item) -> (String, String) {
    (it.user.clone().unwrap_or_else(|| it.uid.to_string()), it.group.clone().unwrap_or_else(|| it.gid.to_string()))
}

fn content_size(it: &Item) -> u64 {
    it.size
}

/// Compare two versions of one path; with `numeric_ids`, owners by uid and gid only.
fn compare(old: &Item, new: &Item, numeric_ids: bool) -> Vec<Change> {
    let mut out = vec![];
    if old.kind != new.kind
        && !(matches!(old.kind, Kind::File | Kind::Hardlink) && matches!(new.kind, Kind::File | Kind::Hardlink))
    {
        out.push(Change::Removed { size: content_size(old) });
        out.push(Change::Added { size: content_size(new) });
        return out;
    }
    if old.chunks != new.chunks && !(new.kind == Kind::Hardlink || old.kind == Kind::Hardlink) {
        let mut count: HashMap<Id, i64> = HashMap::new();
        for c in &old.chunks {
            *count.entry(c.0).or_default() -= 1;
        }
        for c in &new.chunks {
            *count.entry(c.0).or_default() += 1;
        }
        let sizes: HashMap<Id, u32> = old.chunks.iter().chain(&new.chunks).map(|c| (c.0, c.1)).collect();
        let (mut added, mut removed) = (0u64, 0u64);
        for (id, n) in count {
            let s = sizes[&id] as u64;
            if n > 0 {
                added += s * n as u64;
            } else if n < 0 {
                removed += s * (-n) as u64;
            }
        }
        out.push(Change::Modified { added, removed });
    }
    if old.target != new.target {
        let t = |x: &Option<Vec<u8>>| x.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()).unwrap_or_default();
        out.push(Change::Target { old_target: t(&old.target), new_target: t(&new.target) });
    }
    if old.mode != new.mode {
        out.push(Change::Mode { old_mode: old.mode_string(), new_mode: new.mode_string() });
    }
    let ids = |it: &Item| (it.uid.to_string(), it.gid.to_string());
    let ((ou, og), (nu, ng)) = if numeric_ids { (ids(old), ids(new)) } else { (owner(old), owner(new)) };
    if ou != nu || og != ng || old.uid != new.uid || old.gid != new.gid {
        out.push(Change::Owner { old_user: ou, old_group: og, new_user: nu, new_group: ng });
    }
    if old.mtime != new.mtime {
        out.push(Change::Mtime { old_mtime: old.mtime, new_mtime: new.mtime });
    }
    out
}

fn selected(path: &[u8], wanted: &[Vec<u8>]) -> bool {
    wanted.is_empty()
        || wanted.iter().any(|w| path == &w[..] || (path.starts_with(w) && path.get(w.len()) == Some(&b'/')))
}

/// Changes from `old` to `new`, by path (sorted), limited to `paths` when given; with
/// `numeric_ids`, owners are compared and shown by uid and gid only (borg's --numeric-ids).
///
/// Both item streams are read side by side. Archives of one tree list their paths in the same
/// order, so most items meet their counterpart at once; an item without one waits in a map until
/// the other stream reaches its path (or ends: then it was removed or added). Memory thus follows
/// how far the two orders drift apart (the files added or removed between them), not the size of
/// the archives. Only changes are kept, to print them sorted.
pub fn run(
    repo: &Repository,
    old: &Archive,
    new: &Archive,
    paths: &[Vec<u8>],
    numeric_ids: bool,
) -> Result<BTreeMap<Vec<u8>, Vec<Change>>> {
    let select = |it: Result<Item>| match it {
        Ok(it) if !selected(&it.path, paths) => None,
        other => Some(other),
    };
    let (mut olds, mut news) = (old.items(repo).filter_map(select), new.items(repo).filter_map(select));
    let (mut old_waiting, mut new_waiting) = (HashMap::<Vec<u8>, Item>::new(), HashMap::<Vec<u8>, Item>::new());
    let mut out = BTreeMap::new();
    let mut record = |o: &Item, n: &Item| -> Result<()> {
        let mut c = compare(o, n, numeric_ids);
        let modified = |x: &Change| matches!(x, Change::Modified { .. });
        if c.iter().any(modified) && same_bytes_cut_elsewhere(repo, &o.chunks, &n.chunks)? {
            c.retain(|x| !modified(x));
        }
        if !c.is_empty() {
            out.insert(n.path.clone(), c);
        }
        Ok(())
    };
    loop {
        let (o, n) = (olds.next().transpose()?, news.next().transpose()?);
        match (o, n) {
            (None, None) => break,
            (Some(o), Some(n)) if o.path == n.path => record(&o, &n)?,
            (o, n) => {
                if let Some(o) = o {
                    match new_waiting.remove(&o.path) {
                        Some(n) => record(&o, &n)?,
                        None => drop(old_waiting.insert(o.path.clone(), o)),
                    }
                }
                if let Some(n) = n {
                    match old_waiting.remove(&n.path) {
                        Some(o) => record(&o, &n)?,
                        None => drop(new_waiting.insert(n.path.clone(), n)),
                    }
                }
            }
        }
    }
    for (p, n) in new_waiting {
        out.insert(p, vec![Change::Added { size: content_size(&n) }]);
    }
    for (p, o) in old_waiting {
        out.insert(p, vec![Change::Removed { size: content_size(&o) }]);
    }
    Ok(out)
}

/// Whether two chunk lists of the same total size but with other cut points hold the same
/// bytes (compared by reading both).
fn same_bytes_cut_elsewhere(repo: &Repository, old: &[ChunkRef], new: &[ChunkRef]) -> Result<bool> {
    let total = |cs: &[ChunkRef]| cs.iter().map(|c| c.1 as u64).sum::<u64>();
    if total(old) != total(new) || old.iter().map(|c| c.1).eq(new.iter().map(|c| c.1)) {
        return Ok(false);
    }
    let digest = |cs: &[ChunkRef]| -> Result<blake3::Hash> {
        let mut h = blake3::Hasher::new();
        for c in cs {
            h.update(&repo.load_blob(ObjectType::Data, &c.0)?);
        }
        Ok(h.finalize())
    };
    Ok(digest(old)? == digest(new)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(user: &str, uid: u32) -> Item {
        let mut it = Item::new(b"f".to_vec(), Kind::File);
        (it.user, it.uid, it.group, it.gid) = (Some(user.into()), uid, Some("staff".into()), 50);
        it
    }

    fn owner_changed(old: &Item, new: &Item, numeric_ids: bool) -> bool {
        compare(old, new, numeric_ids).iter().any(|c| matches!(c, Change::Owner { .. }))
    }

    /// By default an owner differs by name or id; with numeric ids only by id (a user renamed on
    /// the host is no change then).
    #[test]
    fn owners_by_name_or_by_id() {
        let (alice, renamed, other_id) = (file("alice", 1000), file("alicia", 1000), file("alice", 1001));
        assert!(owner_changed(&alice, &renamed, false));
        assert!(!owner_changed(&alice, &renamed, true));
        assert!(owner_changed(&alice, &other_id, false));
        assert!(owner_changed(&alice, &other_id, true));
        assert!(!owner_changed(&alice, &alice.clone(), true));
        match &compare(&alice, &other_id, true)[..] {
            [Change::Owner { old_user, new_user, .. }] => {
                assert_eq!((old_user.as_str(), new_user.as_str()), ("1000", "1001"))
            }
            other => panic!("{other:?}"),
        }
    }
}
