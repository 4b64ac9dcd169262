//! Blob and bundle envelopes: authentication, frame header, zstd bounds, id check, member bounds.
#![no_main]
use garret::crypto::{Keys, MasterKey};
use garret::id::{Id, ObjectType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = Keys::derive(&MasterKey { enc: [1; 32], id: [2; 32], chunker: [3; 32] }, Id([4; 32]), 1);
    let _ = garret::blob::open(&keys, ObjectType::Data, &Id([5; 32]), data);
    let _ = garret::blob::open_bundle(&keys, data.to_vec());
    // Members taken out of arbitrary content at arbitrary places.
    if data.len() >= 8 {
        let start = u32::from_le_bytes(data[..4].try_into().unwrap());
        let len = u32::from_le_bytes(data[4..8].try_into().unwrap());
        let _ = garret::blob::member(&keys, &data[8..], &Id([5; 32]), start, len);
    }
    // The plaintext decoders behind the envelope, reached directly.
    if let Some((&m, rest)) = data.split_first() {
        let _ = garret::compress::decompress(m, rest, 16 << 20);
    }
});
