//! A repository: init and open, keys, the writer lock, loading and saving blobs, and the commit
//! protocol (repo-format.md, "Commit protocol").
//!
//! This is the only module that combines the storage layers ([`backend`](crate::backend),
//! [`pack`](crate::pack), [`index`](crate::index), [`crypto`](crate::crypto)). Write order is
//! always: pack files (durable) -> index rows -> manifest. The SQLite index is reconciled with the
//! pack files on every open, so a crash between any two steps loses nothing that was durable:
//! packs written by a killed run are indexed by the next open and their blobs reused.

pub mod bundles;
pub mod condemned;
pub mod config;
pub mod keys;
pub mod lock;
pub mod manifest;
pub mod pack_writer;
pub mod state;

use crate::backend::LocalBackend;
use crate::blob::{self, SealedBlob};
use crate::compress::Compression;
use crate::crypto::keyfile::{KdfParams, KeyFile};
use crate::crypto::{Keys, MasterKey};
use crate::error::{Error, IoContext, Result};
use crate::faults;
use crate::id::{Id, ObjectType};
use crate::index::{self, Index};
use crate::known::KnownBlobs;
use crate::pack::{self, PackBuilder, PackEntry};
pub use config::{Config, Encryption, FORMAT_VERSION};
use lock::Lock;
pub use manifest::{ArchiveEntry, Manifest};
use state::ClientState;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const CONFIG_FILE: &str = "config";
pub const REPOKEY_FILE: &str = "key";
pub const INDEX_FILE: &str = "index.sqlite";
/// In the client's per-repository state directory: the index file as this client last left it
/// (repo-format.md section 12), so an untouched index is not `quick_check`ed at every open.
pub const INDEX_STAMP_FILE: &str = "index-stamp";
pub const DATA_DIR: &str = "data";
/// Damaged packs set aside by `check --repair`.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Where client-side files live (the CLI fills this from the environment).
#[derive(Clone, Debug)]
pub struct ClientDirs {
    /// Per-repository security state (rollback and key-change detection).
    pub security: PathBuf,
    /// Key files of `-e keyfile` repositories.
    pub keys: PathBuf,
    /// The key file to use instead of one under `keys` (GARRET_KEY_FILE, as BORG_KEY_FILE).
    pub key_file: Option<PathBuf>,
}

/// Supplies the passphrase when (and only when) one is needed.
pub type PassphraseFn<'a> = &'a dyn Fn() -> Result<Vec<u8>>;

pub struct OpenOptions<'a> {
    pub passphrase: PassphraseFn<'a>,
    pub client: ClientDirs,
    /// `Some(wait)`: take the exclusive writer lock, waiting up to `wait`.
    pub write_lock: Option<Duration>,
    /// Accept the repository's current manifest and key even if this client remembers a newer
    /// manifest or another key (`garret adopt`).
    pub adopt: bool,
}

/// Durable packs indexed together in one SQLite transaction, unless they hold [`INDEX_ROWS`]
/// blobs first.
const INDEX_BATCH: usize = 64;
/// Rows indexed per transaction (about 14 MiB of pack entries held at once). Each transaction
/// journals every page of the table its rows land on, and ids are random, so with small chunks
/// fewer, larger transactions write far less.
const INDEX_ROWS: usize = 1 << 18;

pub struct Repository {
    path: PathBuf,
    backend: LocalBackend,
    config: Config,
    keys: std::sync::Arc<Keys>,
    key_fingerprint: Id,
    client: ClientDirs,
    index: Index,
    manifest: Manifest,
    manifest_hash: Id,
    /// Messages for the user collected while opening (stale lock broken, packs re-indexed).
    pub warnings: Vec<String>,
    /// Packs being filled, one per [`Slot`].
    pending: [PackBuilder; 3],
    known: Option<KnownBlobs>,
    writer: Option<pack_writer::PackWriter>,
    /// Durable packs not yet in the index (see [`index_written`](Self::index_written)).
    unindexed: Vec<pack_writer::Written>,
    /// The condemned packs (section 13.1), read on open and kept current by
    /// [`set_condemned`](Self::set_condemned).
    condemned: condemned::Condemned,
    written: WriteStats,
    /// Bundles opened lately, for reads of their other members.
    bundles: bundles::BundleCache,
    // Declared last: dropped after the writer thread has finished.
    _lock: Option<Lock>,
}

/// Figures of one write session, for `--stats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteStats {
    pub packs_written: u64,
    pub bytes_written: u64,
}

/// Where keyfile mode keeps the key of repository `repo` on this client.
pub fn keyfile_path(client: &ClientDirs, repo: &Id) -> PathBuf {
    client.key_file.clone().unwrap_or_else(|| client.keys.join(repo.hex()))
}

impl Repository {
    /// Create a new repository at `path` (which must not exist or be an empty directory).
    pub fn init(
        path: &Path,
        encryption: Encryption,
        passphrase: Option<&[u8]>,
        kdf: KdfParams,
        client: &ClientDirs,
    ) -> Result<Config> {
        if path.join(CONFIG_FILE).exists() {
            return Err(Error::AlreadyExists { path: path.to_path_buf() });
        }
        if path.exists() {
            let mut rd = std::fs::read_dir(path).ctx(|| format!("reading {}", path.display()))?;
            if rd.next().is_some() {
                return Err(Error::AlreadyExists { path: path.to_path_buf() });
            }
        }
        let config = Config::new(encryption);
        let repo_id = config.repo_id();
        if encryption == Encryption::Keyfile {
            // GARRET_KEY_FILE may name an existing file: another repository's only key.
            let kp = keyfile_path(client, &repo_id);
            if kp.exists() {
                return Err(Error::Key(format!(
                    "key file {} exists already (another repository's key?): move it away or set GARRET_KEY_FILE to a new path",
                    kp.display()
                )));
            }
        }
        // Durably: a repository whose directory a power cut takes away loses every backup in it.
        crate::backend::create_dir_all_synced(path)?;
        let master = MasterKey::generate();
        let kf = match encryption {
            Encryption::None => KeyFile::plain(&master, &repo_id),
            _ => {
                let p = passphrase
                    .ok_or_else(|| Error::Key("a passphrase is required for an encrypted repository".into()))?;
                KeyFile::wrap(&master, &repo_id, p, kdf)?
            }
        };
        let backend = LocalBackend::new(path);
        match encryption {
            Encryption::Keyfile => {
                // Synced before anything is stored with the key: a power cut must not leave
                // backups behind with an empty key file.
                let kp = keyfile_path(client, &repo_id);
                crate::client_file::replace(&kp, &kf.to_json(), crate::client_file::Durability::Synced)?;
            }
            _ => backend.put(REPOKEY_FILE, &kf.to_json())?,
        }
        for d in [DATA_DIR, manifest::MANIFEST_DIR, crate::backend::TMP_DIR] {
            std::fs::create_dir_all(path.join(d)).ctx(|| format!("creating {}", path.join(d).display()))?;
        }
        let keys = Keys::derive(&master, repo_id, config.version);
        let first =
            Manifest { version: manifest::MANIFEST_VERSION, seq: 1, prev: None, time: now_rfc3339(), archives: vec![] };
        let sealed = first.seal(&keys);
        backend.put(&manifest::key_for(1), &sealed)?;
        state::save(
            &client.security,
            &repo_id,
            &ClientState { seq: 1, manifest_hash: hash(&sealed), key_fingerprint: master.fingerprint() },
            true,
        )?;
        // The config is written last: a directory without it is not yet a repository.
        backend.put(CONFIG_FILE, &config.to_json())?;
        Ok(config)
    }

    pub fn open(path: &Path, opts: OpenOptions<'_>) -> Result<Repository> {
        let backend = LocalBackend::new(path);
        let config_bytes = match std::fs::read(path.join(CONFIG_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotARepository(path.to_path_buf()))
            }
            Err(e) => return Err(Error::io(format!("reading config of {}", path.display()), e)),
        };
        let config = Config::parse(&config_bytes, path)?;
        let repo_id = config.repo_id();
        let kf_bytes = match config.encryption {
            Encryption::Keyfile => {
                let kp = keyfile_path(&opts.client, &repo_id);
                std::fs::read(&kp).map_err(|e| {
                    Error::Key(format!(
                        "key file {} for this keyfile-mode repository: {e}; import it with `garret key import`",
                        kp.display()
                    ))
                })?
            }
            _ => backend.get(REPOKEY_FILE).map_err(|e| Error::Key(format!("repository key: {e}")))?,
        };
        let kf = KeyFile::parse(&kf_bytes)?;
        if config.encryption == Encryption::None && kf.needs_passphrase()
            || config.encryption != Encryption::None && !kf.needs_passphrase()
        {
            return Err(Error::Key("the key file does not match the repository's encryption mode".into()));
        }
        let pass = if kf.needs_passphrase() { Some((opts.passphrase)()?) } else { None };
        let master = kf.unwrap(&repo_id, pass.as_deref(), path)?;
        let keys = Keys::derive(&master, repo_id, config.version);
        let mut warnings = Vec::new();
        let lock = match opts.write_lock {
            Some(wait) => Some(Lock::acquire(path, wait, &mut warnings)?),
            None => None,
        };
        if lock.is_some() {
            backend.clean_tmp()?;
        }
        // The remembered state is read before the manifest: a writer saves its new manifest's
        // state only after writing that manifest, so the manifest found next is never older
        // than what was remembered unless the repository really went back.
        let remembered = state::load(&opts.client.security, &repo_id);
        let (manifest, manifest_hash) = load_manifest(&backend, &keys)?;
        crate::faults::pause_point("manifest-loaded");
        let fingerprint = master.fingerprint();
        if let Some(st) = remembered {
            if !opts.adopt {
                if st.key_fingerprint != fingerprint {
                    return Err(Error::KeyChanged { repo: path.display().to_string() });
                }
                if manifest.seq < st.seq {
                    return Err(Error::Rollback {
                        repo: path.display().to_string(),
                        found: manifest.seq,
                        seen: st.seq,
                    });
                }
                if !descends_from(&backend, &keys, &manifest, manifest_hash, &st)? {
                    return Err(Error::Diverged { repo: path.display().to_string(), seq: st.seq });
                }
            }
        }
        let stamp = opts.client.security.join(repo_id.hex()).join(INDEX_STAMP_FILE);
        let (index, fresh) = Index::open_stamped(&path.join(INDEX_FILE), &repo_id, Some(&stamp))?;
        let mut repo = Repository {
            path: path.to_path_buf(),
            backend,
            config,
            keys: std::sync::Arc::new(keys),
            key_fingerprint: fingerprint,
            client: opts.client,
            index,
            manifest,
            manifest_hash,
            warnings,
            pending: Default::default(),
            known: None,
            writer: None,
            unindexed: Vec::new(),
            condemned: Default::default(),
            written: WriteStats::default(),
            bundles: Default::default(),
            _lock: lock,
        };
        repo.remember_manifest(opts.adopt)?;
        let (added, removed) = repo.reconcile_index()?;
        if !fresh && (added > 0 || removed > 0) {
            repo.warnings.push(format!(
                "index updated from the pack files: {added} pack(s) added, {removed} missing pack(s) dropped"
            ));
        }
        Ok(repo)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Whether small data chunks may be stored in bundles: format version 2 and later (a
    /// version-1 repository stays readable by the garret that made it).
    pub fn writes_bundles(&self) -> bool {
        self.config.version >= 2
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The keys, shared with work that outlives a borrow of the repository (sealing on the
    /// thread pool while the caller goes on).
    pub fn shared_keys(&self) -> std::sync::Arc<Keys> {
        self.keys.clone()
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn index(&self) -> &Index {
        &self.index
    }
    pub fn backend(&self) -> &LocalBackend {
        &self.backend
    }

    /// Mark this process as a reader of the repository (section 14), naming every archive of
    /// the manifest it opened, then read the manifest again: a compact keeps the data of the
    /// archives a mark names, and one that ran before the mark existed can only have freed
    /// archives the new manifest no longer lists. Narrow the mark to the archives read with
    /// [`ReaderMark::set_archives`]. `None` when the repository cannot be written here (a
    /// read-only medium, or another user's repository): no mark can be left, and reading goes on
    /// as before marks existed.
    pub fn hold(&mut self) -> Result<Option<lock::ReaderMark>> {
        let ids: Vec<Id> = self.manifest.archives.iter().map(|e| e.id).collect();
        let mark = match lock::ReaderMark::create(&self.path, &ids) {
            Ok(mark) => mark,
            Err(Error::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        self.reload_manifest()?;
        faults::pause_point("reader-held");
        Ok(Some(mark))
    }

    /// Read the current manifest again (a reader that opened a while ago); returns whether it
    /// changed. A newer one must descend from the one held, as on open (section 15).
    pub fn reload_manifest(&mut self) -> Result<bool> {
        let (manifest, manifest_hash) = load_manifest(&self.backend, &self.keys)?;
        if manifest_hash == self.manifest_hash {
            return Ok(false);
        }
        let held = ClientState {
            seq: self.manifest.seq,
            manifest_hash: self.manifest_hash,
            key_fingerprint: self.key_fingerprint,
        };
        let repo = self.path.display().to_string();
        if manifest.seq < held.seq {
            return Err(Error::Rollback { repo, found: manifest.seq, seen: held.seq });
        }
        if !descends_from(&self.backend, &self.keys, &manifest, manifest_hash, &held)? {
            return Err(Error::Diverged { repo, seq: held.seq });
        }
        self.manifest = manifest;
        self.manifest_hash = manifest_hash;
        self.remember_manifest(false)?;
        Ok(true)
    }

    fn remember_manifest(&self, adopt: bool) -> Result<()> {
        let st = ClientState {
            seq: self.manifest.seq,
            manifest_hash: self.manifest_hash,
            key_fingerprint: self.key_fingerprint,
        };
        state::save(&self.client.security, &self.config.repo_id(), &st, adopt)
    }

    /// Bring the index in line with the pack files: index packs it lacks (from their headers),
    /// except condemned ones (section 13.1), and drop packs whose files are gone. Returns
    /// (added, removed).
    pub fn reconcile_index(&mut self) -> Result<(usize, usize)> {
        self.condemned = condemned::load(&self.backend, &mut self.warnings)?;
        let skip = self.condemned.packs.clone();
        self.reconcile(&skip)
    }

    fn reconcile(&mut self, skip: &std::collections::BTreeMap<String, u64>) -> Result<(usize, usize)> {
        let on_disk: Vec<String> = self.backend.list(DATA_DIR, true)?;
        let mut indexed = self.index.pack_names()?;
        let mut added = 0;
        // Packs are indexed in batches of up to INDEX_ROWS rows, one transaction each: with a
        // transaction per pack, every pack's rows landed on pages all over the table, and each
        // such page was journaled again for each pack (rebuilding 2 million blobs in 643 packs:
        // 56 s, most of it writing the rollback journal).
        let mut batch: Vec<(String, u64, Vec<PackEntry>)> = Vec::new();
        let mut rows = 0;
        for key in &on_disk {
            let name = key.rsplit('/').next().unwrap_or_default().to_string();
            if indexed.remove(&name) || skip.contains_key(&name) {
                continue;
            }
            match self.read_pack_header(&name) {
                Ok((entries, size)) => {
                    rows += entries.len();
                    batch.push((name, size, entries));
                    added += 1;
                }
                Err(e) => self.warnings.push(format!("pack {name} is unreadable and was not indexed: {e}")),
            }
            if rows >= INDEX_ROWS {
                self.index_batch(&mut batch)?;
                rows = 0;
            }
        }
        self.index_batch(&mut batch)?;
        let removed = indexed.len();
        self.index.remove_packs(&indexed.into_iter().collect::<Vec<_>>())?;
        if added > 0 || removed > 0 {
            self.known = None;
        }
        Ok((added, removed))
    }

    /// Index the packs of `batch` (read from their headers) in one transaction, and empty it.
    fn index_batch(&mut self, batch: &mut Vec<(String, u64, Vec<PackEntry>)>) -> Result<()> {
        let packs: Vec<_> = batch.iter().map(|(n, size, e)| (n.as_str(), *size, &e[..], false)).collect();
        self.index.add_packs(&packs)?;
        batch.clear();
        Ok(())
    }

    /// Rebuild the index from the pack files alone (`check --repair`). Returns (packs indexed,
    /// packs whose header could not be read).
    /// Condemned packs are indexed too: should a blob's other copy be lost, theirs is the one
    /// left, and `compact` deletes an indexed condemned pack only once it holds nothing that is
    /// not stored elsewhere.
    pub fn rebuild_index(&mut self) -> Result<(usize, usize)> {
        self.index.clear()?;
        let before = self.warnings.len();
        let (added, _) = self.reconcile(&Default::default())?;
        Ok((added, self.warnings.len() - before))
    }

    /// Forget blobs found corrupt (their packs stay on disk).
    pub fn unindex_blobs(&mut self, ids: &[Id]) -> Result<()> {
        for id in ids {
            self.index.remove_blob(id)?;
        }
        self.known = None;
        Ok(())
    }

    pub fn pack_key(name: &str) -> String {
        format!("{DATA_DIR}/{}/{name}", &name[..2.min(name.len())])
    }

    /// Read and decrypt the header of pack `name`; returns its entries and the pack's size.
    pub fn read_pack_header(&self, name: &str) -> Result<(Vec<PackEntry>, u64)> {
        let key = Self::pack_key(name);
        let (tail, total) = self.backend.get_tail(&key, 64 * 1024)?;
        let hl = pack::header_length(&tail[tail.len().saturating_sub(4)..], total, &key)?;
        let hstart = total - 4 - hl as u64;
        let env = if hl + 4 <= tail.len() {
            tail[tail.len() - 4 - hl..tail.len() - 4].to_vec()
        } else {
            self.backend.get_range(&key, hstart, hl)?
        };
        Ok((pack::decode_header(&self.keys, &env, hstart, name)?, total))
    }

    /// Load and verify many data blobs at once, decrypting and decompressing on all cores
    /// (extract). Results come back in the order of `ids`. Blobs of one bundle are taken out by
    /// one thread, one after another, so that the bundle is opened once.
    pub fn load_many(&self, kind: ObjectType, ids: &[Id]) -> Vec<Result<Vec<u8>>> {
        use rayon::prelude::*;
        let located: Vec<Result<index::Location>> = match self.index.lookup_many(ids) {
            Ok(locs) => ids.iter().zip(locs).map(|(id, l)| l.ok_or_else(|| Error::MissingBlob(id.hex()))).collect(),
            Err(e) => {
                let msg = e.to_string();
                ids.iter().map(|_| Err(Error::malformed("index", msg.clone()))).collect()
            }
        };
        crate::faults::pause_point("blobs-located");
        // Positions of the located `ids`, grouped by bundle (every other blob in a group of its own).
        let mut groups: Vec<Vec<(usize, &index::Location)>> = Vec::new();
        let mut bundle_group: std::collections::HashMap<(&str, u64), usize> = std::collections::HashMap::new();
        for (i, loc) in located.iter().enumerate() {
            let Ok(l) = loc else { continue };
            if l.within.is_none() {
                groups.push(vec![(i, l)]);
                continue;
            }
            match bundle_group.entry((l.pack.as_str(), l.offset)) {
                std::collections::hash_map::Entry::Occupied(g) => groups[*g.get()].push((i, l)),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(groups.len());
                    groups.push(vec![(i, l)]);
                }
            }
        }
        let loaded: Vec<Vec<(usize, Result<Vec<u8>>)>> = groups
            .par_iter()
            .map(|group| {
                group
                    .iter()
                    .map(|&(i, loc)| {
                        let r = self
                            .load_located(kind, &ids[i], loc)
                            .or_else(|e| self.reload_if_moved(kind, &ids[i], loc, e));
                        (i, r)
                    })
                    .collect()
            })
            .collect();
        // Positions not located keep the lookup's error.
        let mut out: Vec<Result<Vec<u8>>> = located.into_iter().map(|l| l.map(|_| Vec::new())).collect();
        for (i, r) in loaded.into_iter().flatten() {
            out[i] = r;
        }
        out
    }

    /// Start reading the stored bytes of `ids` from disk in the background, for a
    /// [`load_many`](Self::load_many) soon after (a sequential reader's readahead). Unknown ids
    /// are skipped; the load reports them.
    pub fn prefetch(&self, ids: &[Id]) {
        let Ok(locs) = self.index.lookup_many(ids) else { return };
        // The members of a bundle share its envelope: read ahead once.
        let mut seen = std::collections::HashSet::new();
        for loc in locs.into_iter().flatten() {
            if loc.within.is_none() || seen.insert((loc.pack.clone(), loc.offset)) {
                self.backend.prefetch(&Self::pack_key(&loc.pack), loc.offset, loc.length as u64);
            }
        }
    }

    /// Load and verify blob `id` of type `kind`.
    pub fn load_blob(&self, kind: ObjectType, id: &Id) -> Result<Vec<u8>> {
        let loc = self.index.lookup(id)?.ok_or_else(|| Error::MissingBlob(id.hex()))?;
        self.load_located(kind, id, &loc).or_else(|e| self.reload_if_moved(kind, id, &loc, e))
    }

    /// A load failed because its pack is gone: a compact in another process moved the blob
    /// (long-running readers such as mount see this). Look it up again and retry once.
    fn reload_if_moved(&self, kind: ObjectType, id: &Id, loc: &index::Location, err: Error) -> Result<Vec<u8>> {
        if self.backend.exists(&Self::pack_key(&loc.pack)) {
            return Err(err);
        }
        match self.index.lookup(id) {
            Ok(Some(now)) if now.pack != loc.pack => self.load_located(kind, id, &now),
            _ => Err(err),
        }
    }
}

impl Repository {
    /// Read and open a blob whose location is known; a blob in a bundle is taken out of the
    /// bundle's content, opened once for all its members while it stays in the cache.
    fn load_located(&self, kind: ObjectType, id: &Id, loc: &index::Location) -> Result<Vec<u8>> {
        if loc.kind != kind as u8 {
            return Err(Error::integrity(
                format!("blob {}", id.hex()),
                format!("indexed as type {}, expected {:?}", loc.kind, kind),
            ));
        }
        let in_pack = |e: Error| match e {
            Error::Integrity { what, detail } => {
                Error::Integrity { what: format!("{what} in pack {}", loc.pack), detail }
            }
            other => other,
        };
        let read = || {
            self.backend.get_range(&Self::pack_key(&loc.pack), loc.offset, loc.length as usize).map_err(|e| {
                Error::integrity(format!("{kind:?} blob {} in pack {}", id.hex(), loc.pack), e.to_string())
            })
        };
        let Some(start) = loc.within else {
            return blob::open_owned(&self.keys, kind, id, read()?).map_err(in_pack);
        };
        let content = self
            .bundles
            .get_or_open(&loc.pack, loc.offset, || blob::open_bundle(&self.keys, read()?))
            .map_err(|e| match e {
                Error::Integrity { detail, .. } => {
                    Error::integrity(format!("{kind:?} blob {} (in a bundle) in pack {}", id.hex(), loc.pack), detail)
                }
                other => other,
            })?;
        blob::member(&self.keys, &content, id, start, loc.raw_length).map(|b| b.to_vec()).map_err(in_pack)
    }
}

impl Repository {
    /// The dedup set: every indexed blob id with its stored size, loaded once.
    pub fn known_blobs(&mut self) -> Result<&mut KnownBlobs> {
        if self.known.is_none() {
            self.known = Some(self.index.known_blobs()?);
        }
        Ok(self.known.as_mut().expect("just loaded"))
    }

    /// Queue a sealed blob for the current pack of its kind; writes the pack when it is full.
    /// File data and metadata (tree chunks, archive objects) go to separate packs, so damage to
    /// data leaves the archives listable, and metadata reads touch only small packs.
    /// The caller has checked [`known_blobs`](Self::known_blobs) already.
    pub fn add_sealed(&mut self, b: SealedBlob) -> Result<()> {
        let slot = if b.kind == ObjectType::Data { Slot::Data } else { Slot::Meta };
        let stored = b.stored();
        self.pending[slot as usize].add(b);
        let known = self.known_blobs()?;
        for (id, _, share) in stored {
            known.insert(id, share);
        }
        if self.pending[slot as usize].is_full() {
            self.flush_slot(slot)?;
        }
        Ok(())
    }

    /// Store `data` as a blob of type `kind` unless the repository has it; returns its id and
    /// the stored size it added (0 when deduplicated).
    pub fn save_blob(&mut self, kind: ObjectType, data: &[u8], c: Compression) -> Result<(Id, u64)> {
        let id = self.keys.blob_id(data);
        if self.known_blobs()?.contains_key(&id) {
            return Ok((id, 0));
        }
        let sealed = blob::seal(&self.keys, kind, id, data, c);
        let n = sealed.envelope.len() as u64;
        self.add_sealed(sealed)?;
        Ok((id, n))
    }

    /// Seal every pending pack and hand them to the writer thread; packs that have become
    /// durable meanwhile are indexed.
    pub fn flush_pack(&mut self) -> Result<()> {
        for slot in [Slot::Data, Slot::Meta, Slot::Moved] {
            self.flush_slot(slot)?;
        }
        Ok(())
    }

    fn flush_slot(&mut self, slot: Slot) -> Result<()> {
        if self.pending[slot as usize].is_empty() {
            return self.index_written(false);
        }
        let builder = std::mem::take(&mut self.pending[slot as usize]);
        let (parts, entries) = builder.finish(&self.keys);
        let backend = self.backend.clone();
        let writer = self.writer.get_or_insert_with(|| pack_writer::PackWriter::spawn(backend, Self::pack_key));
        let job = pack_writer::Job { parts, entries, moved: slot == Slot::Moved };
        if let Err(e) = writer.submit(job) {
            // Packs in flight are lost: forget their blobs so nothing refers to them.
            self.known = None;
            return Err(e);
        }
        self.index_written(false)
    }

    /// Index packs the writer has made durable; with `wait`, wait for all of them. Without it,
    /// durable packs are indexed [`INDEX_BATCH`] at a time (or fewer holding [`INDEX_ROWS`]
    /// blobs), in one SQLite transaction: a commit per pack (a journal file made, synced and
    /// deleted each time) cost the create pipeline's thread 0.7 s of 5.5, and 16 packs at a time
    /// cost a create of two million 1 KiB chunks 3 to 5 s more than 64. Packs left unindexed by a
    /// crash are found by the next open ([`reconcile_index`](Self::reconcile_index)), as before.
    fn index_written(&mut self, wait: bool) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else { return Ok(()) };
        match writer.completed(wait) {
            Ok(d) => self.unindexed.extend(d),
            Err(e) => {
                self.known = None;
                return Err(e);
            }
        };
        let rows = || self.unindexed.iter().map(|w| w.entries.len()).sum::<usize>();
        if self.unindexed.is_empty() || (!wait && self.unindexed.len() < INDEX_BATCH && rows() < INDEX_ROWS) {
            return Ok(());
        }
        let done = std::mem::take(&mut self.unindexed);
        let rows: Vec<_> = done.iter().map(|w| (w.name.as_str(), w.size, &w.entries[..], w.moved)).collect();
        self.index.add_packs(&rows)?;
        for w in &done {
            faults::crash_point("pack-indexed");
            self.written.packs_written += 1;
            self.written.bytes_written += w.size;
        }
        Ok(())
    }

    /// Queue a blob that compaction moves out of a pack being rewritten. Moved blobs get packs
    /// of their own, indexed as the blobs' new location once durable.
    pub fn add_moved(&mut self, b: SealedBlob) -> Result<()> {
        self.pending[Slot::Moved as usize].add(b);
        if self.pending[Slot::Moved as usize].is_full() {
            self.flush_slot(Slot::Moved)?;
        }
        Ok(())
    }

    /// Write everything pending and wait until it is durable and indexed.
    pub fn finish_writes(&mut self) -> Result<()> {
        self.flush_pack()?;
        self.index_written(true)
    }

    /// Every blob and bundle of pack `name` as stored (the pack is read whole and its header
    /// checked), a bundle once with its members in content order.
    pub fn pack_envelopes(&self, name: &str) -> Result<Vec<SealedBlob>> {
        let bytes = self.backend.get(&Self::pack_key(name))?;
        let entries = pack::parse_pack(&self.keys, &bytes, name)?;
        let mut out: Vec<SealedBlob> = Vec::new();
        let mut bundle_at: std::collections::HashMap<(u64, u32), usize> = std::collections::HashMap::new();
        for e in entries {
            let kind =
                ObjectType::from_u8(e.kind).ok_or_else(|| Error::malformed(format!("pack {name}"), "blob type"))?;
            let member = e.within.map(|start| blob::Member { id: e.id, start, len: e.raw_length });
            if let (Some(m), Some(&at)) = (member, bundle_at.get(&e.span())) {
                out[at].members.push(m);
                continue;
            }
            let envelope = bytes[e.offset as usize..(e.offset + e.length as u64) as usize].to_vec();
            match member {
                Some(m) => {
                    bundle_at.insert(e.span(), out.len());
                    out.push(SealedBlob { id: blob::BUNDLE_ID, kind, raw_len: 0, envelope, members: vec![m] });
                }
                None => out.push(SealedBlob { id: e.id, kind, raw_len: e.raw_length, envelope, members: vec![] }),
            }
        }
        for b in out.iter_mut().filter(|b| b.is_bundle()) {
            b.members.sort_by_key(|m| m.start);
            b.raw_len = b.members.iter().map(|m| m.start.saturating_add(m.len)).max().unwrap_or(0);
        }
        Ok(out)
    }

    /// Remove a pack from the index (its blobs indexed elsewhere stay).
    pub fn unindex_pack(&mut self, name: &str) -> Result<()> {
        self.unindex_packs(&[name])
    }

    /// [`unindex_pack`](Self::unindex_pack) for many packs at once (one scan of the index).
    pub fn unindex_packs<S: AsRef<str>>(&mut self, names: &[S]) -> Result<()> {
        self.index.remove_packs(names)?;
        self.known = None;
        Ok(())
    }

    /// Move a damaged pack file out of `data/` into `quarantine/` (kept for inspection; never
    /// read or indexed again). Call after [`unindex_pack`](Self::unindex_pack).
    pub fn quarantine_pack(&self, name: &str) -> Result<()> {
        let from = self.path.join(Self::pack_key(name));
        self.backend.forget(&Self::pack_key(name));
        let dir = self.path.join(QUARANTINE_DIR);
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        match std::fs::rename(&from, dir.join(name)) {
            Ok(()) => crate::backend::sync_dir(&dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("moving {} to {}", from.display(), dir.display()), e)),
        }
    }

    /// Fail if this writer's lock was broken meanwhile (see [`Lock::check_held`]); a reader,
    /// which holds no lock, always passes.
    pub fn check_lock(&self) -> Result<()> {
        self._lock.as_ref().map_or(Ok(()), |l| l.check_held())
    }

    /// Names of the pack files in `data/`.
    pub fn pack_files(&self) -> Result<std::collections::HashSet<String>> {
        let keys = self.backend.list(DATA_DIR, true)?;
        Ok(keys.iter().filter_map(|k| k.rsplit('/').next().map(String::from)).collect())
    }

    /// The condemned packs as the records say now (a compact may have condemned packs since
    /// this process opened the repository); unreadable records are skipped, as on open.
    pub fn condemned_now(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        Ok(condemned::load(&self.backend, &mut Vec::new())?.packs)
    }

    /// The condemned packs and their records (section 13.1), as read on open (malformed records
    /// were skipped with a warning then) or last set.
    pub fn condemned(&self) -> &condemned::Condemned {
        &self.condemned
    }

    /// Make `packs` the condemned set: one new record of them replaces all current records.
    pub fn set_condemned(&mut self, packs: &std::collections::BTreeMap<String, u64>) -> Result<()> {
        let records = condemned::replace(&self.backend, packs, &self.condemned.records)?;
        self.condemned = condemned::Condemned { packs: packs.clone(), records: records.into_iter().collect() };
        Ok(())
    }

    /// Delete a pack file; call only after [`unindex_pack`](Self::unindex_pack).
    pub fn delete_pack(&self, name: &str) -> Result<()> {
        self.backend.delete(&Self::pack_key(name))
    }

    /// Packs and bytes written by this process so far.
    pub fn written(&self) -> WriteStats {
        self.written
    }

    /// Commit a new archive list: flushes pending blobs, then writes manifest `seq + 1`.
    pub fn commit(&mut self, archives: Vec<ArchiveEntry>) -> Result<()> {
        self.flush_pack()?;
        self.index_written(true)?;
        faults::crash_point("before-manifest");
        faults::pause_point("before-manifest");
        self.check_lock()?;
        let next = Manifest {
            version: manifest::MANIFEST_VERSION,
            seq: self.manifest.seq + 1,
            prev: Some(self.manifest_hash),
            time: now_rfc3339(),
            archives,
        };
        let sealed = next.seal(&self.keys);
        self.backend.put(&manifest::key_for(next.seq), &sealed)?;
        faults::crash_point("manifest-written");
        self.manifest = next;
        self.manifest_hash = hash(&sealed);
        self.remember_manifest(false)?;
        // Superseded manifests are kept for a while, then removed; failure to remove is harmless.
        if self.manifest.seq > KEEP_OLD {
            for key in self.backend.list(manifest::MANIFEST_DIR, false)? {
                if manifest::seq_of_key(&key).is_some_and(|s| s + KEEP_OLD < self.manifest.seq) {
                    let _ = self.backend.delete(&key);
                }
            }
        }
        Ok(())
    }

    /// Re-key the client state to this repository's current manifest and key.
    pub fn adopt(&self) -> Result<()> {
        self.remember_manifest(true)
    }
}

const KEEP_OLD: u64 = manifest::KEEP_OLD_MANIFESTS;

/// Which pending pack a blob goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Data = 0,
    Meta = 1,
    /// Blobs moved by compaction (indexed as their new location).
    Moved = 2,
}

/// Whether `current` (whose file hashes to `current_hash`) continues the history that ends in the
/// remembered manifest: walking back through the kept manifests by their `prev` hashes reaches a
/// manifest #`st.seq` that hashes as remembered. Where the walk runs out of kept manifests (or
/// one no longer opens) before #`st.seq`, there is nothing to compare and the answer is yes.
fn descends_from(
    backend: &LocalBackend,
    keys: &Keys,
    current: &Manifest,
    current_hash: Id,
    st: &ClientState,
) -> Result<bool> {
    let (mut seq, mut hash_of_seq, mut prev) = (current.seq, current_hash, current.prev);
    while seq > st.seq {
        seq -= 1;
        let Some(bytes) = backend.get_if_exists(&manifest::key_for(seq))? else { return Ok(true) };
        hash_of_seq = hash(&bytes);
        if Some(hash_of_seq) != prev {
            return Ok(false);
        }
        if seq > st.seq {
            match Manifest::open(keys, seq, &bytes) {
                Ok(m) => prev = m.prev,
                Err(_) => return Ok(true),
            }
        }
    }
    Ok(hash_of_seq == st.manifest_hash)
}

/// The current manifest: the highest sequence number present. It must authenticate; an
/// unreadable newest manifest is an error, never a silent fallback to an older one.
fn load_manifest(backend: &LocalBackend, keys: &Keys) -> Result<(Manifest, Id)> {
    let newest = backend
        .list(manifest::MANIFEST_DIR, false)?
        .iter()
        .filter_map(|k| manifest::seq_of_key(k))
        .max()
        .ok_or_else(|| Error::integrity(format!("repository {}", backend.root().display()), "no manifest found"))?;
    let bytes = backend.get(&manifest::key_for(newest))?;
    let m = Manifest::open(keys, newest, &bytes)?;
    Ok((m, hash(&bytes)))
}

/// Plain BLAKE3 of stored bytes: pack names and manifest hashes.
pub fn hash(bytes: &[u8]) -> Id {
    Id(*blake3::hash(bytes).as_bytes())
}

pub fn now_rfc3339() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false)
}
