//! The RPC request decoder on arbitrary bytes: never a panic; a request that decodes gets a
//! reply that decodes back to the same sequence number and method.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner_protocol::rpc::{encode_rpc_reply, RpcMessage};
use ringrunner_protocol::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::new(1 << 20);
    decoder.feed(data);
    while let Ok(Some(frame)) = decoder.next_frame() {
        let Ok(request) = RpcMessage::from_frame(&frame) else {
            continue;
        };
        let text = match request.service_method() {
            Ok(_) => "ok".to_owned(),
            Err(error) => error.to_string(),
        };
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
