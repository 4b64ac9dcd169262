//! Blob envelopes: authentication, frame header, zstd bounds, id check.
#![no_main]
use garret::crypto::{Keys, MasterKey};
use garret::id::{Id, ObjectType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = Keys::derive(&MasterKey { enc: [1; 32], id: [2; 32], chunker: [3; 32] }, Id([4; 32]), 1);
    let _ = garret::blob::open(&keys, ObjectType::Data, &Id([5; 32]), data);
    // The plaintext decoders behind the envelope, reached directly.
    if let Some((&m, rest)) = data.split_first() {
        let _ = garret::compress::decompress(m, rest, 16 << 20);
    }
});
