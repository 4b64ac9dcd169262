//! Item and archive CBOR decoding (what a decrypted tree or archive blob holds).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    for _ in 0..1000 {
        match ciborium::from_reader::<garret::archive::item::Item, _>(&mut r) {
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = ciborium::from_reader::<garret::archive::Archive, _>(data);
});
