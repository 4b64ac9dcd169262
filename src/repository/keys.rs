//! Key management without opening the repository's data: export the key file (recovery kit),
//! import it back, change the passphrase. The master key never changes, so no stored object
//! does; only the key file is replaced (atomically, by rename).

use super::{config::Config, keyfile_path, ClientDirs, Encryption, CONFIG_FILE, REPOKEY_FILE};
use crate::backend::LocalBackend;
use crate::crypto::keyfile::KeyFile;
use crate::error::{Error, IoContext, Result};
use std::path::Path;

fn config(path: &Path) -> Result<Config> {
    let bytes = match std::fs::read(path.join(CONFIG_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotARepository(path.to_path_buf())),
        Err(e) => return Err(Error::io(format!("reading config of {}", path.display()), e)),
    };
    Config::parse(&bytes, path)
}

/// The config of the repository at `path` (no passphrase needed: it is not secret).
pub fn repository_config(path: &Path) -> Result<Config> {
    config(path)
}

/// The repository id (hex) of the repository at `path`.
pub fn repository_id(path: &Path) -> Result<String> {
    Ok(config(path)?.id)
}

/// The key file's bytes (wherever the encryption mode keeps it).
pub fn export(path: &Path, client: &ClientDirs) -> Result<Vec<u8>> {
    let c = config(path)?;
    match c.encryption {
        Encryption::Keyfile => {
            let kp = keyfile_path(client, &c.repo_id());
            std::fs::read(&kp).ctx(|| format!("reading key file {}", kp.display()))
        }
        _ => LocalBackend::new(path).get(REPOKEY_FILE),
    }
}

fn store(path: &Path, client: &ClientDirs, c: &Config, kf: &KeyFile) -> Result<()> {
    let bytes = kf.to_json();
    match c.encryption {
        Encryption::Keyfile => crate::client_file::replace(
            &keyfile_path(client, &c.repo_id()),
            &bytes,
            crate::client_file::Durability::Synced,
        ),
        _ => LocalBackend::new(path).replace(REPOKEY_FILE, &bytes),
    }
}

/// Install an exported key file. It must belong to this repository and open with `passphrase`
/// (checked before anything is written).
pub fn import(path: &Path, client: &ClientDirs, bytes: &[u8], passphrase: &dyn Fn() -> Result<Vec<u8>>) -> Result<()> {
    let c = config(path)?;
    let kf = KeyFile::parse(bytes)?;
    let pass = if kf.needs_passphrase() { Some(passphrase()?) } else { None };
    kf.unwrap(&c.repo_id(), pass.as_deref(), path)?;
    store(path, client, &c, &kf)
}

/// Re-wrap the master key under a new passphrase (same KDF parameters unless `kdf` is given).
pub fn change_passphrase(
    path: &Path,
    client: &ClientDirs,
    old: &[u8],
    new: &[u8],
    kdf: Option<crate::crypto::keyfile::KdfParams>,
) -> Result<()> {
    let c = config(path)?;
    if c.encryption == Encryption::None {
        return Err(Error::Key("this repository is not encrypted (-e none): it has no passphrase".into()));
    }
    let kf = KeyFile::parse(&export(path, client)?)?;
    let master = kf.unwrap(&c.repo_id(), Some(old), path)?;
    let params = kdf.or(kf.kdf).ok_or_else(|| Error::Key("key file without KDF parameters".into()))?;
    let new_kf = KeyFile::wrap(&master, &c.repo_id(), new, params)?;
    store(path, client, &c, &new_kf)
}
