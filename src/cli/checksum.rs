//! The content checksums that `list --format` offers as borg's (`{sha256} {path}{NL}`, to compare
//! an archive with `sha256sum` output): computed from a file's chunks as it is listed, and only
//! for the keys the format uses. Digest crates do the hashing; this module picks them by key.

use super::format::Format;
use digest::DynDigest;

/// borg 1.2's checksum keys. `blake2b` is BLAKE2b-512 and `blake2s` BLAKE2s-256 (Python's
/// defaults); `xxh64` is XXH64 with seed 0, in its canonical (big-endian) hex form.
pub const KEYS: &[&str] = &[
    "md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_224", "sha3_256", "sha3_384", "sha3_512", "blake2b",
    "blake2s", "xxh64",
];

enum Hasher {
    Digest(Box<dyn DynDigest>),
    Xxh64(xxhash_rust::xxh64::Xxh64),
}

impl Hasher {
    fn new(key: &str) -> Hasher {
        let d: Box<dyn DynDigest> = match key {
            "md5" => Box::new(md5::Md5::default()),
            "sha1" => Box::new(sha1::Sha1::default()),
            "sha224" => Box::new(sha2::Sha224::default()),
            "sha256" => Box::new(sha2::Sha256::default()),
            "sha384" => Box::new(sha2::Sha384::default()),
            "sha512" => Box::new(sha2::Sha512::default()),
            "sha3_224" => Box::new(sha3::Sha3_224::default()),
            "sha3_256" => Box::new(sha3::Sha3_256::default()),
            "sha3_384" => Box::new(sha3::Sha3_384::default()),
            "sha3_512" => Box::new(sha3::Sha3_512::default()),
            "blake2b" => Box::new(blake2::Blake2b512::default()),
            "blake2s" => Box::new(blake2::Blake2s256::default()),
            _ => return Hasher::Xxh64(xxhash_rust::xxh64::Xxh64::new(0)),
        };
        Hasher::Digest(d)
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Digest(d) => d.update(data),
            Hasher::Xxh64(x) => x.update(data),
        }
    }

    fn hex(self) -> String {
        match self {
            Hasher::Digest(d) => hex::encode(d.finalize()),
            Hasher::Xxh64(x) => format!("{:016x}", x.digest()),
        }
    }
}

/// The checksum keys one format uses.
pub struct Checksums {
    keys: Vec<&'static str>,
}

impl Checksums {
    pub fn of_format(f: &Format) -> Checksums {
        Checksums { keys: KEYS.iter().copied().filter(|k| f.uses(k)).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Each used key and the hex digest of the content `chunks` yields, in order.
    pub fn digests<E>(
        &self,
        chunks: impl Iterator<Item = Result<Vec<u8>, E>>,
    ) -> Result<Vec<(&'static str, String)>, E> {
        let mut hashers: Vec<Hasher> = self.keys.iter().map(|k| Hasher::new(k)).collect();
        for data in chunks {
            let data = data?;
            hashers.iter_mut().for_each(|h| h.update(&data));
        }
        Ok(self.keys.iter().copied().zip(hashers.into_iter().map(Hasher::hex)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers for "abc" split over two chunks (RFC 1321, FIPS 180-4, FIPS 202, RFC 7693,
    /// and XXH64's reference), so the digest picked for each key is the one borg prints.
    #[test]
    fn known_answers_whatever_the_chunking() {
        let all = Checksums { keys: KEYS.to_vec() };
        let got = all.digests([Ok::<_, ()>(b"a".to_vec()), Ok(b"bc".to_vec())].into_iter()).unwrap();
        let want = [
            ("md5", "900150983cd24fb0d6963f7d28e17f72"),
            ("sha1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            ("sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("sha3_256", "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"),
            ("blake2s", "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"),
            ("xxh64", "44bc2cf5ad770999"),
        ];
        for (k, hex) in want {
            assert_eq!(got.iter().find(|(g, _)| *g == k).unwrap().1, hex, "{k}");
        }
        let lens: Vec<usize> = got.iter().map(|(_, h)| h.len()).collect();
        assert_eq!(lens, [32, 40, 56, 64, 96, 128, 56, 64, 96, 128, 128, 64, 16]);
    }
}
