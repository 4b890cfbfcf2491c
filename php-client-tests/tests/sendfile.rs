//! The `sendfile` middleware through the real binary: a PHP worker answers with
//! `X-Sendfile: <path>` and the client gets the file, streamed by the server, with the
//! worker's other headers and rr's answers for a missing file and a path that climbs.

use php_client_tests::http_client::{request, Response};
use php_client_tests::server::{http_config, scratch_dir, RrServer};
use std::net::SocketAddr;
use std::path::Path;

fn server(middleware: &str) -> RrServer {
    RrServer::start(&http_config(&format!("  middleware: [{middleware}]\n"), ""))
}

fn ask(address: SocketAddr, method: &str, file: &Path) -> Response {
    let raw = format!(
        "{method} /sendfile?path={} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        file.display()
    );
    request(address, raw.as_bytes())
}

#[test]
fn a_large_file_named_by_the_worker_is_streamed_with_the_workers_other_headers() {
    let server = server("sendfile, gzip");
    let dir = scratch_dir();
    let file = dir.join("big.bin");
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 123)
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let answer = ask(server.http(), "GET", &file);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-sendfile"), None);
    assert_eq!(answer.header("x-extra"), Some("kept"));
    assert_eq!(
        answer.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        answer.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert!(answer.body == data, "the body is not the file");
    // HEAD: the head alone, with the file's length.
    let head = ask(server.http(), "HEAD", &file);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // An empty file.
    let empty = dir.join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let answer = ask(server.http(), "GET", &empty);
    assert_eq!((answer.status, answer.body.len()), (200, 0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_file_and_a_climbing_path_get_rrs_answers() {
    let server = server("sendfile");
    let missing = ask(
        server.http(),
        "GET",
        Path::new("/nonexistent/ringrunner-file"),
    );
    assert_eq!(missing.status, 404);
    assert_eq!(missing.text(), "not found\n");
    assert_eq!(missing.header("x-extra"), Some("kept"));
    assert!(server.wait_for_line(
        "X-Sendfile file not found",
        std::time::Duration::from_secs(10)
    ));
    let climbing = ask(server.http(), "GET", Path::new("/tmp/../etc/passwd"));
    assert_eq!(climbing.status, 403);
    assert!(climbing.body.is_empty());
    // The connection goes on serving after each.
    assert_eq!(
        php_client_tests::http_client::get(server.http(), "/hello").status,
        200
    );
}

#[test]
fn without_the_middleware_the_header_reaches_the_client_unchanged() {
    // rr without the send plugin: the worker's answer as it is.
    let server = server("gzip");
    let answer = ask(server.http(), "GET", Path::new("/etc/hostname"));
    assert_eq!(answer.status, 201);
    assert_eq!(answer.header("x-sendfile"), Some("/etc/hostname"));
    assert_eq!(answer.text(), "the worker body");
}
