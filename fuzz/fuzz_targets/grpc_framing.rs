//! The gRPC unary reader, `grpc-timeout` and `grpc-message` decoders on arbitrary bytes in
//! arbitrary splits: never a panic, never a buffer past the limit, and a message that
//! reads whole is the bytes its prefix announced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner_protocol::grpc::{decode_message, encode_message, parse_timeout, UnaryReader};

fuzz_target!(|data: &[u8]| {
    let Some((&control, wire)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control & 0x3f).max(1);
    let max = u64::from(control) * 7;
    let mut reader = UnaryReader::new(max, control & 0x40 != 0);
    let mut failed = false;
    for piece in wire.chunks(chunk) {
        if reader.feed(piece).is_err() {
            failed = true;
            break;
        }
    }
    if !failed {
        if let Ok((message, _)) = reader.finish() {
            assert!(message.len() as u64 <= max);
            assert_eq!(message.as_slice(), &wire[5..5 + message.len()]);
        }
    }
    let _ = parse_timeout(wire);
    let text = decode_message(wire);
    assert_eq!(decode_message(encode_message(&text).as_bytes()), text);
});
