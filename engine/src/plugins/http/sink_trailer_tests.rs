//! The sink's framing of a whole (single-frame) answer with trailers (spec http §3.1d):
//! chunked on HTTP/1.1 so the trailer section can follow, gzip's compressed body included;
//! a plain Content-Length answer without them on HTTP/1.0.

use super::answer::Http1Writer;
use super::sink::{HttpSink, RequestFacts};
use super::wire::DateCache;
use ringrunner_protocol::http::decode_response;
use ringrunner_protocol::Flags;
use std::io::Read as _;

const CONTEXT: &[u8] = br#"{"status":200,"headers":{"Trailer":["X-Sum"],"X-Sum":["1"],
    "Content-Type":["text/plain"]}}"#;

/// The answer bytes of a whole reply of `body`.
fn answer(minor_version: u8, compress: bool, body: &[u8]) -> Vec<u8> {
    let head = decode_response(Flags::CODEC_JSON, CONTEXT).unwrap();
    let facts = RequestFacts {
        minor_version,
        is_head: false,
        keep_alive: true,
    };
    let (mut out, mut date) = (Vec::new(), DateCache::default());
    let mut sink = HttpSink::detached(
        Http1Writer::detached(minor_version),
        &mut out,
        facts,
        &mut date,
    );
    sink.set_compress(compress);
    sink.write_head(200, &head, body, true);
    out
}

/// (head, chunks' data, trailer section) of a chunked answer.
fn split_chunked(answer: &[u8]) -> (String, Vec<u8>, String) {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let (mut rest, mut data) = (&answer[end..], Vec::new());
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16);
        rest = &rest[line_end + 2..];
        match size.unwrap() {
            0 => return (head, data, String::from_utf8_lossy(rest).into_owned()),
            size => {
                data.extend_from_slice(&rest[..size]);
                assert_eq!(&rest[size..size + 2], b"\r\n");
                rest = &rest[size + 2..];
            }
        }
    }
}

#[test]
fn a_whole_compressed_answer_with_trailers_is_chunked_and_ends_with_them() {
    let body = "a line of text worth compressing\n".repeat(64);
    let (head, data, trailers) = split_chunked(&answer(1, true, body.as_bytes()));
    assert!(
        head.contains("\r\nTransfer-Encoding: chunked\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nContent-Encoding: gzip\r\n"), "{head}");
    assert!(
        !head.contains("Content-Length") && !head.contains("X-Sum"),
        "{head}"
    );
    assert!(!head.contains("Trailer"), "{head}");
    let mut unpacked = String::new();
    flate2::read::GzDecoder::new(&data[..])
        .read_to_string(&mut unpacked)
        .unwrap();
    assert_eq!(unpacked, body);
    assert_eq!(trailers, "X-Sum: 1\r\n\r\n");
}

#[test]
fn an_empty_whole_answer_still_carries_its_trailers() {
    let (head, data, trailers) = split_chunked(&answer(1, false, b""));
    assert!(
        head.contains("\r\nTransfer-Encoding: chunked\r\n"),
        "{head}"
    );
    assert!(data.is_empty());
    assert_eq!(trailers, "X-Sum: 1\r\n\r\n");
}

#[test]
fn http1_0_gets_a_length_and_no_trailers() {
    let answer = String::from_utf8(answer(0, false, b"hello")).unwrap();
    assert!(answer.contains("\r\nContent-Length: 5\r\n"), "{answer}");
    assert!(
        !answer.contains("X-Sum") && !answer.contains("chunked"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
}
