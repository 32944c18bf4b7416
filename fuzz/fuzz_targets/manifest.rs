//! Decoding any bytes as a checkpoint manifest returns `Ok` or `Err`, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flintlock::checkpoint::ManifestBody::decode(data, std::path::Path::new("fuzz"));
});
