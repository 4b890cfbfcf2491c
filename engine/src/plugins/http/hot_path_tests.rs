//! Once warm, the request path allocates nothing per request: head parse, the context's
//! fields, the request context and the worker's response context in either codec (JSON, the
//! default, and protobuf), the response head and body.
//! (The socket and pipe I/O underneath belongs to tokio-uring and is not counted here.)

use super::answer::Http1Writer;
use super::head::Head;
use super::request::RequestScratch;
use super::sink::{HttpSink, RequestFacts};
use crate::test_alloc::allocations_during;
use prost::Message;
use ringrunner_protocol::http::{decode_response, proto, ContextCodec, RequestContext};
use std::collections::HashMap;

const REQUEST: &[u8] = b"GET /users?id=5&tag[]=a HTTP/1.1\r\nHost: app.test:8080\r\n\
    Accept: text/html\r\naccept: application/json\r\nCookie: sid=ab%20c; theme=dark\r\n\
    X-Request-Id: r1\r\nUser-Agent: wrk/4.1\r\n\r\n";

/// Buffers a connection keeps from request to request.
#[derive(Default)]
struct Reused {
    head: Head,
    scratch: RequestScratch,
    context: Vec<u8>,
    out: Vec<u8>,
    date: super::wire::DateCache,
}

fn serve(reused: &mut Reused, codec: ContextCodec, response_context: &[u8]) {
    Head::parse(REQUEST, &mut reused.head).unwrap().unwrap();
    let (head, scratch) = (&reused.head, &mut reused.scratch);
    scratch.fill(head, REQUEST, "192.0.2.10".parse().unwrap(), &[]);
    reused.context.clear();
    RequestContext {
        remote_addr: &scratch.remote_addr,
        protocol: "HTTP/1.1",
        method: std::str::from_utf8(&REQUEST[head.method.clone()]).unwrap(),
        uri: &scratch.uri,
        headers: scratch.headers.view(REQUEST),
        cookies: &scratch.cookies,
        raw_query: &scratch.raw_query,
        parsed: false,
        uploads: None,
    }
    .encode(codec, &mut reused.context);
    let response = decode_response(codec.flags(), response_context).unwrap();
    let facts = RequestFacts {
        minor_version: 1,
        is_head: false,
        keep_alive: true,
    };
    HttpSink::detached(
        Http1Writer::detached(1),
        &mut reused.out,
        facts,
        &mut reused.date,
    )
    .write_head(200, &response, b"Hello, world!\n", true);
}

#[test]
fn a_warm_request_path_allocates_nothing_with_json_contexts() {
    // As PHP's json_encode writes it: '/' escaped.
    let response_context =
        br#"{"status":200,"headers":{"content-type":["text\/plain"],"Set-Cookie":["a=1","b=2"]}}"#;
    let mut reused = Reused::default();
    serve(&mut reused, ContextCodec::Json, response_context);
    let allocations = allocations_during(|| {
        for _ in 0..100 {
            serve(&mut reused, ContextCodec::Json, response_context);
        }
    });
    assert_eq!(allocations, 0, "allocations in 100 warm requests");
    let sent: serde_json::Value = serde_json::from_slice(&reused.context).unwrap();
    assert_eq!(sent["uri"], "http://app.test:8080/users?id=5&tag[]=a");
    assert_eq!(sent["headers"]["Accept"].as_array().unwrap().len(), 2);
    assert_eq!(sent["cookies"]["sid"], "ab c");
    let out = String::from_utf8(reused.out.clone()).unwrap();
    assert!(out.contains("Content-Type: text/plain\r\n"), "{out}");
    assert!(
        out.contains("Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"),
        "{out}"
    );
}

#[test]
fn a_warm_request_path_allocates_nothing() {
    let response_context = proto::Response {
        status: 200,
        headers: HashMap::from([
            (
                "content-type".to_owned(),
                proto::HeaderValue {
                    value: vec![b"text/plain".to_vec()],
                },
            ),
            (
                "Set-Cookie".to_owned(),
                proto::HeaderValue {
                    value: vec![b"a=1".to_vec(), b"b=2".to_vec()],
                },
            ),
        ]),
    }
    .encode_to_vec();
    let mut reused = Reused::default();
    serve(&mut reused, ContextCodec::Proto, &response_context);
    let allocations = allocations_during(|| {
        for _ in 0..100 {
            serve(&mut reused, ContextCodec::Proto, &response_context);
        }
    });
    assert_eq!(allocations, 0, "allocations in 100 warm requests");
    // And what it built is right.
    let sent = proto::Request::decode(reused.context.as_slice()).unwrap();
    assert_eq!(sent.uri, "http://app.test:8080/users?id=5&tag[]=a");
    assert_eq!(sent.header["Accept"].value.len(), 2);
    assert_eq!(sent.cookies["sid"].value[0], b"ab c");
    let out = String::from_utf8(reused.out.clone()).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("Content-Type: text/plain\r\n"), "{out}");
    assert!(
        out.contains("Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"),
        "{out}"
    );
    assert!(
        out.ends_with("Content-Length: 14\r\n\r\nHello, world!\n"),
        "{out}"
    );
}
