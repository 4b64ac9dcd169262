//! The SQLite index: a cache mapping blob ids to their place in a pack (repo-format.md, "Index").
//!
//! Nothing here is the only record of anything: every row is derived from a pack header, and the
//! repository reconciles this cache with the pack files on every open. A database that fails to
//! open or has another schema version is deleted and rebuilt.

use crate::error::Result;
use crate::id::Id;
use crate::known::KnownBlobs;
use crate::pack::PackEntry;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// 2: `within` and `stored` (bundles, format version 2). A cache of another version is rebuilt.
pub const SCHEMA_VERSION: i64 = 2;

/// Where a blob lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: String,
    pub kind: u8,
    pub offset: u64,
    pub length: u32,
    pub raw_length: u32,
    /// For a blob in a bundle: where it starts in the bundle's content (`offset` and `length`
    /// are the bundle's envelope).
    pub within: Option<u32>,
}

/// What the index records of one pack.
#[derive(Clone, Debug, Default)]
pub struct PackUsage {
    pub size: u64,
    /// Each blob's id and stored bytes (for blobs in a bundle, their share of its envelope).
    pub blobs: Vec<(Id, u32)>,
}

pub struct Index {
    /// Behind a mutex so a repository can be shared by reader threads (mount).
    conn: Mutex<Connection>,
    /// Where to record, on drop, that this file was left intact (see [`Index::open_stamped`]).
    stamp: Option<Stamped>,
    /// `PRAGMA quick_check` ran at open.
    checked: bool,
}

/// How long a file left intact is trusted without a new `PRAGMA quick_check`.
const TRUST_SECS: u64 = 7 * 24 * 3600;

/// The stamp file of an index: the database file's identity and times as the last client process
/// left it, and when its `quick_check` last ran.
struct Stamped {
    db: std::path::PathBuf,
    file: std::path::PathBuf,
    checked: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Device, inode, size, modification and change times of `db`: any write changes one of them.
fn file_identity(db: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(db).ok()?;
    Some(format!(
        "{} {} {} {}.{:09} {}.{:09}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

impl Stamped {
    /// When the stamp vouches for `db` as it is now (and no interrupted transaction's journal
    /// is next to it), the time of the last real check it carries.
    fn vouches(db: &Path, file: &Path) -> Option<u64> {
        let mut journal = db.as_os_str().to_owned();
        journal.push("-journal");
        if Path::new(&journal).exists() {
            return None;
        }
        let text = std::fs::read_to_string(file).ok()?;
        let (checked, identity) = text.trim_end().strip_prefix("garret-index-stamp 1 ")?.split_once(' ')?;
        let checked: u64 = checked.parse().ok()?;
        let fresh = unix_now().checked_sub(checked).is_some_and(|age| age < TRUST_SECS);
        (fresh && file_identity(db)? == identity).then_some(checked)
    }

    fn save(&self) {
        let Some(identity) = file_identity(&self.db) else { return };
        let text = format!("garret-index-stamp 1 {} {identity}\n", self.checked);
        // A reader leaves the index as it found it: the stamp on file says so already.
        if std::fs::read(&self.file).is_ok_and(|old| old == text.as_bytes()) {
            return;
        }
        // Only an optimization: a stamp not written costs the next open one quick_check.
        let _ = crate::client_file::replace(&self.file, text.as_bytes(), crate::client_file::Durability::Cache);
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        if let Some(s) = &self.stamp {
            s.save();
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS packs (
    pack INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,      -- 64 hex digits: the pack file's name under data/
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
    id BLOB PRIMARY KEY,            -- 32-byte keyed BLAKE3 id
    kind INTEGER NOT NULL,          -- object type (1 data, 2 tree, 3 archive)
    pack INTEGER NOT NULL REFERENCES packs(pack),
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,        -- envelope length
    raw_length INTEGER NOT NULL,    -- uncompressed plaintext length
    within INTEGER,                 -- in a bundle: start in its content; else NULL
    stored INTEGER NOT NULL         -- stored bytes counted for it (its share of a bundle)
) WITHOUT ROWID;
-- No index on blobs(pack): it was 40 % of the file and slowed every insert, for the sake of
-- removing packs, which is rare and done in batches with one scan of the table.
DROP INDEX IF EXISTS blobs_by_pack;
";

const LOOKUP_SQL: &str =
    "SELECT p.name, b.kind, b.offset, b.length, b.raw_length, b.within FROM blobs b JOIN packs p ON p.pack = b.pack WHERE b.id = ?1";

/// A [`LOOKUP_SQL`] row.
fn location_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Location> {
    Ok(Location {
        pack: r.get(0)?,
        kind: r.get(1)?,
        offset: r.get::<_, i64>(2)? as u64,
        length: r.get(3)?,
        raw_length: r.get(4)?,
        within: r.get(5)?,
    })
}

impl Index {
    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the guard cannot leave SQLite inconsistent (it has its own
        // transactions), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open (or create) the cache at `path` for repository `repo`; a damaged or foreign file is
    /// replaced by an empty one. Returns the index and whether it was (re)created empty.
    pub fn open(path: &Path, repo: &Id) -> Result<(Index, bool)> {
        Self::open_stamped(path, repo, None)
    }

    /// [`open`](Self::open), skipping `PRAGMA quick_check` (a full read of the file: 0.29 s for
    /// two million blobs) when the client's `stamp` file says the database is exactly as a garret
    /// process of this client left it, checked within the last [`TRUST_SECS`]. Any write by anyone
    /// else (a copy, a restore, another host) changes its size or times, and a leftover journal
    /// means an interrupted transaction; both bring the check back. On drop the index records its
    /// file's state in `stamp`.
    pub fn open_stamped(path: &Path, repo: &Id, stamp: Option<&Path>) -> Result<(Index, bool)> {
        let vouched = stamp.and_then(|f| Stamped::vouches(path, f));
        let (mut ix, fresh) = match vouched.map(|_| Self::try_open(path, repo, false)) {
            Some(Ok(Some(r))) => r,
            _ => Self::open_checked(path, repo)?,
        };
        // Not for the in-memory fallback of read-only media: there is no file to vouch for.
        if ix.conn().path().is_some_and(|p| !p.is_empty()) {
            let checked = if ix.checked { unix_now() } else { vouched.unwrap_or(0) };
            ix.stamp = stamp.map(|f| Stamped { db: path.to_path_buf(), file: f.to_path_buf(), checked });
        }
        Ok((ix, fresh))
    }

    fn open_checked(path: &Path, repo: &Id) -> Result<(Index, bool)> {
        match Self::try_open(path, repo, true) {
            Ok(Some(r)) => Ok(r),
            Ok(None) | Err(_) => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut p = path.as_os_str().to_owned();
                    p.push(suffix);
                    let _ = std::fs::remove_file(&p);
                }
                match Self::try_open(path, repo, true) {
                    Ok(Some((ix, _))) => Ok((ix, true)),
                    // A repository on read-only media (an offsite disk mounted ro): keep the
                    // cache in memory, rebuilt from the pack headers by the caller.
                    _ => Ok((Self::in_memory(repo)?, true)),
                }
            }
        }
    }

    fn in_memory(repo: &Id) -> Result<Index> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?1)", [SCHEMA_VERSION.to_string()])?;
        conn.execute("INSERT INTO meta VALUES ('repository', ?1)", [repo.hex()])?;
        Ok(Index { conn: Mutex::new(conn), stamp: None, checked: true })
    }

    /// `Ok(None)` when the file exists but belongs to another repository or schema, or fails
    /// `quick_check` (run when `check`); the flag says whether the database was created empty
    /// just now.
    fn try_open(path: &Path, repo: &Id, check: bool) -> Result<Option<(Index, bool)>> {
        let conn = Connection::open(path)?;
        // Wait for a concurrent writer instead of failing (a failure here rebuilds the cache).
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        // A rollback journal, not WAL: WAL's -shm file is memory-mapped, and extending it on a full
        // disk kills the process with SIGBUS (seen in the disk-full test). Readers wait for a
        // committing writer through the busy timeout instead; commits are short (one per pack).
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        // NORMAL: a power loss may drop the last transaction; harmless for a cache that is
        // reconciled with the pack files on every open.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        if check {
            let quick: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
            if quick != "ok" {
                return Ok(None);
            }
        }
        let get = |k: &str| -> Result<Option<String>> {
            Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0)).optional()?)
        };
        let created = match (get("schema_version")?, get("repository")?) {
            (None, None) => {
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?1)", [SCHEMA_VERSION.to_string()])?;
                conn.execute("INSERT INTO meta VALUES ('repository', ?1)", [repo.hex()])?;
                true
            }
            (Some(v), Some(r)) if v == SCHEMA_VERSION.to_string() && r == repo.hex() => false,
            _ => return Ok(None),
        };
        Ok(Some((Index { conn: Mutex::new(conn), stamp: None, checked: check }, created)))
    }

    pub fn pack_names(&self) -> Result<HashSet<String>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT name FROM packs")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Record a durable pack and its blobs in one transaction. A blob already indexed elsewhere
    /// keeps its first location, unless `replace` (compaction moving blobs to a new pack).
    pub fn add_pack(&mut self, name: &str, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.add_pack_with(name, size, entries, false)
    }

    pub fn add_pack_with(&mut self, name: &str, size: u64, entries: &[PackEntry], replace: bool) -> Result<()> {
        self.add_packs(&[(name, size, entries, replace)])
    }

    /// [`add_pack_with`](Self::add_pack_with) for several packs in one transaction (one commit,
    /// not one per pack).
    ///
    /// Rows go in in id order: ids are random, so in pack order each row lands on a random page
    /// of the table, and once the table outgrows SQLite's page cache every row costs a page read
    /// and a spilled write (a million tiny files: 5 s on one core). In id order each page is
    /// visited once per call. The sort is stable, so for an id given twice the later row still
    /// meets the earlier one as in pack order (ignored, or replacing it when `replace`).
    pub fn add_packs(&mut self, packs: &[(&str, u64, &[PackEntry], bool)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut numbers = Vec::with_capacity(packs.len());
        for &(name, size, _, _) in packs {
            tx.execute("INSERT OR IGNORE INTO packs (name, size) VALUES (?1, ?2)", params![name, size as i64])?;
            let pack: i64 = tx.query_row("SELECT pack FROM packs WHERE name = ?1", [name], |r| r.get(0))?;
            numbers.push(pack);
        }
        let entry = |&(_, p, e): &(u64, u32, u32)| &packs[p as usize].2[e as usize];
        let shares: Vec<Vec<u32>> = packs.iter().map(|p| crate::pack::stored_shares(p.2)).collect();
        // Each row carries its id's first 8 bytes, so most comparisons need no lookup.
        let mut rows: Vec<(u64, u32, u32)> = packs
            .iter()
            .enumerate()
            .flat_map(|(p, pack)| {
                pack.2.iter().enumerate().map(move |(e, b)| {
                    (u64::from_be_bytes(b.id.0[..8].try_into().expect("8 bytes")), p as u32, e as u32)
                })
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| entry(a).id.cmp(&entry(b).id)));
        let mut ignore = tx.prepare_cached("INSERT OR IGNORE INTO blobs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
        let mut replace = tx.prepare_cached("INSERT OR REPLACE INTO blobs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
        for row in &rows {
            let e = entry(row);
            let stored = shares[row.1 as usize][row.2 as usize];
            let st = if packs[row.1 as usize].3 { &mut replace } else { &mut ignore };
            st.execute(params![
                &e.id.0[..],
                e.kind,
                numbers[row.1 as usize],
                e.offset as i64,
                e.length,
                e.raw_length,
                e.within,
                stored
            ])?;
        }
        drop((ignore, replace));
        tx.commit()?;
        Ok(())
    }

    /// Forget a pack and its blobs (the pack file is gone or about to go).
    pub fn remove_pack(&mut self, name: &str) -> Result<()> {
        self.remove_packs(&[name])
    }

    /// Forget packs and their blobs in one transaction. Blobs are found by one scan of the
    /// table (there is no index by pack), so remove many packs in one call, not one at a time.
    pub fn remove_packs<S: AsRef<str>>(&mut self, names: &[S]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS doomed (pack INTEGER PRIMARY KEY); DELETE FROM temp.doomed;",
        )?;
        {
            let mut st =
                tx.prepare_cached("INSERT OR IGNORE INTO temp.doomed SELECT pack FROM packs WHERE name = ?1")?;
            for name in names {
                st.execute([name.as_ref()])?;
            }
        }
        tx.execute_batch(
            "DELETE FROM blobs WHERE pack IN (SELECT pack FROM temp.doomed);
             DELETE FROM packs WHERE pack IN (SELECT pack FROM temp.doomed);
             DELETE FROM temp.doomed;",
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forget one blob (found corrupt); its pack stays.
    pub fn remove_blob(&mut self, id: &Id) -> Result<()> {
        self.conn().execute("DELETE FROM blobs WHERE id = ?1", [&id.0[..]])?;
        Ok(())
    }

    /// Forget everything (before a rebuild from the pack files).
    pub fn clear(&mut self) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM blobs", [])?;
        tx.execute("DELETE FROM packs", [])?;
        tx.commit()?;
        Ok(())
    }

    /// Look up many ids in one read transaction (one lock and journal check instead of one
    /// per id).
    pub fn lookup_many(&self, ids: &[Id]) -> Result<Vec<Option<Location>>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut out = Vec::with_capacity(ids.len());
        {
            let mut st = tx.prepare_cached(LOOKUP_SQL)?;
            for id in ids {
                out.push(st.query_row([&id.0[..]], location_of).optional()?);
            }
        }
        tx.commit()?;
        Ok(out)
    }

    pub fn lookup(&self, id: &Id) -> Result<Option<Location>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(LOOKUP_SQL)?;
        Ok(st.query_row([&id.0[..]], location_of).optional()?)
    }

    /// Every indexed blob with its stored length (its envelope, or its share of a bundle's): the
    /// in-memory dedup set of create.
    pub fn known_blobs(&self) -> Result<KnownBlobs> {
        let conn = self.conn();
        // In id order: the table is keyed by id, so this is a plain scan.
        let mut st = conn.prepare("SELECT id, stored FROM blobs ORDER BY id")?;
        let mut out = Vec::new();
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            if let Some(id) = Id::from_slice(r.get_ref(0)?.as_blob().unwrap_or_default()) {
                out.push((id, r.get(1)?));
            }
        }
        Ok(KnownBlobs::from_rows(out))
    }

    /// Every pack with its size and the (id, stored length) of the blobs indexed in it.
    pub fn pack_usage(&self) -> Result<Vec<(String, PackUsage)>> {
        let mut packs: HashMap<i64, (String, PackUsage)> = HashMap::new();
        let conn = self.conn();
        let mut st = conn.prepare("SELECT pack, name, size FROM packs")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            packs.insert(r.get(0)?, (r.get(1)?, PackUsage { size: r.get::<_, i64>(2)? as u64, blobs: vec![] }));
        }
        drop(rows);
        let mut st = conn.prepare("SELECT pack, id, stored FROM blobs")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id: Vec<u8> = r.get(1)?;
            if let (Some(p), Some(id)) = (packs.get_mut(&r.get::<_, i64>(0)?), Id::from_slice(&id)) {
                p.1.blobs.push((id, r.get(2)?));
            }
        }
        let mut v: Vec<_> = packs.into_values().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    }

    /// How many blobs the index holds, their plaintext bytes and their stored bytes (each counted
    /// once however many archives refer to it).
    pub fn totals(&self) -> Result<(u64, u64, u64)> {
        let sql = "SELECT count(*), coalesce(sum(raw_length), 0), coalesce(sum(stored), 0) FROM blobs";
        Ok(self.conn().query_row(sql, [], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64))
        })?)
    }

    pub fn blob_count(&self) -> Result<u64> {
        Ok(self.conn().query_row("SELECT count(*) FROM blobs", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 40-byte data blob `b` at `offset` of its pack.
    fn entry(b: u8, offset: u64) -> PackEntry {
        PackEntry { kind: 1, id: Id([b; 32]), offset, length: 40, raw_length: 12, within: None }
    }

    #[test]
    fn add_lookup_remove_and_rebuild_on_garbage() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("index.sqlite");
        let repo = Id([5; 32]);
        let (mut ix, fresh) = Index::open(&p, &repo).unwrap();
        assert!(fresh);
        let e = PackEntry { kind: 1, id: Id([9; 32]), offset: 10, length: 40, raw_length: 12, within: None };
        ix.add_pack("aa", 100, std::slice::from_ref(&e)).unwrap();
        assert_eq!(ix.lookup(&e.id).unwrap().unwrap().offset, 10);
        assert_eq!(ix.known_blobs().unwrap().len(), 1);
        drop(ix);
        let (ix, fresh) = Index::open(&p, &repo).unwrap();
        assert!(!fresh);
        assert_eq!(ix.pack_names().unwrap().len(), 1);
        drop(ix);
        // another repository's cache is not trusted
        let (_, fresh) = Index::open(&p, &Id([6; 32])).unwrap();
        assert!(fresh);
        std::fs::write(&p, b"this is not a database at all, just garbage bytes").unwrap();
        let (mut ix, fresh) = Index::open(&p, &repo).unwrap();
        assert!(fresh);
        ix.add_pack("bb", 1, &[]).unwrap();
        ix.remove_pack("bb").unwrap();
        assert!(ix.pack_names().unwrap().is_empty());
    }

    #[test]
    fn an_index_left_intact_by_this_client_is_not_checked_again() {
        let d = tempfile::tempdir().unwrap();
        let (p, stamp) = (d.path().join("index.sqlite"), d.path().join("state").join("index-stamp"));
        let repo = Id([5; 32]);
        let open = || Index::open_stamped(&p, &repo, Some(&stamp)).unwrap();
        let (mut ix, fresh) = open();
        assert!(fresh && ix.checked);
        ix.add_pack(
            "aa",
            100,
            &[PackEntry { kind: 1, id: Id([9; 32]), offset: 10, length: 40, raw_length: 12, within: None }],
        )
        .unwrap();
        drop(ix);
        let (ix, fresh) = open();
        assert!(!fresh && !ix.checked, "an index this client left as it is was checked again");
        assert_eq!(ix.pack_names().unwrap().len(), 1);
        drop(ix);
        // Written by another process (no stamp): checked again. The pause lets a file system with
        // coarse timestamps give that write a later time than the stamp's.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (mut other, _) = Index::open(&p, &repo).unwrap();
        other.add_pack("bb", 1, &[]).unwrap();
        drop(other);
        let (ix, _) = open();
        assert!(ix.checked, "an index written by someone else was trusted");
        drop(ix);
        assert!(!open().0.checked);
        // A leftover journal (an interrupted transaction) brings the check back.
        let journal = d.path().join("index.sqlite-journal");
        std::fs::write(&journal, b"").unwrap();
        assert!(open().0.checked);
        std::fs::remove_file(&journal).unwrap();
        assert!(!open().0.checked);
        // So does a stamp whose last real check is older than a week.
        let text = std::fs::read_to_string(&stamp).unwrap();
        let old = unix_now() - TRUST_SECS - 1;
        let mut parts: Vec<&str> = text.split(' ').collect();
        let old_s = old.to_string();
        parts[2] = &old_s;
        std::fs::write(&stamp, parts.join(" ")).unwrap();
        assert!(open().0.checked);
        assert!(!open().0.checked);
        // A damaged file is rebuilt as before.
        std::fs::write(&p, b"this is not a database at all, just garbage bytes").unwrap();
        let (ix, fresh) = open();
        assert!(fresh && ix.pack_names().unwrap().is_empty());
    }

    /// Removing packs drops exactly their blobs, in one call for many packs; names not indexed
    /// are ignored.
    #[test]
    fn remove_packs_drops_exactly_their_blobs() {
        let d = tempfile::tempdir().unwrap();
        let (mut ix, _) = Index::open(&d.path().join("index.sqlite"), &Id([5; 32])).unwrap();
        ix.add_pack("p1", 100, &[entry(1, 0), entry(2, 40)]).unwrap();
        ix.add_pack("p2", 100, &[entry(3, 0)]).unwrap();
        ix.add_pack("p3", 100, &[entry(4, 0), entry(5, 40)]).unwrap();
        ix.remove_packs(&["p1", "p3", "never-indexed"]).unwrap();
        assert_eq!(ix.pack_names().unwrap(), HashSet::from(["p2".to_string()]));
        let known = ix.known_blobs().unwrap();
        assert_eq!(known.len(), 1);
        assert!(known.contains_key(&Id([3; 32])));
        // the temporary table is reusable within the connection
        ix.remove_packs(&["p2"]).unwrap();
        assert!(ix.known_blobs().unwrap().is_empty());
        ix.remove_packs::<&str>(&[]).unwrap();
    }

    /// Rows of several packs go in sorted by id, yet an id given twice in one call keeps its
    /// first location unless the later pack replaces (compaction), as when inserted in order.
    #[test]
    fn add_packs_keeps_first_locations_and_lets_moved_blobs_replace() {
        let d = tempfile::tempdir().unwrap();
        let (mut ix, _) = Index::open(&d.path().join("index.sqlite"), &Id([5; 32])).unwrap();
        let p1 = [entry(9, 0), entry(3, 40), entry(7, 80)];
        let p2 = [entry(7, 0), entry(1, 40)];
        let moved = [entry(3, 0)];
        let p4 = [entry(3, 500)];
        ix.add_packs(&[
            ("p1", 120, &p1, false),
            ("p2", 80, &p2, false),
            ("m", 40, &moved, true),
            ("p4", 40, &p4, false),
        ])
        .unwrap();
        let at = |b: u8| ix.lookup(&Id([b; 32])).unwrap().map(|l| (l.pack, l.offset));
        assert_eq!(at(9), Some(("p1".into(), 0)));
        assert_eq!(at(7), Some(("p1".into(), 80)), "the first location stays");
        assert_eq!(at(1), Some(("p2".into(), 40)));
        assert_eq!(at(3), Some(("m".into(), 0)), "a moved blob replaces, and a later plain row does not");
        assert_eq!(ix.known_blobs().unwrap().len(), 4);
        assert_eq!(ix.pack_names().unwrap().len(), 4);
    }

    /// A cache written by an older garret still has the index by pack: it is dropped on open.
    #[test]
    fn the_old_index_by_pack_is_dropped_on_open() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("index.sqlite");
        let repo = Id([5; 32]);
        let (mut ix, _) = Index::open(&p, &repo).unwrap();
        ix.add_pack(
            "p1",
            100,
            &[PackEntry { kind: 1, id: Id([1; 32]), offset: 0, length: 40, raw_length: 12, within: None }],
        )
        .unwrap();
        drop(ix);
        let index_count = |conn: &Connection| -> i64 {
            conn.query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'blobs_by_pack'", [], |r| r.get(0)).unwrap()
        };
        let conn = Connection::open(&p).unwrap();
        conn.execute_batch("CREATE INDEX blobs_by_pack ON blobs(pack)").unwrap();
        assert_eq!(index_count(&conn), 1);
        drop(conn);
        let (ix, fresh) = Index::open(&p, &repo).unwrap();
        assert!(!fresh, "the cache is kept, only its index is dropped");
        assert_eq!(ix.known_blobs().unwrap().len(), 1);
        drop(ix);
        assert_eq!(index_count(&Connection::open(&p).unwrap()), 0);
    }
}
