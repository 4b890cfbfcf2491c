//! The kv items' RFC 3339 expiry times on arbitrary text: a time or Go's parse error, never a
//! panic (nor an overflow on extreme dates).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ringrunner::plugins::kv::rfc3339::parse(text);
    }
});
