//! What one client's bytes may cost the server, through the real binary and real PHP
//! workers: parsers whose work does not grow with what came before (a form of 80,000 fields,
//! a `Cookie` header of 100,000 cookies), Go's field limit with rr's answer, a worker's header
//! bytes that could split the response, and bodies that reserve memory only as they arrive.
//! The servers here run one shard, so a request that froze its shard would freeze them all.

use php_client_tests::http_client::{get, request, Client};
use php_client_tests::server::{curl, http_config, Launch, RrServer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A server on one shard (every request shares its loop).
fn one_shard_server(http_extra: &str) -> RrServer {
    let launch = Launch {
        env: vec![("RINGRUNNER_SHARDS".into(), "1".into())],
        ..Launch::default()
    };
    RrServer::start_launched(&http_config(http_extra, ""), &[], &launch)
        .unwrap_or_else(|(status, output)| panic!("rr did not start ({status}):\n{output}"))
}

/// `n` distinct `name=value` fields joined with `&`.
fn distinct_fields(n: usize) -> String {
    (0..n)
        .map(|i| format!("field{i}=v"))
        .collect::<Vec<_>>()
        .join("&")
}

fn post_form(
    address: SocketAddr,
    target: &str,
    form: &str,
) -> php_client_tests::http_client::Response {
    let raw = format!(
        "POST {target} HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    request(address, raw.as_bytes())
}

/// Runs `slow` on a thread and, while it runs, asks `/hello` on the same (only) shard: the
/// time `/hello` took.
fn hello_time_beside(address: SocketAddr, slow: impl FnOnce() + Send) -> Duration {
    std::thread::scope(|scope| {
        let running = scope.spawn(slow);
        let asked = Instant::now();
        assert_eq!(get(address, "/hello").status, 200);
        let took = asked.elapsed();
        running.join().expect("the slow request");
        took
    })
}

#[test]
fn a_form_of_80000_fields_is_refused_at_once_as_rr_does_and_the_shard_keeps_serving() {
    let server = one_shard_server("");
    let address = server.http();
    // 80,000 distinct names, about 900 KB: quadratic grouping held the shard for seconds.
    let form = distinct_fields(80_000);
    let hello = hello_time_beside(address, || {
        let asked = Instant::now();
        let response = post_form(address, "/echo", &form);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
        // rr: Go's ParseForm error reaches its generic 500 with the error text.
        assert_eq!(response.status, 500);
        assert_eq!(
            response.text(),
            "serve_http: number of URL query parameters exceeded limit\n"
        );
    });
    assert!(hello < Duration::from_secs(1), "/hello waited {hello:?}");
    assert!(server.wait_for_line("malformed form body", Duration::from_secs(10)));
}

#[test]
fn a_form_at_the_field_limit_is_parsed_in_linear_time() {
    let server = one_shard_server("");
    let address = server.http();
    let form = distinct_fields(10_000);
    let asked = Instant::now();
    let response = post_form(address, "/echo", &form);
    assert_eq!(response.status, 200, "{}", response.text());
    let echo = response.json();
    assert_eq!(echo["parsed"], true);
    let tree: serde_json::Value =
        serde_json::from_str(echo["body"].as_str().expect("the body")).expect("the tree's JSON");
    let fields = tree.as_object().expect("the parsed tree");
    assert_eq!(fields.len(), 10_000);
    assert_eq!(fields["field9999"], "v");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
}

#[test]
fn a_form_request_whose_query_passes_the_field_limit_is_refused_too() {
    // Go's ParseForm parses the URL's query along with the body (rr calls it for forms).
    let server = one_shard_server("");
    let query = "q&".repeat(10_000);
    let response = post_form(server.http(), &format!("/echo?{query}"), "a=1");
    assert_eq!(response.status, 500);
    assert_eq!(
        response.text(),
        "serve_http: number of URL query parameters exceeded limit\n"
    );
    // A query as long on a request without a form body is the worker's to parse.
    let raw = format!("GET /echo?{query} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_eq!(request(server.http(), raw.as_bytes()).status, 200);
}

#[test]
fn a_cookie_header_of_100000_cookies_costs_linear_time() {
    let server = one_shard_server("");
    let address = server.http();
    // About 900 KB of `cN=1; ` (under the 1 MiB head limit): a linear search per cookie
    // made this quadratic.
    let cookies: String = (0..100_000).map(|i| format!("c{i}=1; ")).collect();
    let raw =
        format!("GET /hello HTTP/1.1\r\nHost: h\r\nCookie: {cookies}\r\nConnection: close\r\n\r\n");
    let hello = hello_time_beside(address, || {
        let asked = Instant::now();
        assert_eq!(request(address, raw.as_bytes()).status, 200);
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
    });
    assert!(hello < Duration::from_secs(5), "/hello waited {hello:?}");
}

/// The header names of a raw HTTP/1.1 answer, lower-cased, and its head.
fn answer_head(address: SocketAddr, path: &str) -> String {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.split("\r\n\r\n").next().unwrap_or_default().to_owned()
}

#[test]
fn worker_header_names_that_are_not_tokens_and_values_that_break_lines_are_dropped() {
    let server = RrServer::start(&http_config("  http2:\n    h2c: true\n", ""));
    let head = answer_head(server.http(), "/badheaders");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let lines: Vec<&str> = head.split("\r\n").skip(1).collect();
    // Every line is a well-formed header, and none came from the worker's injection tries.
    for line in &lines {
        let (name, _) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("{line:?} in {head}"));
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{line:?}"
        );
        assert!(!name.eq_ignore_ascii_case("x-injected"), "{head}");
    }
    assert!(lines.contains(&"X-Good: kept"), "{head}");
    assert!(lines.contains(&"X-Many: one"), "{head}");
    for gone in ["X-Split", "X-Nul", "Bad", "X-A"] {
        assert!(!head.contains(gone), "{gone} in {head}");
    }
    assert!(server.wait_for_line("worker header dropped", Duration::from_secs(10)));
    // The same over HTTP/2 (h2c with prior knowledge).
    let url = format!("http://{}/badheaders", server.http());
    let answer = curl(&[
        "--http2-prior-knowledge",
        "-s",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &url,
    ]);
    let answer = String::from_utf8_lossy(&answer.stdout).to_lowercase();
    if answer.is_empty() {
        eprintln!("SKIPPED the HTTP/2 half: curl gave no answer (no HTTP/2 support?)");
        return;
    }
    assert!(answer.starts_with("http/2 200"), "{answer}");
    assert!(answer.contains("\r\nx-good: kept\r\n"), "{answer}");
    assert!(!answer.contains("injected"), "{answer}");
    assert!(
        !answer.contains("x-split") && !answer.contains("x-nul"),
        "{answer}"
    );
}

/// The server process's virtual size in bytes.
fn virtual_size(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmSize:"))
        .expect("VmSize");
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn an_announced_body_reserves_nothing_until_its_bytes_arrive() {
    // rr's default max_request_size (1000 MiB) lets a client announce 900 MB.
    let server = RrServer::start(&http_config("", ""));
    let address = server.http();
    let before = virtual_size(server.pid());
    let announced: u64 = 900 << 20;
    // Ten clients announce 900 MB each and send 1 KB. `100 Continue` comes when the server
    // is about to read the body, after it made room for it.
    let clients: Vec<Client> = (0..10)
        .map(|_| {
            let mut client = Client::connect(address);
            client.send(
                format!("POST /len HTTP/1.1\r\nHost: h\r\nContent-Length: {announced}\r\nExpect: 100-continue\r\n\r\n")
                    .as_bytes(),
            );
            let mut stream = client.stream_clone();
            let mut seen = Vec::new();
            let mut byte = [0u8; 1];
            while !seen.ends_with(b"\r\n\r\n") {
                assert_eq!(stream.read(&mut byte).expect("read"), 1, "EOF: {seen:?}");
                seen.push(byte[0]);
            }
            assert!(seen.starts_with(b"HTTP/1.1 100 Continue"), "{seen:?}");
            client.send(&[b'x'; 1024]);
            client
        })
        .collect();
    let grown = virtual_size(server.pid()).saturating_sub(before);
    // Reserving the announced length grew it by 10 x 900 MB.
    assert!(grown < 512 << 20, "the server grew by {} MiB", grown >> 20);
    // The server still serves.
    assert_eq!(get(address, "/hello").status, 200);
    drop(clients);
}
