//! The multipart splitter on arbitrary bytes: the first line (up to 70 bytes) is the
//! boundary, the rest the body. Never a panic; every part is a slice of the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner_protocol::http::multipart;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (boundary, body) = data.split_at(split);
    let _ = multipart::boundary(boundary);
    if boundary.is_empty() || boundary.len() > 70 {
        return;
    }
    if let Ok(parts) = multipart::parse(body, boundary) {
        assert!(parts.len() <= multipart::MAX_PARTS);
        let range = body.as_ptr_range();
        for part in parts {
            assert!(!part.name.is_empty());
            assert!(range.start <= part.data.as_ptr() && part.data.as_ptr_range().end <= range.end);
        }
    }
});
