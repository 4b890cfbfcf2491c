//! The `static` middleware through the real binary: rr's decision procedure (forbid, `..`,
//! directories, missing files go to PHP), rr's ETags and Go's conditional requests, byte
//! ranges, HEAD, a 100 MB file in bounded memory, and the start-up errors and warnings.

use php_client_tests::http_client::{request, Client};
use php_client_tests::server::{http_config, scratch_dir, RrServer};
use std::path::{Path, PathBuf};

/// A public dir with a few files, removed at the end.
struct Public(PathBuf);

impl Drop for Public {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn public_dir() -> Public {
    let dir = scratch_dir().join("public");
    std::fs::create_dir_all(dir.join("assets.v1")).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello world\n").unwrap();
    std::fs::write(dir.join("app.css"), "body{}\n").unwrap();
    std::fs::write(dir.join("index.php"), "<?php echo 'source';\n").unwrap();
    std::fs::write(dir.join("blob.unknownext"), [0u8, 1, 2, 3]).unwrap();
    Public(dir)
}

fn static_config(dir: &Path, extra: &str) -> String {
    http_config(
        &format!(
            "  middleware: [\"static\"]\n  static:\n    dir: {}\n    forbid: [\".php\"]\n{extra}",
            dir.display()
        ),
        "",
    )
}

#[test]
fn files_are_served_by_rr_s_rules_and_the_rest_goes_to_php() {
    let public = public_dir();
    let server = RrServer::start(&static_config(
        &public.0,
        "    calculate_etag: true\n    response:\n      x-static: \"yes\"\n",
    ));
    let address = server.http();
    let mut client = Client::connect(address);
    let css = client.get("/app.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.text(), "body{}\n");
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(css.header("x-static"), Some("yes"));
    assert_eq!(css.header("accept-ranges"), Some("bytes"));
    assert!(css
        .header("last-modified")
        .is_some_and(|v| v.ends_with(" GMT")));
    // Keep-alive goes on after a static answer.
    let hello = client.get("/hello.txt");
    assert_eq!(hello.header("etag"), Some("\"12-4004000938\""));
    assert_eq!(hello.header("content-length"), Some("12"));
    assert_eq!(
        hello.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // Not static: forbidden extension, no extension, a directory, a missing file → PHP.
    for path in ["/index.php", "/about", "/assets.v1", "/missing.css"] {
        let reply = client.get(path);
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(
            reply.text(),
            format!("not found: {path}\n"),
            "PHP answers {path}"
        );
    }
    let traversal = request(
        address,
        b"GET /assets.v1/../hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(traversal.status, 403);
    assert!(traversal.body.is_empty());
    let unknown = client.get("/blob.unknownext");
    assert_eq!(
        unknown.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(unknown.body, [0, 1, 2, 3]);
    // Conditional requests.
    let not_modified = request(
        address,
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"12-4004000938\"\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some("\"12-4004000938\""));
    assert_eq!(not_modified.header("content-type"), None);
    // RFC 9110 §8.6: a 304's length would be the 200's; none is sent (rr sent 0).
    assert_eq!(not_modified.header("content-length"), None);
    let changed = request(
        address,
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"1-1\"\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(changed.status, 200);
    let modified = hello.header("last-modified").unwrap().to_owned();
    let since = request(
        address,
        format!("GET /app.css HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {modified}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(since.status, 304);
    assert_eq!(since.header("content-length"), None);
    // Ranges.
    let range = |header: &str| {
        request(
            address,
            format!("GET /hello.txt HTTP/1.1\r\nHost: x\r\nRange: {header}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let first = range("bytes=0-4");
    assert_eq!(first.status, 206);
    assert_eq!(first.text(), "hello");
    assert_eq!(first.header("content-range"), Some("bytes 0-4/12"));
    let tail = range("bytes=-6");
    assert_eq!(tail.text(), "world\n");
    let outside = range("bytes=20-");
    assert_eq!(outside.status, 416);
    assert_eq!(outside.header("content-range"), Some("bytes */12"));
    let two = range("bytes=0-1,6-7");
    assert_eq!(two.status, 206);
    let kind = two.header("content-type").unwrap();
    assert!(
        kind.starts_with("multipart/byteranges; boundary="),
        "{kind}"
    );
    let body = two.text();
    assert!(
        body.contains(
            "Content-Range: bytes 0-1/12\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhe\r\n"
        ),
        "{body}"
    );
    assert!(
        body.contains(
            "Content-Range: bytes 6-7/12\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nwo\r\n"
        ),
        "{body}"
    );
    assert_eq!(
        two.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    let many = range(&format!("bytes={}", vec!["0-0"; 1000].join(",")));
    assert_eq!(
        many.status, 200,
        "1,000 ranges: the whole file, bounded work"
    );
    // HEAD: the headers only.
    let head = request(
        address,
        b"HEAD /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("12"));
    assert!(head.body.is_empty());
    // Static answers are not in the request log (rr's middleware order).
    assert!(!server.output().contains("\"URI\":\"/hello.txt\""));
}

#[test]
fn a_100_mb_file_streams_in_bounded_memory() {
    let public = public_dir();
    let size = 100 * 1000 * 1000;
    let mut content = vec![b'a'; size];
    content[size - 1] = b'z';
    std::fs::write(public.0.join("big.bin"), &content).unwrap();
    drop(content);
    let server = RrServer::start(&static_config(&public.0, ""));
    let status = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = |text: &str, field: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap()
    };
    let before = rss_kib(&status(server.pid()), "VmRSS:");
    let reply = request(
        server.http(),
        b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), size);
    assert_eq!(reply.body[size - 1], b'z');
    let peak = rss_kib(&status(server.pid()), "VmHWM:");
    assert!(
        peak < before + 32 * 1024,
        "peak {} MiB for a 100 MB file (before: {} MiB)",
        peak / 1024,
        before / 1024
    );
}

#[test]
fn a_missing_dir_stops_the_start_and_php_sources_are_warned_about() {
    let yaml = http_config(
        "  middleware: [\"static\"]\n  static:\n    dir: /nonexistent/public\n",
        "",
    );
    let (status, output) = RrServer::start_with(&yaml, &[]).unwrap_err();
    assert_eq!(status.code(), Some(1));
    assert!(
        output
            .contains("static_plugin_valid: root directory '/nonexistent/public' does not exists"),
        "{output}"
    );
    let public = public_dir();
    let yaml = http_config(
        &format!(
            "  middleware: [\"static\"]\n  static:\n    dir: {}\n",
            public.0.display()
        ),
        "",
    );
    let server = RrServer::start(&yaml);
    assert!(server.wait_for_line(
        "serves .php files in its dir as source",
        std::time::Duration::from_secs(5)
    ));
}
