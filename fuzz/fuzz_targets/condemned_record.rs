//! Records of condemned packs (`condemned/`): unauthenticated CBOR, bounded and checked names.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = garret::repository::condemned::decode_entries("fuzz", data) {
        for (name, _) in entries {
            assert!(name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
    }
});
