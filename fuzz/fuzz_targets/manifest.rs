//! Manifest objects under fixed keys.
#![no_main]
use garret::crypto::{Keys, MasterKey};
use garret::id::Id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = Keys::derive(&MasterKey { enc: [1; 32], id: [2; 32], chunker: [3; 32] }, Id([4; 32]), 1);
    let _ = garret::repository::Manifest::open(&keys, 1, data);
    let _ = ciborium::from_reader::<garret::repository::Manifest, _>(data);
});
