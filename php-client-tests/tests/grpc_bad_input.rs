//! The grpc plugin on bad input (issue 27): a length prefix that lies, a compressed flag
//! with no `grpc-encoding`, a message past the limit (refused before it is all sent),
//! 10,000 metadata entries, streams that never send, PING and rapid-reset floods. Each gets
//! a defined answer, the server's memory stays bounded, and other calls are unaffected.

use bytes::Bytes;
use php_client_tests::grpc::GrpcServer;
use php_client_tests::h2_frames::{self, RawH2};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

/// What a raw call got: the HTTP status and the grpc-status / grpc-message fields (from
/// the trailers, or from the headers of a trailers-only answer).
#[derive(Debug)]
struct RawAnswer {
    code: Option<String>,
    message: Option<String>,
}

/// Sends `chunks` as the DATA of one call to `/app.main.Echo/Ping` (END_STREAM after the
/// last unless `keep_open`), with `extra` headers; reads the answer.
fn raw_call(
    address: SocketAddr,
    extra: &[(&str, &str)],
    chunks: Vec<Vec<u8>>,
    keep_open: bool,
) -> RawAnswer {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let mut request = http::Request::post(format!("http://{address}/app.main.Echo/Ping"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let (response, mut send) = client
            .send_request(request.body(()).unwrap(), false)
            .unwrap();
        let count = chunks.len();
        for (index, chunk) in chunks.into_iter().enumerate() {
            let last = index + 1 == count && !keep_open;
            send.send_data(Bytes::from(chunk), last).unwrap();
        }
        if count == 0 && !keep_open {
            send.send_data(Bytes::new(), true).unwrap();
        }
        let answer = tokio::time::timeout(Duration::from_secs(20), response)
            .await
            .expect("an answer in time")
            .expect("a response");
        let field = |map: &http::HeaderMap, name: &str| {
            map.get(name).map(|v| v.to_str().unwrap().to_owned())
        };
        let (head, mut body) = answer.into_parts();
        if let Some(code) = field(&head.headers, "grpc-status") {
            return RawAnswer {
                code: Some(code),
                message: field(&head.headers, "grpc-message"),
            };
        }
        while let Some(chunk) = body.data().await {
            let _ = chunk;
        }
        let trailers = body.trailers().await.ok().flatten().unwrap_or_default();
        drop(send);
        RawAnswer {
            code: field(&trailers, "grpc-status"),
            message: field(&trailers, "grpc-message"),
        }
    })
}

fn framed(flag: u8, announced: u32, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&announced.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// A grpcio call that must still succeed.
fn still_serves(server: &GrpcServer) {
    let result =
        server.call(&json!([{"method": "/app.main.Echo/Ping", "text": "still", "timeout": 20}]));
    assert_eq!(result[0]["code"], "OK", "{result:?}");
    assert_eq!(result[0]["text"], "still");
}

#[test]
fn lying_prefixes_compressed_flags_and_oversize_messages_get_defined_statuses() {
    let server = GrpcServer::start("  max_recv_msg_size: 1\n", 1, "");
    let lying = raw_call(
        server.address,
        &[],
        vec![framed(0, 100, b"only ten b")],
        false,
    );
    assert_eq!(lying.code.as_deref(), Some("13"), "{lying:?}");
    assert_eq!(lying.message.as_deref(), Some("unexpected EOF"));

    let compressed = raw_call(server.address, &[], vec![framed(1, 2, b"\n\0")], false);
    assert_eq!(compressed.code.as_deref(), Some("13"), "{compressed:?}");
    assert_eq!(
        compressed.message.as_deref(),
        Some("grpc: compressed flag set with identity or empty encoding")
    );
    let gzip = raw_call(
        server.address,
        &[("grpc-encoding", "gzip")],
        vec![framed(1, 2, b"\n\0")],
        false,
    );
    assert_eq!(gzip.code.as_deref(), Some("12"), "{gzip:?}");

    // 1 GB announced, 16 KiB sent, the stream left open: the answer comes anyway.
    let oversize = raw_call(
        server.address,
        &[],
        vec![framed(0, 1 << 30, &[0; 16 * 1024])],
        true,
    );
    assert_eq!(oversize.code.as_deref(), Some("8"), "{oversize:?}");
    assert_eq!(
        oversize.message.as_deref(),
        Some("grpc: received message larger than max (1073741824 vs. 1048576)")
    );

    let no_message = raw_call(server.address, &[], vec![], false);
    assert_eq!(no_message.code.as_deref(), Some("13"), "{no_message:?}");
    let bad_flag = raw_call(server.address, &[], vec![framed(9, 0, b"")], false);
    assert_eq!(bad_flag.code.as_deref(), Some("13"), "{bad_flag:?}");
    still_serves(&server);
}

/// A request whose header block carries `entries` metadata entries, split into HEADERS
/// and CONTINUATION frames.
fn metadata_flood(client: &mut RawH2, stream: u32, entries: usize) {
    let mut fields = vec![
        (":method".to_owned(), "POST".to_owned()),
        (":scheme".to_owned(), "http".to_owned()),
        (":path".to_owned(), "/app.main.Echo/Ping".to_owned()),
        (":authority".to_owned(), "localhost".to_owned()),
        ("content-type".to_owned(), "application/grpc".to_owned()),
    ];
    fields.extend((0..entries).map(|i| (format!("x-m{i}"), "v".to_owned())));
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let block = h2_frames::header_block(&borrowed);
    let pieces: Vec<&[u8]> = block.chunks(16_000).collect();
    let mut wire = Vec::new();
    for (index, piece) in pieces.iter().enumerate() {
        let (kind, mut flags) = if index == 0 {
            (h2_frames::HEADERS, h2_frames::END_STREAM)
        } else {
            (h2_frames::CONTINUATION, 0)
        };
        if index + 1 == pieces.len() {
            flags |= h2_frames::END_HEADERS;
        }
        wire.extend(h2_frames::frame(kind, flags, stream, piece));
    }
    let _ = client.send_raw(&wire);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn metadata_floods_silent_streams_and_frame_floods_leave_others_served() {
    let server = GrpcServer::start("", 2, "");
    let rss_before = rss_kib(server.rr.pid());

    // 10,000 metadata entries (~150 KB of header block): refused past the header-list
    // bound, never relayed to a worker.
    let mut flood = RawH2::connect(server.address);
    metadata_flood(&mut flood, 1, 10_000);
    let answer = flood.read_until(|f| {
        f.stream == 1 && (f.kind == h2_frames::RST_STREAM || f.kind == h2_frames::HEADERS)
            || f.kind == h2_frames::GOAWAY
    });
    eprintln!("FLOOD ANSWER {answer:?}");
    if let Some(frame) = &answer {
        assert!(
            !frame.is_status_200(),
            "a 10,000-entry call was served: {frame:?}"
        );
    }

    // Ten streams (the limit) opened and never sent on.
    let mut silent = RawH2::connect(server.address);
    for stream in (1..=19).step_by(2) {
        let block = h2_frames::header_block(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/app.main.Echo/Ping"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
        ]);
        silent
            .send(h2_frames::HEADERS, h2_frames::END_HEADERS, stream, &block)
            .unwrap();
    }

    // A PING flood and a rapid-reset flood on two more connections.
    let mut pings = RawH2::connect(server.address);
    let ping: Vec<u8> = (0..20_000)
        .flat_map(|_| h2_frames::frame(h2_frames::PING, 0, 0, &[0; 8]))
        .collect();
    let _ = pings.send_raw(&ping);
    let mut resets = RawH2::connect(server.address);
    let mut wire = Vec::new();
    for stream in (1..4000u32).step_by(2) {
        let block = h2_frames::header_block(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/app.main.Echo/Sleep"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
        ]);
        wire.extend(h2_frames::frame(
            h2_frames::HEADERS,
            h2_frames::END_HEADERS,
            stream,
            &block,
        ));
        wire.extend(h2_frames::frame(
            h2_frames::RST_STREAM,
            0,
            stream,
            &h2_frames::CANCEL.to_be_bytes(),
        ));
    }
    let _ = resets.send_raw(&wire);
    let goaway = resets.read_until(|f| f.kind == h2_frames::GOAWAY);
    eprintln!("RESET ANSWER {goaway:?}");
    if let Some(goaway) = goaway {
        assert_eq!(
            goaway.error_code(),
            Some(h2_frames::ENHANCE_YOUR_CALM),
            "{goaway:?}"
        );
    }

    still_serves(&server);
    let grown_kib = rss_kib(server.rr.pid()).saturating_sub(rss_before);
    assert!(grown_kib < 64 * 1024, "the server grew by {grown_kib} KiB");
    drop((flood, silent, pings));
}
