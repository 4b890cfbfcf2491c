//! The `headers` middleware through the real binary: headers added to what PHP sees and to
//! every answer, CORS preflights answered by the server and CORS headers on actual
//! requests, and rr's chain order against `static` (the last listed wraps the others).

use php_client_tests::http_client::request;
use php_client_tests::server::{http_config, scratch_dir, RrServer};

const HEADERS: &str = "  headers:\n    request:\n      x-added: \"by rr\"\n    response:\n      x-powered: ringrunner\n    cors:\n      allowed_origin: \"https://app.test\"\n      allowed_methods: \"GET, PUT\"\n      allowed_headers: \"content-type, x-token\"\n      exposed_headers: \"x-total\"\n      max_age: 60\n";

fn get(server: &RrServer, raw: &str) -> php_client_tests::http_client::Response {
    request(server.http(), raw.as_bytes())
}

#[test]
fn headers_reach_php_and_every_answer_and_cors_is_answered_by_the_server() {
    let server = RrServer::start(&http_config(
        &format!("  middleware: [\"headers\"]\n{HEADERS}"),
        "",
    ));
    let echo = get(
        &server,
        "GET /echo HTTP/1.1\r\nHost: x\r\nOrigin: https://app.test\r\nX-Added: sent\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(echo.status, 200);
    assert_eq!(
        echo.json()["headers"]["X-Added"],
        serde_json::json!(["sent", "by rr"]),
        "appended after the client's"
    );
    assert_eq!(echo.header("x-powered"), Some("ringrunner"));
    assert_eq!(
        echo.header("access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(
        echo.header("access-control-expose-headers"),
        Some("X-Total")
    );
    assert_eq!(echo.headers_named("vary"), ["Origin"]);
    // A worker error answer is wrapped too.
    let error = get(
        &server,
        "GET /error HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(error.status, 500);
    assert_eq!(error.header("x-powered"), Some("ringrunner"));
    // A preflight never reaches PHP (/status/418 would answer 418).
    let preflight = get(
        &server,
        "OPTIONS /status/418 HTTP/1.1\r\nHost: x\r\nOrigin: https://app.test\r\nAccess-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: content-type,x-token\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(preflight.status, 200);
    assert!(preflight.body.is_empty());
    assert_eq!(preflight.header("content-length"), Some("0"));
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("PUT")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("content-type,x-token")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("60"));
    assert_eq!(preflight.header("x-powered"), Some("ringrunner"));
    let refused = get(
        &server,
        "OPTIONS /status/418 HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.test\r\nAccess-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(refused.status, 200);
    assert_eq!(refused.header("access-control-allow-origin"), None);
    assert!(refused.header("vary").is_some());
    // OPTIONS without Access-Control-Request-Method is an ordinary request: PHP answers.
    let plain = get(
        &server,
        "OPTIONS /status/418 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(plain.status, 418);
    // Keep-alive goes on after a preflight.
    let mut client = php_client_tests::http_client::Client::connect(server.http());
    client.send(b"OPTIONS /x HTTP/1.1\r\nHost: x\r\nOrigin: https://app.test\r\nAccess-Control-Request-Method: GET\r\n\r\n");
    assert_eq!(client.read_response(false).unwrap().status, 200);
    assert_eq!(client.get("/hello").status, 200);
}

#[test]
fn the_last_middleware_listed_wraps_the_others() {
    let public = scratch_dir().join("public");
    std::fs::create_dir_all(&public).unwrap();
    std::fs::write(public.join("a.css"), "a{}\n").unwrap();
    let static_section = format!("  static:\n    dir: {}\n", public.display());
    let answer = |middleware: &str| {
        let server = RrServer::start(&http_config(
            &format!("  middleware: {middleware}\n{HEADERS}{static_section}"),
            "",
        ));
        let file = get(
            &server,
            "GET /a.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(file.text(), "a{}\n");
        let worker = get(
            &server,
            "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        (
            file.header("x-powered").map(str::to_owned),
            worker.header("x-powered").map(str::to_owned),
        )
    };
    // headers outside static: the file gets its headers; inside: it does not.
    assert_eq!(
        answer("[\"static\", \"headers\"]"),
        (Some("ringrunner".into()), Some("ringrunner".into()))
    );
    assert_eq!(
        answer("[\"headers\", \"static\"]"),
        (None, Some("ringrunner".into()))
    );
    let _ = std::fs::remove_dir_all(public.parent().unwrap());
}

#[test]
fn an_origin_regex_replaces_the_list_and_a_bad_one_stops_the_start() {
    let yaml = |regex: &str| {
        http_config(
            &format!("  middleware: [\"headers\"]\n  headers:\n    cors:\n      allowed_origin: \"*\"\n      allowed_origin_regex: '{regex}'\n"),
            "",
        )
    };
    let (status, output) = RrServer::start_with(&yaml("("), &[]).unwrap_err();
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains("allowed_origin_regex") && output.contains("invalid regex"),
        "{output}"
    );
    let server = RrServer::start(&yaml("^https://[a-z]+[.]test$"));
    let with_origin = |origin: &str| {
        get(
            &server,
            &format!(
                "GET /hello HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
            ),
        )
        .header("access-control-allow-origin")
        .map(str::to_owned)
    };
    assert_eq!(
        with_origin("https://app.test").as_deref(),
        Some("https://app.test")
    );
    assert_eq!(with_origin("https://evil.example"), None);
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

#[test]
fn gzip_compresses_what_its_rules_take() {
    let public = scratch_dir().join("public");
    std::fs::create_dir_all(&public).unwrap();
    let css = "body { color: black; }\n".repeat(200);
    std::fs::write(public.join("big.css"), &css).unwrap();
    std::fs::write(public.join("small.css"), "a{}\n").unwrap();
    let server = RrServer::start(&http_config(
        &format!(
            "  middleware: [\"static\", \"gzip\"]\n  static:\n    dir: {}\n",
            public.display()
        ),
        "",
    ));
    let fetch = |path: &str, extra: &str| {
        get(
            &server,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"),
        )
    };
    // A worker's answer (no Content-Length from PHP): compressed whatever its size.
    let big = fetch("/big?kb=8", "Accept-Encoding: br, gzip\r\n");
    assert_eq!(big.header("content-encoding"), Some("gzip"));
    assert_eq!(big.headers_named("vary"), ["Accept-Encoding"]);
    assert_eq!(gunzip(&big.body), vec![b'x'; 8 * 1024]);
    assert_eq!(
        big.header("content-length"),
        Some(big.body.len().to_string().as_str())
    );
    let hello = fetch("/hello", "Accept-Encoding: gzip\r\n");
    assert_eq!(gunzip(&hello.body), b"Hello from PHP\n");
    // A streamed reply: compressed frame by frame, one gzip stream over the chunks.
    let plain_stream = fetch("/stream?n=5", "");
    assert!(plain_stream.chunked);
    let stream = fetch("/stream?n=5", "Accept-Encoding: gzip\r\n");
    assert!(stream.chunked);
    assert_eq!(stream.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&stream.body), plain_stream.body);
    assert_eq!(
        plain_stream.text(),
        "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"
    );
    // Not asked for, refused, or HEAD: as is, with Vary.
    for extra in [
        "",
        "Accept-Encoding: gzip;q=0\r\n",
        "Accept-Encoding: *\r\n",
    ] {
        let plain = fetch("/big?kb=8", extra);
        assert_eq!(plain.header("content-encoding"), None, "{extra:?}");
        assert_eq!(plain.body.len(), 8 * 1024);
        assert_eq!(plain.headers_named("vary"), ["Accept-Encoding"]);
    }
    let head = get(
        &server,
        "HEAD /big?kb=8 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.header("content-encoding"), None);
    // Static files inside gzip: from 1 KiB up, never a range.
    let file = fetch("/big.css", "Accept-Encoding: gzip\r\n");
    assert_eq!(file.header("content-encoding"), Some("gzip"));
    assert_eq!(file.header("accept-ranges"), None);
    assert_eq!(gunzip(&file.body), css.as_bytes());
    let small = fetch("/small.css", "Accept-Encoding: gzip\r\n");
    assert_eq!(small.header("content-encoding"), None);
    assert_eq!(small.text(), "a{}\n");
    let range = fetch("/big.css", "Accept-Encoding: gzip\r\nRange: bytes=0-3\r\n");
    assert_eq!(range.status, 206);
    assert_eq!(range.header("content-encoding"), None);
    assert_eq!(range.text(), "body");
    let _ = std::fs::remove_dir_all(public.parent().unwrap());
}
