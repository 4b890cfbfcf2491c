//! `http.fcgi` through the real binary, real PHP workers and a real nginx (Debian's) with
//! `fastcgi_pass`: requests and their headers reach the workers, multi-megabyte bodies both
//! ways, streamed answers, statuses, a unix socket listener; and bad records sent straight to
//! the FastCGI port are refused without disturbing the others. Skips, visibly, when nginx is
//! not installed.

use php_client_tests::server::{free_port, scratch_dir, worker_command, RrServer};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// nginx in front of `fastcgi_pass`.
struct Nginx(php_client_tests::nginx::Nginx);

impl Nginx {
    fn start(pass: &str) -> Option<Self> {
        php_client_tests::nginx::Nginx::start(|port| {
            format!(
                "server {{ listen 127.0.0.1:{port}; location / {{ include /etc/nginx/fastcgi_params; fastcgi_param REQUEST_URI $request_uri; fastcgi_keep_conn on; fastcgi_buffering off; fastcgi_pass {pass}; }} }}"
            )
        })
        .map(Self)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.0.port)
    }
}

fn server(address: &str) -> RrServer {
    let yaml = format!(
        "version: \"3\"\nserver:\n  command: \"{}\"\nhttp:\n  fcgi:\n    address: {address}\n  pool:\n    num_workers: 2\nlogs:\n  level: info\n",
        worker_command("http.php")
    );
    let server = RrServer::start(&yaml);
    assert!(server.wait_for_line("fcgi server listening", Duration::from_secs(5)));
    server
}

/// rr with a FastCGI TCP listener and nginx passing to it; None when nginx is missing.
fn nginx_over_tcp() -> Option<(RrServer, Nginx)> {
    let port = free_port();
    let server = server(&format!("tcp://127.0.0.1:{port}"));
    let nginx = Nginx::start(&format!("127.0.0.1:{port}"))?;
    Some((server, nginx))
}

/// The status code an answer has, as curl prints it.
fn status_of(url: &str) -> Vec<u8> {
    curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
}

fn curl(args: &[&str]) -> Vec<u8> {
    let output = php_client_tests::server::curl(args);
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn nginx_fastcgi_pass_reaches_the_php_workers() {
    let port = free_port();
    let _server = server(&format!("tcp://127.0.0.1:{port}"));
    let Some(nginx) = Nginx::start(&format!("127.0.0.1:{port}")) else {
        return;
    };
    let echo: Value = serde_json::from_slice(&curl(&[
        "-H",
        "X-Foo: bar",
        "-H",
        "Cookie: a=1",
        &nginx.url("/echo?x=1&y=2"),
    ]))
    .unwrap();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["uri"], "http://127.0.0.1/echo?x=1&y=2");
    assert_eq!(echo["raw_query"], "x=1&y=2");
    assert_eq!(echo["protocol"], "HTTP/1.1");
    assert_eq!(echo["remote_addr"], "127.0.0.1");
    assert_eq!(echo["headers"]["X-Foo"], serde_json::json!(["bar"]));
    assert_eq!(echo["cookies"]["a"], "1");
    assert!(echo["headers"].get("Connection").is_none(), "{echo}");
    // A form is parsed as over HTTP.
    let form: Value =
        serde_json::from_slice(&curl(&["-d", "name=ann&tags[]=a", &nginx.url("/echo")])).unwrap();
    assert_eq!(form["parsed"], true);
    // Multi-megabyte both ways.
    let body = scratch_dir().join("body");
    std::fs::write(&body, vec![b'q'; 3 << 20]).unwrap();
    let len = curl(&[
        "--data-binary",
        &format!("@{}", body.display()),
        "-H",
        "Content-Type: application/octet-stream",
        &nginx.url("/len"),
    ]);
    assert!(
        String::from_utf8_lossy(&len).starts_with(&format!("{} ", 3 << 20)),
        "{}",
        String::from_utf8_lossy(&len)
    );
    let big = curl(&[&nginx.url("/big?kb=3072")]);
    assert_eq!(big.len(), 3 << 20);
    // A streamed answer arrives whole; statuses and headers pass.
    let stream = String::from_utf8(curl(&[&nginx.url("/stream?n=3")])).unwrap();
    assert!(
        stream.contains("chunk 0") && stream.contains("chunk 2"),
        "{stream}"
    );
    let status = status_of(&nginx.url("/status/404"));
    assert_eq!(status, b"404");
    let head = String::from_utf8(curl(&["-i", &nginx.url("/cookies")])).unwrap();
    assert!(
        head.contains("Set-Cookie: a=1; Path=/") && head.contains("Set-Cookie: b=2; HttpOnly"),
        "{head}"
    );
    // A worker error is rr's 500.
    let error = status_of(&nginx.url("/error"));
    assert_eq!(error, b"500");
}

#[test]
fn a_unix_socket_listener_serves_nginx() {
    let path = scratch_dir().join("fcgi.sock");
    let _server = server(&format!("unix://{}", path.display()));
    let Some(nginx) = Nginx::start(&format!("unix:{}", path.display())) else {
        return;
    };
    assert_eq!(curl(&[&nginx.url("/hello")]), b"Hello from PHP\n");
}

/// One record.
fn record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    let mut out = vec![1, kind];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&u16::try_from(content.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(content);
    out
}

fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply
}

#[test]
fn bad_records_are_refused_and_others_are_served() {
    let port = free_port();
    let _server = server(&format!("127.0.0.1:{port}"));
    // Not FastCGI at all: closed, nothing sent back.
    assert!(exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_empty());
    // Name-value lengths that run past the parameters: closed.
    let mut bad_params = record(1, 1, &[0, 1, 0, 0, 0, 0, 0, 0]);
    bad_params.extend(record(4, 1, &[0x7f, 0x7f, b'x']));
    bad_params.extend(record(4, 1, b""));
    bad_params.extend(record(5, 1, b""));
    assert!(exchange(port, &bad_params).is_empty());
    // A role other than responder: FCGI_UNKNOWN_ROLE for that request.
    // (The connection stays open for the next request: read just the record.)
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(&record(1, 9, &[0, 2, 0, 0, 0, 0, 0, 0]))
        .unwrap();
    let mut reply = [0u8; 16];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..4], &[1, 3, 0, 9], "an END_REQUEST for request 9");
    assert_eq!(reply[8 + 4], 3, "protocol status FCGI_UNKNOWN_ROLE");
    // A well-formed request straight from this test: answered in STDOUT, then END_REQUEST.
    let mut params = Vec::new();
    for (name, value) in [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/hello"),
        ("HTTP_HOST", "h"),
    ] {
        params.push(u8::try_from(name.len()).unwrap());
        params.push(u8::try_from(value.len()).unwrap());
        params.extend_from_slice(name.as_bytes());
        params.extend_from_slice(value.as_bytes());
    }
    let mut good = record(1, 1, &[0, 1, 0, 0, 0, 0, 0, 0]);
    good.extend(record(4, 1, &params));
    good.extend(record(4, 1, b""));
    good.extend(record(5, 1, b""));
    let reply = exchange(port, &good);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("Status: 200 OK\r\n") && text.contains("Hello from PHP"),
        "{text}"
    );
    assert_eq!(
        &reply[reply.len() - 16..reply.len() - 12],
        &[1, 3, 0, 1],
        "END_REQUEST last"
    );
}

#[test]
fn a_worker_early_hint_is_left_out_of_the_fastcgi_answer() {
    let Some((_server, nginx)) = nginx_over_tcp() else {
        return;
    };
    // CGI has no interim heads: the 103 is dropped, the final head and body arrive.
    let url = nginx.url("/stream?hints=1&n=3");
    let answer = String::from_utf8(curl(&["-s", "-i", &url])).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("103"), "{answer}");
    assert!(
        answer.ends_with("<html>chunk 0\nchunk 1\nchunk 2\n"),
        "{answer}"
    );
}
