//! Key file parsing and parameter validation (the KDF itself is not run: it is slow by design).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kf) = garret::crypto::keyfile::KeyFile::parse(data) {
        if let Some(p) = kf.kdf {
            let _ = p.validate();
        }
    }
});
