//! Multipart forms and uploads end to end (spec http §2.3, §2.4): the real `rr` binary, real
//! PHP workers (php/workers/http.php `/upload` reads each file where the worker finds it).

use php_client_tests::http_client::{request, Client, Response};
use php_client_tests::server::{http_config, scratch_dir, RrServer};
use serde_json::json;
use std::path::Path;

/// One part: (name, file name, content type, bytes).
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content_type, data) in parts {
        body.extend_from_slice(b"--BoUnDaRy\r\nContent-Disposition: form-data; name=\"");
        body.extend_from_slice(name.as_bytes());
        body.push(b'"');
        if let Some(filename) = filename {
            body.extend_from_slice(format!("; filename=\"{filename}\"").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        if let Some(content_type) = content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--BoUnDaRy--\r\n");
    body
}

fn post(body: &[u8], close: bool) -> Vec<u8> {
    let mut raw = format!(
        "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=BoUnDaRy\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

fn uploads_server(dir: &Path, http_extra: &str) -> RrServer {
    let uploads = format!(
        "  uploads:\n    dir: {}\n    forbid: [\".php\", \".exe\"]\n{http_extra}",
        dir.display()
    );
    RrServer::start(&http_config(&uploads, ""))
}

fn files_left(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The upload, then a second request on the same connection: the server removes the files
/// before it reads the next request, so they must be gone once that one is answered.
fn upload_then_hello(server: &RrServer, body: &[u8]) -> Response {
    let mut client = Client::connect(server.http());
    client.send(&post(body, false));
    let response = client.read_response(false).expect("upload response");
    client.send(b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(client.read_response(false).expect("hello").status, 200);
    response
}

#[test]
fn several_files_nested_names_and_a_forbidden_extension() {
    let dir = scratch_dir();
    let server = uploads_server(&dir, "");
    let binary: Vec<u8> = (0..=255).cycle().take(70_000).collect();
    let body = multipart(&[
        ("title", None, None, b"Hi"),
        ("meta[tags][]", None, None, b"a"),
        ("meta[tags][]", None, None, b"b"),
        ("doc", Some("r.PDF"), Some("application/pdf"), b"%PDF-1.7"),
        (
            "doc",
            Some("second.pdf"),
            Some("application/pdf"),
            b"ignored",
        ),
        ("docs[]", Some("one.txt"), Some("text/plain"), b"one"),
        ("docs[]", Some("two.bin"), None, &binary),
        (
            "deep[a][b]",
            Some("../../etc/passwd.txt"),
            Some("text/plain"),
            b"p",
        ),
        ("script", Some("x.PHP"), Some("text/plain"), b"<?php"),
    ]);
    let response = upload_then_hello(&server, &body);
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = response.json();
    assert_eq!(seen["parsed"], true);
    assert_eq!(
        seen["fields"],
        json!({"title": "Hi", "meta": {"tags": ["a", "b"]}})
    );
    let files = &seen["files"];
    let stored = |file: &serde_json::Value, name: &str, size: usize| {
        assert_eq!(file["name"], name, "{file}");
        assert_eq!(file["error"], 0, "{file}");
        assert_eq!(file["size"], size, "{file}");
        assert_eq!(file["perms"], "600", "{file}");
        let tmp = file["tmpName"].as_str().unwrap();
        assert!(
            tmp.starts_with(&*dir.join("upload").to_string_lossy()),
            "{tmp}"
        );
    };
    stored(&files["doc"], "r.PDF", 8);
    assert_eq!(
        files["doc"]["content"], "%PDF-1.7",
        "a plain name keeps the first file"
    );
    assert_eq!(files["doc"]["mime"], "application/pdf");
    stored(&files["docs"][0], "one.txt", 3);
    stored(&files["docs"][1], "two.bin", binary.len());
    let hex: String = binary.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(files["docs"][1]["content"], format!("hex:{hex}"));
    assert_eq!(files["docs"][1]["mime"], "");
    stored(&files["deep"]["a"]["b"], "passwd.txt", 1);
    assert_eq!(
        files["script"],
        json!({"name": "x.PHP", "mime": "text/plain", "size": 0, "error": 8, "tmpName": "",
            "content": null, "perms": null})
    );
    assert_eq!(
        files_left(&dir),
        Vec::<String>::new(),
        "temp files outlived the request"
    );
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_form_without_files_sends_an_empty_uploads_tree() {
    let dir = scratch_dir();
    let server = uploads_server(&dir, "");
    let response = request(
        server.http(),
        &post(&multipart(&[("a", None, None, b"1")]), true),
    );
    let seen = response.json();
    assert_eq!(seen["fields"], json!({"a": "1"}));
    assert_eq!(
        seen["files"],
        json!([]),
        "PHP decodes rr's {{}} as an empty array"
    );
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn oversize_and_malformed_forms_are_refused_and_leave_no_file() {
    let dir = scratch_dir();
    let server = uploads_server(&dir, "  max_request_size: 1\n");
    let big = vec![b'x'; 1024 * 1024 + 1];
    let response = request(
        server.http(),
        &post(&multipart(&[("f", Some("big.txt"), None, &big)]), true),
    );
    assert_eq!(response.status, 413);
    let truncated = b"--BoUnDaRy\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nno end";
    let response = request(server.http(), &post(truncated, true));
    assert_eq!(response.status, 400);
    assert_eq!(response.text(), "serve_http: multipart: NextPart: EOF\n");
    let conflict = multipart(&[
        ("f", Some("a.txt"), None, b"1"),
        ("a", None, None, b"1"),
        ("a[b]", None, None, b"2"),
    ]);
    let response = request(server.http(), &post(&conflict, true));
    assert_eq!(response.status, 400);
    assert!(
        response.text().contains("invalid multiple values"),
        "{}",
        response.text()
    );
    let no_boundary = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(request(server.http(), no_boundary).status, 400);
    // Still serving, and nothing left behind by any refusal.
    assert_eq!(
        upload_then_hello(&server, &multipart(&[("f", Some("ok.txt"), None, b"ok")])).status,
        200
    );
    assert_eq!(files_left(&dir), Vec::<String>::new());
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn raw_body_sends_the_multipart_bytes_untouched() {
    let dir = scratch_dir();
    let server = uploads_server(&dir, "  raw_body: true\n");
    let body = multipart(&[("f", Some("a.txt"), None, b"1")]);
    let mut raw = format!(
        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=BoUnDaRy\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let echo = request(server.http(), &raw).json();
    assert_eq!(echo["parsed"], false);
    assert_eq!(echo["uploads"], "");
    assert_eq!(echo["body"].as_str().unwrap().as_bytes(), &body[..]);
    assert_eq!(files_left(&dir), Vec::<String>::new());
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}
