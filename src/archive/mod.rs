//! Archives: the archive object, its items and the item stream (repo-format.md, "Archives").

pub mod blob_lists;
pub mod item;
pub mod stream;

use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::id::{Id, ObjectType};
use crate::repository::{ArchiveEntry, Repository};
use serde::{Deserialize, Serialize};

pub const ARCHIVE_VERSION: u32 = 1;
/// The version of archives with `unmarked_masters` (repo-format.md 11.1): readers that do not
/// know the key refuse them instead of failing on their hardlinks.
pub const ARCHIVE_VERSION_UNMARKED: u32 = 2;

/// Sizes recorded when the archive was made (`garret info`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Bytes of file content read.
    pub original_size: u64,
    /// Stored bytes of every chunk the archive references (duplicates counted each time).
    pub compressed_size: u64,
    /// Stored bytes this archive added to the repository.
    pub deduplicated_size: u64,
    pub nfiles: u64,
    /// Items of any kind.
    pub nitems: u64,
    /// Chunk references: every file's chunks plus the item stream's tree chunks (duplicates
    /// counted each time). Absent in archives made before garret recorded it: [`totals`]
    /// counts those from their items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nchunks: Option<u64>,
}

/// Sizes over the whole repository, as borg's "All archives" and "Chunk index" lines show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Every archive's original size added up.
    pub total_size: u64,
    /// Every archive's compressed size added up.
    pub total_csize: u64,
    /// Chunk references over every archive, each archive's own object included (as borg counts
    /// its archive metadata chunk).
    pub total_chunks: u64,
    /// Blobs in the repository, each counted once.
    pub unique_chunks: u64,
    /// Their plaintext bytes.
    pub unique_size: u64,
    /// Their stored bytes: what the repository holds.
    pub unique_csize: u64,
}

/// [`Totals`] over the archives in the manifest (each archive object is read; the item stream
/// too for archives without a recorded chunk count). An archive that cannot be read is left out
/// rather than fail a summary: `check` is what reports damage.
pub fn totals(repo: &Repository) -> Result<Totals> {
    let (unique_chunks, unique_size, unique_csize) = repo.index().totals()?;
    let mut t = Totals { unique_chunks, unique_size, unique_csize, ..Default::default() };
    for a in repo.manifest().archives.iter().filter_map(|e| Archive::load(repo, e).ok()) {
        let Ok(nchunks) = a.chunk_count(repo) else { continue };
        t.total_size += a.stats.original_size;
        t.total_csize += a.stats.compressed_size;
        t.total_chunks += nchunks + 1;
    }
    Ok(t)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Archive {
    pub version: u32,
    pub name: String,
    pub hostname: String,
    pub username: String,
    /// RFC 3339 with the local offset.
    pub time_start: String,
    pub time_end: String,
    pub command_line: Vec<String>,
    /// Tree chunks of the item stream, in order.
    pub items: Vec<Id>,
    pub stats: ArchiveStats,
    #[serde(default)]
    pub comment: String,
    /// First names of hardlinked files may lack `hardlink_master` (archives imported from tar):
    /// readers find them with [`Archive::hardlink_sources`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unmarked_masters: bool,
    /// The command line of the last `recreate` that rewrote this archive (empty: never).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recreated: Vec<String>,
}

/// Refuse names that cannot round-trip through `REPO::NAME` or a mount point directory.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::InvalidArchiveName(name.to_string(), why.to_string()));
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.contains('/') {
        return bad("it contains '/'");
    }
    if name.contains("::") {
        return bad("it contains '::'");
    }
    if name == "." || name == ".." {
        return bad("it is a relative directory name");
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("it contains control characters");
    }
    if name.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    Ok(())
}

impl Archive {
    /// Store the archive object; returns its id and the stored bytes it added.
    pub fn save(&self, repo: &mut Repository) -> Result<(Id, u64)> {
        let mut buf = Vec::new();
        ciborium::into_writer(self, &mut buf).expect("serializing to memory");
        repo.save_blob(ObjectType::Archive, &buf, Compression::Zstd(3))
    }

    /// Load the archive the manifest entry names; its stored name must match the entry.
    pub fn load(repo: &Repository, entry: &ArchiveEntry) -> Result<Archive> {
        let a = Self::load_object(repo, &entry.id, &format!("archive {:?}", entry.name))?;
        if a.name != entry.name {
            return Err(Error::integrity(format!("archive {:?}", entry.name), format!("object is named {:?}", a.name)));
        }
        Ok(a)
    }

    /// Load the archive object `id` whatever the manifest says (`what` names it in errors):
    /// archives a mount still shows after they left the manifest.
    pub fn load_object(repo: &Repository, id: &Id, what: &str) -> Result<Archive> {
        let buf = repo.load_blob(ObjectType::Archive, id)?;
        let a: Archive = ciborium::from_reader(&buf[..]).map_err(|e| Error::malformed(what, e.to_string()))?;
        if a.version > ARCHIVE_VERSION_UNMARKED {
            return Err(Error::malformed(what, format!("archive version {} is newer than this garret", a.version)));
        }
        Ok(a)
    }

    /// Store this archive object and commit a manifest that adds it (the last step of every
    /// create). Returns the archive's id.
    pub fn commit(&self, repo: &mut Repository) -> Result<Id> {
        validate_name(&self.name)?;
        if repo.manifest().find(&self.name).is_some() {
            return Err(Error::ArchiveExists(self.name.clone()));
        }
        let (id, _) = self.save(repo)?;
        let mut archives = repo.manifest().archives.clone();
        archives.push(ArchiveEntry {
            name: self.name.clone(),
            id,
            time: self.time_start.clone(),
            hostname: self.hostname.clone(),
            username: self.username.clone(),
        });
        repo.commit(archives)?;
        Ok(id)
    }

    /// Write an archive made of the given items as they are (no filesystem involved): used by
    /// import paths and by tests that need archives no honest create would make.
    pub fn write_items(repo: &mut Repository, name: &str, items: &[item::Item]) -> Result<Id> {
        let mut w = stream::ItemStreamWriter::new(repo);
        for it in items {
            w.push(repo, it)?;
        }
        let (ids, _, _) = w.finish(repo)?;
        let nchunks = ids.len() as u64 + items.iter().map(|i| i.chunks.len() as u64).sum::<u64>();
        let now = crate::repository::now_rfc3339();
        let a = Archive {
            version: ARCHIVE_VERSION_UNMARKED,
            name: name.to_string(),
            hostname: crate::repository::lock::hostname(),
            username: String::new(),
            time_start: now.clone(),
            time_end: now,
            command_line: vec![],
            items: ids,
            stats: ArchiveStats { nitems: items.len() as u64, nchunks: Some(nchunks), ..Default::default() },
            comment: String::new(),
            unmarked_masters: true,
            recreated: vec![],
        };
        a.commit(repo)
    }

    /// The archive's chunk references ([`ArchiveStats::nchunks`]), counted from its items when
    /// it was made before garret recorded them.
    pub fn chunk_count(&self, repo: &Repository) -> Result<u64> {
        if let Some(n) = self.stats.nchunks {
            return Ok(n);
        }
        let mut n = self.items.len() as u64;
        for it in self.items(repo) {
            n += it?.chunks.len() as u64;
        }
        Ok(n)
    }

    pub fn items<'r>(&self, repo: &'r Repository) -> stream::ItemReader<'r> {
        stream::ItemReader::new(repo, self.items.clone())
    }

    /// For archives with `unmarked_masters`: the paths later hardlink items name as their source
    /// (one extra pass over the item stream). `None` when `hardlink_master` flags are reliable.
    pub fn hardlink_sources(&self, repo: &Repository) -> Result<Option<std::collections::HashSet<Vec<u8>>>> {
        if !self.unmarked_masters {
            return Ok(None);
        }
        let mut set = std::collections::HashSet::new();
        for it in self.items(repo) {
            let it = it?;
            if let (item::Kind::Hardlink, Some(src)) = (it.kind, it.source) {
                set.insert(src);
            }
        }
        Ok(Some(set))
    }
}

/// Whether `it` is the first name of a hardlinked file, given [`Archive::hardlink_sources`].
pub fn is_master(it: &item::Item, sources: &Option<std::collections::HashSet<Vec<u8>>>) -> bool {
    it.hardlink_master || (it.kind == item::Kind::File && sources.as_ref().is_some_and(|s| s.contains(&it.path)))
}

/// The blobs each archive of `entries` references (its object, its item stream's chunks, its
/// files' chunks; sorted, each once), handed to `f` with the archive's position in `entries`, in
/// order. Decoding the item streams is the cost, so a few archives are read at a time in
/// parallel.
fn each_archive_blobs(
    repo: &Repository,
    entries: &[ArchiveEntry],
    mut f: impl FnMut(usize, Vec<Id>) -> Result<()>,
) -> Result<()> {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads().max(1);
    for (b, batch) in entries.chunks(threads).enumerate() {
        let blobs: Vec<Result<Vec<Id>>> = batch
            .par_iter()
            .map(|entry| {
                let a = Archive::load(repo, entry)?;
                let mut ids = a.items.clone();
                ids.push(entry.id);
                for it in a.items(repo) {
                    ids.extend(it?.chunks.iter().map(|c| c.0));
                }
                ids.sort_unstable();
                ids.dedup();
                Ok(ids)
            })
            .collect();
        for (j, ids) in blobs.into_iter().enumerate() {
            f(b * threads + j, ids?)?;
        }
    }
    Ok(())
}

/// What deleting the archives `gone` (their objects, loaded while still in the manifest) takes
/// from the repository, as borg's "Deleted data" line: their original sizes, their compressed
/// sizes, and the stored bytes of every blob they reference that no archive left in the manifest
/// references, each counted once (what `compact` frees). Reads every remaining archive's items.
pub fn freed_by(repo: &Repository, gone: &[(Id, Archive)]) -> Result<(u64, u64, u64)> {
    let marks = crate::known::Marks::new(repo.index().known_blobs()?);
    let gone_ids: std::collections::HashSet<Id> = gone.iter().map(|(id, _)| *id).collect();
    let left: Vec<ArchiveEntry> =
        repo.manifest().archives.iter().filter(|e| !gone_ids.contains(&e.id)).cloned().collect();
    each_archive_blobs(repo, &left, |_, ids| {
        ids.iter().for_each(|id| {
            marks.mark(id);
        });
        Ok(())
    })?;
    let (mut original, mut compressed, mut freed) = (0u64, 0u64, 0u64);
    let mut take = |id: &Id| {
        if !marks.is_marked(id) {
            freed += marks.known().get(id).copied().unwrap_or(0) as u64;
            marks.mark(id);
        }
    };
    for (id, a) in gone {
        original += a.stats.original_size;
        compressed += a.stats.compressed_size;
        take(id);
        a.items.iter().for_each(&mut take);
        for it in a.items(repo) {
            it?.chunks.iter().for_each(|c| take(&c.0));
        }
    }
    Ok((original, compressed, freed))
}

/// For each archive in `wanted`: the stored bytes of the blobs (its object, its item stream's
/// chunks, its files' chunks) that no other archive in the manifest references, each counted
/// once. That is borg's "This archive" deduplicated size in `info`: what deleting that archive
/// alone would let `compact` free now. The blobs of each archive come from its list in
/// `cache_dir` ([`blob_lists`]); the item streams of archives without one are read (a few at a
/// time in parallel) and their lists written.
pub fn unique_to(
    repo: &Repository,
    wanted: &[Id],
    cache_dir: Option<&std::path::Path>,
) -> Result<std::collections::HashMap<Id, u64>> {
    use std::collections::hash_map::Entry;
    // Which archive (position in the manifest) references a blob; SHARED once a second one does.
    const SHARED: u32 = u32::MAX;
    let mut owner: std::collections::HashMap<u64, u32, std::hash::BuildHasherDefault<crate::id::PassThrough>> =
        Default::default();
    let mut note = |i: usize, prefixes: &[u64]| {
        let i = i as u32; // a manifest holds far fewer than 2^32 archives
        for &p in prefixes {
            match owner.entry(p) {
                Entry::Vacant(v) => {
                    v.insert(i);
                }
                Entry::Occupied(mut o) => {
                    o.insert(SHARED);
                }
            }
        }
    };
    let archives = &repo.manifest().archives;
    let lists = blob_lists::BlobLists::new(cache_dir, &repo.config().id);
    let mut missing = vec![];
    for (i, entry) in archives.iter().enumerate() {
        match lists.get(&entry.id) {
            Some(prefixes) => note(i, &prefixes),
            None => missing.push((i, entry.clone())),
        }
    }
    let entries: Vec<ArchiveEntry> = missing.iter().map(|(_, e)| e.clone()).collect();
    each_archive_blobs(repo, &entries, |j, ids| {
        let prefixes = blob_lists::prefixes(&ids);
        lists.put(&entries[j].id, &prefixes);
        note(missing[j].0, &prefixes);
        Ok(())
    })?;
    lists.retain(&archives.iter().map(|e| e.id).collect());
    let mut sizes: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    for (blob, &stored) in repo.index().known_blobs()?.iter() {
        match owner.get(&blob_lists::prefix(blob)) {
            Some(&i) if i != SHARED => *sizes.entry(i).or_default() += stored as u64,
            _ => {}
        }
    }
    Ok(archives
        .iter()
        .enumerate()
        .filter(|(_, e)| wanted.contains(&e.id))
        .map(|(i, e)| (e.id, sizes.get(&(i as u32)).copied().unwrap_or(0)))
        .collect())
}

/// How many times each chunk is referenced by the files of every archive in the manifest (one
/// pass over all their items): borg's chunk reference counts, for `list`'s `dsize`, `dcsize`
/// and `unique_chunks`. Hardlinks share their first name's chunks and add no references.
pub fn chunk_refcounts(repo: &Repository) -> Result<std::collections::HashMap<Id, u32>> {
    let mut refs = std::collections::HashMap::new();
    for entry in &repo.manifest().archives {
        for it in Archive::load(repo, entry)?.items(repo) {
            for c in it?.chunks {
                let n = refs.entry(c.0).or_insert(0u32);
                *n = n.saturating_add(1);
            }
        }
    }
    Ok(refs)
}

/// Find an archive by name in the current manifest.
pub fn lookup<'m>(repo: &'m Repository, name: &str) -> Result<&'m ArchiveEntry> {
    repo.manifest().find(name).ok_or_else(|| Error::NoSuchArchive(name.to_string()))
}

/// Remove archives from the manifest in one commit. Every name must exist, or nothing changes.
/// Their data stays in the packs until `compact`.
pub fn delete(repo: &mut Repository, names: &[String]) -> Result<Vec<ArchiveEntry>> {
    for n in names {
        lookup(repo, n)?;
    }
    let (gone, keep): (Vec<ArchiveEntry>, Vec<ArchiveEntry>) =
        repo.manifest().archives.iter().cloned().partition(|a| names.contains(&a.name));
    if !gone.is_empty() {
        repo.commit(keep)?;
    }
    Ok(gone)
}

/// Give an archive a new name: a new archive object under the new name replaces the old one in
/// the manifest (the object carries its name, so the manifest entry cannot be renamed alone).
pub fn rename(repo: &mut Repository, old: &str, new: &str) -> Result<Id> {
    validate_name(new)?;
    let entry = lookup(repo, old)?.clone();
    if repo.manifest().find(new).is_some() {
        return Err(Error::ArchiveExists(new.to_string()));
    }
    let mut a = Archive::load(repo, &entry)?;
    a.name = new.to_string();
    let (id, _) = a.save(repo)?;
    let archives = repo
        .manifest()
        .archives
        .iter()
        .map(|e| if e.name == old { ArchiveEntry { name: new.to_string(), id, ..e.clone() } } else { e.clone() })
        .collect();
    repo.commit(archives)?;
    Ok(id)
}
