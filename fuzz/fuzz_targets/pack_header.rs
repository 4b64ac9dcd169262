//! Whole pack files (trailer, header envelope, header CBOR, entry bounds) under fixed keys.
#![no_main]
use garret::crypto::{Keys, MasterKey};
use garret::id::Id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = Keys::derive(&MasterKey { enc: [1; 32], id: [2; 32], chunker: [3; 32] }, Id([4; 32]), 1);
    let _ = garret::pack::parse_pack(&keys, data, "fuzz");
});
