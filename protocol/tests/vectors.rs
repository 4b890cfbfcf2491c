//! Every frame of `relay-vectors.json` (checked against the real PHP client, spec
//! relay-protocol) decodes to the fields it lists, re-encodes byte for byte, and is what our
//! high-level encoders produce for the same message.

use ringrunner_protocol::payload::{
    encode_data_frame, encode_pid_reply, encode_pid_request, encode_stop, encode_stop_request,
    error_header, ControlMessage, WorkerMessage, PONG_FRAME, STREAM_STOP_FRAME,
};
use ringrunner_protocol::rpc::{encode_rpc_frame, RpcMessage};
use ringrunner_protocol::{Flags, FrameDecoder, StreamFlags};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let text = include_str!("data/relay-vectors.json");
    let Value::Array(vectors) = serde_json::from_str(text).unwrap() else {
        panic!("not an array")
    };
    assert_eq!(vectors.len(), 20, "the spec ships 20 vectors");
    vectors
}

fn unhex(text: &str) -> Vec<u8> {
    assert_eq!(text.len() % 2, 0);
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn byte_field(fields: &Value, key: &str) -> u8 {
    let text = fields[key].as_str().unwrap();
    u8::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
}

/// A text field of a vector as bytes; `hex:` marks binary content.
fn text_field(fields: &Value, key: &str) -> Vec<u8> {
    let text = fields[key].as_str().unwrap_or_else(|| panic!("no {key}"));
    match text.strip_prefix("hex:") {
        Some(hex) => unhex(hex),
        None => text.as_bytes().to_vec(),
    }
}

fn names(fields: &Value, key: &str) -> Vec<String> {
    fields[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_vector_decodes_to_its_fields_and_re_encodes() {
    for vector in vectors() {
        let name = vector["name"].as_str().unwrap();
        let fields = &vector["fields"];
        let wire = unhex(vector["hex"].as_str().unwrap());
        let mut decoder = FrameDecoder::default();
        decoder.feed(&wire);
        let frame = decoder
            .next_frame()
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: no frame"));
        let header = frame.header;

        assert_eq!(
            u64::from(header.version),
            fields["version"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(header.header_words()),
            fields["header_length_words"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            header.header_len() as u64,
            fields["header_length_bytes"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(header.flags.bits(), byte_field(fields, "flags"), "{name}");
        let mut flag_names: Vec<String> = header.flags.names().map(str::to_owned).collect();
        let mut expected_names = names(fields, "flag_names");
        flag_names.sort();
        expected_names.sort();
        assert_eq!(flag_names, expected_names, "{name}");
        assert_eq!(
            u64::from(header.payload_len),
            fields["payload_length"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            &wire[6..10],
            unhex(fields["crc_bytes_on_wire"].as_str().unwrap()),
            "{name}"
        );
        let crc = u32::from_str_radix(
            fields["crc32_of_bytes_0_5"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap();
        assert_eq!(
            crc,
            ringrunner_protocol::frame::header_crc(&wire[..6].try_into().unwrap()),
            "{name}"
        );
        assert_eq!(header.stream.bits(), byte_field(fields, "byte10"), "{name}");
        assert_eq!(
            header.stream.names().collect::<Vec<_>>(),
            names(fields, "byte10_names"),
            "{name}"
        );
        assert_eq!(header.reserved, byte_field(fields, "byte11"), "{name}");
        let options: Vec<u32> = fields["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(header.options(), options, "{name}");
        assert_eq!(
            header.encode().as_bytes(),
            unhex(fields["header_hex"].as_str().unwrap()),
            "{name}"
        );
        assert_eq!(
            frame.payload,
            unhex(fields["payload_hex"].as_str().unwrap()),
            "{name}"
        );
        check_meaning(name, fields, &frame);

        let mut re_encoded = Vec::new();
        header
            .encode_frame_into(frame.payload, &mut re_encoded)
            .unwrap();
        assert_eq!(re_encoded, wire, "{name}: re-encoding");
        assert_eq!(
            decoder.next_frame().unwrap(),
            None,
            "{name}: trailing bytes"
        );
        decoder.finish().unwrap();
    }
}

/// The payload-level fields: context/body, control/error payloads, RPC parts.
fn check_meaning(name: &str, fields: &Value, frame: &ringrunner_protocol::Frame<'_>) {
    if fields.get("sequence").is_some() {
        let rpc = RpcMessage::from_frame(frame).unwrap();
        assert_eq!(
            u64::from(rpc.seq),
            fields["sequence"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(rpc.method, text_field(fields, "method"), "{name}");
        assert_eq!(rpc.body, text_field(fields, "rpc_body"), "{name}");
        assert_eq!(rpc.is_error(), name.contains("error"), "{name}");
    } else if fields.get("context").is_some() {
        match WorkerMessage::from_frame(frame).unwrap() {
            WorkerMessage::Data(data) => {
                assert_eq!(data.context, text_field(fields, "context"), "{name}");
                assert_eq!(data.body, text_field(fields, "body"), "{name}");
            }
            WorkerMessage::StopRequest => assert_eq!(name, "data_worker_stop_request"),
            other => panic!("{name}: {other:?}"),
        }
    } else {
        assert_eq!(frame.payload, text_field(fields, "payload"), "{name}");
        if frame.header.flags.contains(Flags::ERROR) {
            assert_eq!(
                WorkerMessage::from_frame(frame).unwrap(),
                WorkerMessage::Error(frame.payload)
            );
        } else if frame.header.flags.contains(Flags::CONTROL) {
            assert!(ControlMessage::parse(frame.payload).is_ok(), "{name}");
        }
    }
}

/// Builds each vector from scratch with the encoder a real sender would use.
fn encode_from_scratch(name: &str, fields: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let flags = Flags(byte_field(fields, "flags"));
    let stream = StreamFlags(byte_field(fields, "byte10"));
    match name {
        "control_pid_request_server" => encode_pid_request(4242, &mut out),
        "control_pid_reply_worker" => encode_pid_reply(31337, &mut out),
        "control_stop_server" => encode_stop(&mut out),
        "data_worker_stop_request" => encode_stop_request(&mut out),
        "stream_pong_server" => out.extend_from_slice(&PONG_FRAME),
        "stream_stop_server" => out.extend_from_slice(&STREAM_STOP_FRAME),
        "error_worker" => {
            let text = text_field(fields, "payload");
            out.extend_from_slice(error_header(text.len()).unwrap().as_bytes());
            out.extend_from_slice(&text);
        }
        rpc if rpc.starts_with("rpc_") => {
            let seq = fields["sequence"].as_u64().unwrap() as u32;
            let method = text_field(fields, "method");
            encode_rpc_frame(
                seq,
                flags,
                &method,
                &text_field(fields, "rpc_body"),
                &mut out,
            )
            .unwrap();
        }
        data if data.starts_with("data_") || data.starts_with("stream_chunk") => {
            let (context, body) = (text_field(fields, "context"), text_field(fields, "body"));
            encode_data_frame(flags, stream, &context, &body, &mut out).unwrap();
        }
        other => panic!("no encoder for vector {other}"),
    }
    out
}

#[test]
fn every_vector_is_what_our_encoders_write() {
    for vector in vectors() {
        let name = vector["name"].as_str().unwrap();
        let wire = unhex(vector["hex"].as_str().unwrap());
        assert_eq!(encode_from_scratch(name, &vector["fields"]), wire, "{name}");
    }
}

#[test]
fn all_vectors_back_to_back_in_any_split() {
    let wire: Vec<u8> = vectors()
        .iter()
        .flat_map(|v| unhex(v["hex"].as_str().unwrap()))
        .collect();
    for chunk in [1, 2, 3, 7, 12, 13, 64, wire.len()] {
        let mut decoder = FrameDecoder::default();
        let mut count = 0;
        for piece in wire.chunks(chunk) {
            decoder.feed(piece);
            while decoder.next_frame().unwrap().is_some() {
                count += 1;
            }
        }
        assert_eq!(count, 20, "chunk size {chunk}");
        decoder.finish().unwrap();
    }
}
