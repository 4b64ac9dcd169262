//! Repository config parsing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = garret::repository::Config::parse(data, std::path::Path::new("fuzz"));
});
