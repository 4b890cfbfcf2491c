//! The frame decoder and the relay payload decoders on arbitrary bytes in arbitrary splits:
//! never a panic, and every frame it yields re-encodes to the bytes it came from. The first
//! header's CRC is fixed up, so the fuzzer gets past the checksum to the header and payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner_protocol::payload::{ServerMessage, WorkerMessage};
use ringrunner_protocol::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so splits are explored too.
    let Some((&split, wire)) = data.split_first() else {
        return;
    };
    let mut wire = wire.to_vec();
    if let Some(first_six) = wire.first_chunk::<6>() {
        let crc = ringrunner_protocol::frame::header_crc(first_six).to_le_bytes();
        if let Some(slot) = wire.get_mut(6..10) {
            slot.copy_from_slice(&crc);
        }
    }
    let wire = wire.as_slice();
    let chunk = usize::from(split).max(1);
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut consumed = 0;
    for piece in wire.chunks(chunk) {
        decoder.feed(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let mut re_encoded = Vec::new();
                    frame
                        .header
                        .encode_frame_into(frame.payload, &mut re_encoded)
                        .unwrap();
                    assert_eq!(re_encoded, wire[consumed..consumed + re_encoded.len()]);
                    consumed += re_encoded.len();
                    let _ = WorkerMessage::from_frame(&frame);
                    let _ = ServerMessage::from_frame(&frame);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    let _ = decoder.finish();
});
