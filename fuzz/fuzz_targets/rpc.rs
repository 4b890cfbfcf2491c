//! The RPC request path on arbitrary input, past the frame checksum: the input is shaped
//! into an RPC frame (its CRC computed by the encoder), followed by raw bytes, and run
//! through what the server does with a request: frame decoding, the RPC split, the method
//! name, the argument's decoding per codec and the reply's encoding. Never a panic; a
//! request that decodes gets a reply that decodes back to the same sequence and method.
//!
//! Input: flags (1 byte), sequence (4), claimed method length (1), method+argument bytes
//! (up to the first 0xFF), then raw trailing bytes fed after the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner::plugins::rpc::services::{decode_arg, encode_reply, Reply};
use ringrunner_protocol::frame::{Flags, FrameHeader};
use ringrunner_protocol::rpc::{encode_rpc_reply, RpcMessage};
use ringrunner_protocol::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<6>() else {
        return;
    };
    let flags = Flags(head[0]);
    let seq = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let claimed = u32::from(head[5]);
    let (payload, trailing) = match rest.iter().position(|&b| b == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let mut wire = Vec::new();
    let Ok(header) = FrameHeader::with_options(flags, &[seq, claimed], payload.len() as u32) else {
        return;
    };
    header.encode_frame_into(payload, &mut wire).unwrap();
    wire.extend_from_slice(trailing);

    let mut decoder = FrameDecoder::new(1 << 20);
    decoder.feed(&wire);
    while let Ok(Some(frame)) = decoder.next_frame() {
        let Ok(request) = RpcMessage::from_frame(&frame) else {
            continue;
        };
        let text = match request.service_method() {
            Ok(_) => match decode_arg(request.codec(), request.body) {
                Ok(arg) => match encode_reply(request.codec(), Reply::Json(arg)) {
                    Ok(_) => "ok".to_owned(),
                    Err(error) => error,
                },
                Err(error) => error,
            },
            Err(error) => error.to_string(),
        };
        let _ = encode_reply(request.codec(), Reply::Bytes(request.body.to_vec()));
        let mut reply = Vec::new();
        encode_rpc_reply(&request, Err(&text), &mut reply).unwrap();
        let mut reply_decoder = FrameDecoder::new(u32::MAX);
        reply_decoder.feed(&reply);
        let reply_frame = reply_decoder.next_frame().unwrap().unwrap();
        let decoded = RpcMessage::from_frame(&reply_frame).unwrap();
        assert_eq!((decoded.seq, decoded.method), (request.seq, request.method));
        assert!(decoded.is_error());
    }
});
