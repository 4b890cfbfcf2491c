//! The .proto reader on arbitrary text: a hostile proto file must fail start-up cleanly
//! (an error, never a panic, a stack overflow or a hang).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(source) = std::str::from_utf8(data) {
        let _ = ringrunner::plugins::grpc::parse_proto_source("fuzz.proto", source);
    }
});
