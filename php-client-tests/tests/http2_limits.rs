//! HTTP/2 limits (cleartext with prior knowledge, our raw client `h2_frames`), what any
//! HTTP/2 front end must keep: a stream whose body is past `max_request_size` is answered
//! with rr's 413 text and the connection serves on; a client that stops reading a streamed
//! answer costs the server its bounded buffers, not the answer, and the stream is reset
//! after `write_timeout`. (curl 7.88 cannot check the 413: after it the server resets the
//! unfinished upload with NO_ERROR, as RFC 9113 §8.1 asks, and curl reports an error.)

use php_client_tests::h2_frames::{self as h2, RawH2};
use php_client_tests::server::{http_config, rss_kib, RrServer};
use std::time::Duration;

/// SETTINGS_INITIAL_WINDOW_SIZE.
const INITIAL_WINDOW_SIZE: u16 = 0x4;

const TOO_LARGE: &[u8] = b"serve_http: http: request body too large\n";

/// h2c on, bodies up to 1 MiB.
const LIMITED: &str = "  max_request_size: 1\n  http2:\n    h2c: true\n";

fn connect(server: &RrServer) -> RawH2 {
    let client = RawH2::connect(server.http());
    client.set_read_timeout(Duration::from_secs(20));
    client
}

/// The body of stream `id`'s answer; None when the connection ends first.
fn answer_body(client: &mut RawH2, id: u32) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let frame = client.read_until(|f| f.stream == id && f.kind != h2::WINDOW_UPDATE)?;
        match frame.kind {
            h2::DATA => body.extend_from_slice(&frame.payload),
            h2::RST_STREAM => return None,
            _ => {}
        }
        if frame.flags & h2::END_STREAM != 0 {
            return Some(body);
        }
    }
}

#[test]
fn an_http2_body_announced_past_max_request_size_gets_413_and_the_connection_serves_on() {
    let server = RrServer::start(&http_config(LIMITED, ""));
    let mut client = connect(&server);
    let block = h2::header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/len"),
        (":authority", "localhost"),
        ("content-length", "2097152"),
    ]);
    client
        .send(h2::HEADERS, h2::END_HEADERS, 1, &block)
        .unwrap();
    client.send(h2::DATA, 0, 1, &[b'x'; 1024]).unwrap();
    assert_eq!(answer_body(&mut client, 1).as_deref(), Some(TOO_LARGE));
    client.request(3, "GET", "/hello", true).unwrap();
    let hello = answer_body(&mut client, 3).expect("the connection serves on");
    assert_eq!(hello, b"Hello from PHP\n");
}

/// A WINDOW_UPDATE's increment.
fn increment(frame: &h2::Frame) -> u64 {
    let bytes: [u8; 4] = frame.payload[..4].try_into().unwrap();
    u64::from(u32::from_be_bytes(bytes) & 0x7fff_ffff)
}

#[test]
fn an_http2_body_without_a_length_growing_past_max_request_size_gets_413() {
    let server = RrServer::start(&http_config(LIMITED, ""));
    let mut client = connect(&server);
    client.request(1, "POST", "/len", false).unwrap();
    // Within flow control: the defaults (65535 each), the stream's as the server's SETTINGS
    // sets it, grown by its WINDOW_UPDATEs as it takes the body; 3 MiB at most.
    let (mut stream_window, mut connection_window, mut sent) = (65_535u64, 65_535u64, 0u64);
    let piece = [b'y'; 16 * 1024];
    let mut body = Vec::new();
    loop {
        let room = stream_window.min(connection_window);
        if room >= piece.len() as u64 && sent < 3 << 20 {
            client.send(h2::DATA, 0, 1, &piece).unwrap();
            (stream_window, connection_window) = (stream_window - 16384, connection_window - 16384);
            sent += 16384;
            continue;
        }
        let frame = client
            .read_until(|f| {
                f.kind == h2::WINDOW_UPDATE
                    || f.stream == 1
                    || (f.kind == h2::SETTINGS && f.flags & h2::ACK == 0)
            })
            .expect("the server answers or opens its window");
        match (frame.kind, frame.stream) {
            (h2::SETTINGS, _) => {
                if let Some(size) = frame.setting(INITIAL_WINDOW_SIZE) {
                    stream_window = (stream_window + u64::from(size)).saturating_sub(65_535);
                }
            }
            (h2::WINDOW_UPDATE, 0) => connection_window += increment(&frame),
            (h2::WINDOW_UPDATE, _) => stream_window += increment(&frame),
            (h2::DATA, _) => body.extend_from_slice(&frame.payload),
            _ => {}
        }
        if frame.stream == 1 && frame.kind != h2::WINDOW_UPDATE && frame.flags & h2::END_STREAM != 0
        {
            break;
        }
    }
    assert_eq!(body, TOO_LARGE, "after {sent} bytes sent");
    assert!(sent > 1 << 20, "answered after {sent} bytes");
}

#[test]
fn a_client_that_stops_reading_an_http2_answer_costs_the_server_its_buffers_only() {
    let config = "  write_timeout: 3s\n  http2:\n    h2c: true\n";
    let server = RrServer::start(&http_config(config, ""));
    let mut client = connect(&server);
    client.request(1, "GET", "/hello", true).unwrap();
    assert_eq!(answer_body(&mut client, 1).unwrap(), b"Hello from PHP\n");
    let before = rss_kib(server.pid());
    // 256 MiB streamed in 1 MiB frames to a client that never opens its window (65535):
    // the worker must wait on the client, not the server hold what it streams.
    client
        .request(3, "GET", "/bigstream?n=256&kb=1024", true)
        .unwrap();
    let reset = client.read_until(|f| f.stream == 3 && f.kind == h2::RST_STREAM);
    assert!(
        reset.is_some(),
        "the stalled stream is reset after write_timeout"
    );
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(
        grown < 48 * 1024,
        "a stalled stream grew the server by {grown} KiB"
    );
    // The connection's window went to the stalled stream: opened again, it serves on.
    let opened = (1u32 << 20).to_be_bytes();
    client.send(h2::WINDOW_UPDATE, 0, 0, &opened).unwrap();
    client.request(5, "GET", "/hello", true).unwrap();
    assert_eq!(answer_body(&mut client, 5).unwrap(), b"Hello from PHP\n");
}

#[test]
fn an_http2_body_trickled_byte_by_byte_is_cut_off_at_the_minimum_rate() {
    use std::io::Write as _;
    let config = "  read_header_timeout: 2s\n  http2:\n    h2c: true\n";
    let server = RrServer::start(&http_config(config, ""));
    let mut client = connect(&server);
    client.request(1, "POST", "/echo", false).unwrap();
    let started = std::time::Instant::now();
    // The client under test: one byte every 300 ms, each DATA frame well within the 2 s
    // timeout; the whole body (100 bytes) would take 30 s.
    let mut writer = client.writer();
    let closer = client.writer();
    let trickler = std::thread::spawn(move || {
        for _ in 0..100 {
            if writer.write_all(&h2::frame(h2::DATA, 0, 1, b"x")).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let body = answer_body(&mut client, 1).expect("an answer");
    assert_eq!(body, b"408 Request Timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let _ = closer.shutdown(std::net::Shutdown::Both);
    trickler.join().unwrap();
}
