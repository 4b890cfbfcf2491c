//! rr's HTTP trailers (spec http §3.1d) through the real binary and a real PHP worker: a
//! worker answer whose `Trailer` header names some of its headers has those sent after the
//! body, as the chunked trailer section on HTTP/1.1 and as a trailing HEADERS frame on
//! HTTP/2; the `Trailer` header itself is not sent, and a trailer whose value holds CR/LF
//! is dropped as a header would be.

use php_client_tests::server::{curl, http_config, raw_exchange, RrServer};
use std::net::SocketAddr;
use std::time::Duration;

/// A whole raw HTTP/1.1 answer to GET `path` on a connection that closes after it.
fn raw_answer(address: SocketAddr, path: &str) -> String {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    raw_exchange(address, raw.as_bytes())
}

/// A chunked body split into (the data, the trailer section's lines); None when the bytes
/// are not a complete chunked body.
fn dechunk(mut body: &str) -> Option<(String, Vec<String>)> {
    let mut data = String::new();
    loop {
        let (size_line, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size_line.trim(), 16).ok()?;
        if size == 0 {
            let section = rest.strip_suffix("\r\n")?;
            let lines = section.split_terminator("\r\n").map(str::to_owned);
            return Some((data, lines.collect()));
        }
        data.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

fn server() -> RrServer {
    RrServer::start(&http_config("  http2:\n    h2c: true\n", ""))
}

#[test]
fn http1_answers_carry_the_named_headers_in_the_chunked_trailer_section() {
    let server = server();
    for path in ["/trailers", "/trailers?stream=1"] {
        let answer = raw_answer(server.http(), path);
        let (head, body) = answer.split_once("\r\n\r\n").expect(&answer);
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(lines[0], "HTTP/1.1 200 OK", "{answer}");
        assert!(lines.contains(&"Transfer-Encoding: chunked"), "{answer}");
        assert!(lines.contains(&"X-Kept: head"), "{answer}");
        for moved in ["Trailer:", "X-Checksum", "X-Split", "Content-Length"] {
            assert!(!head.contains(moved), "{moved} in the head of {answer}");
        }
        let (data, trailers) = dechunk(body).unwrap_or_else(|| panic!("{path}: {answer:?}"));
        assert_eq!(data, "hello", "{path}");
        assert_eq!(trailers, ["X-Checksum: sum-1"], "{path}: {answer:?}");
    }
    assert!(server.wait_for_line("worker header dropped", Duration::from_secs(10)));
}

#[test]
fn http1_0_answers_have_no_chunks_and_so_no_trailers() {
    let server = server();
    let answer = raw_exchange(server.http(), b"GET /trailers HTTP/1.0\r\nHost: h\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").expect(&answer);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(head.contains("\r\nContent-Length: 5"), "{answer}");
    assert!(
        !head.contains("X-Checksum") && !head.contains("Trailer:"),
        "{answer}"
    );
    assert_eq!(body, "hello");
}

#[test]
fn http2_answers_end_with_a_trailers_frame() {
    let server = server();
    for path in ["/trailers", "/trailers?stream=1"] {
        let url = format!("http://{}{path}", server.http());
        // curl hands trailers to its header output after the head.
        let answer = curl(&["--http2-prior-knowledge", "-s", "-D", "-", &url]);
        let answer = String::from_utf8_lossy(&answer.stdout).into_owned();
        assert!(answer.starts_with("HTTP/2 200"), "{answer}");
        let (head, rest) = answer.split_once("\r\n\r\n").expect(&answer);
        assert!(head.contains("\r\nx-kept: head"), "{answer}");
        for moved in ["trailer:", "x-checksum", "x-split"] {
            assert!(!head.contains(moved), "{moved} in the head of {answer}");
        }
        let (body, trailers) = rest.split_at(rest.find("x-checksum").expect(&answer));
        assert_eq!(body, "hello", "{path}: {answer:?}");
        assert_eq!(
            trailers.trim_end(),
            "x-checksum: sum-1",
            "{path}: {answer:?}"
        );
    }
}
