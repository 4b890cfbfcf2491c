//! HTTP/2 through the real binary and real PHP workers: cleartext with prior knowledge
//! (`http2.h2c`) and over TLS by ALPN, with `curl` as the client; multiplexed streams,
//! streams reset mid-request, `max_concurrent_streams`, and the known floods (rapid reset,
//! PING, SETTINGS, CONTINUATION) from a raw client of ours (`h2_frames`). Skips, visibly,
//! when `curl` or `openssl` is missing.

use php_client_tests::h2_frames::{self as h2, RawH2};
use php_client_tests::server::{curl, http_config, scratch_dir, RrServer};
use serde_json::Value;
use std::collections::HashSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn tools_present() -> bool {
    for tool in ["curl", "openssl"] {
        if Command::new(tool).arg("version").output().is_err()
            && Command::new(tool).arg("--version").output().is_err()
        {
            eprintln!("SKIPPED: {tool} is not installed; scripts/install-deps installs it");
            return false;
        }
    }
    true
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A server with h2c on, `http_extra` more lines under `http.http2`, and `workers` workers.
fn h2c_server(http2_extra: &str, workers: usize) -> RrServer {
    let yaml = http_config(&format!("  http2:\n    h2c: true\n{http2_extra}"), "")
        .replace("num_workers: 2", &format!("num_workers: {workers}"));
    RrServer::start(&yaml)
}

#[test]
fn h2c_with_prior_knowledge_reaches_the_worker_as_http2() {
    if !tools_present() {
        return;
    }
    let server = h2c_server("", 2);
    let address = server.http();
    let url = format!("http://{address}/echo?x=1");
    let answer = curl(&[
        "--http2-prior-knowledge",
        "-i",
        "-H",
        "Cookie: a=1",
        "-H",
        "Cookie: b=2",
        &url,
    ]);
    let answer = text(&answer);
    assert!(answer.starts_with("HTTP/2 200"), "{answer}");
    assert!(
        answer.contains("\r\ncontent-type: application/json\r\n"),
        "{answer}"
    );
    let body: Value =
        serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["protocol"], "HTTP/2.0");
    assert_eq!(body["uri"], format!("http://{address}/echo?x=1"));
    assert_eq!(body["headers"]["Cookie"], serde_json::json!(["a=1; b=2"]));
    assert!(body["headers"].get("Host").is_none(), "{body}");
    assert_eq!(body["cookies"]["b"], "2");
    // HTTP/1.1 on the same port still; an `Upgrade: h2c` is answered over HTTP/1.1.
    let plain = curl(&["--http1.1", &url]);
    let plain: Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert_eq!(plain["protocol"], "HTTP/1.1");
    let upgrade = curl(&["--http2", "-w", "\n%{http_version}", &url]);
    assert!(text(&upgrade).ends_with("\n1.1"), "{}", text(&upgrade));
    // Streamed replies with an early hint, over h2c.
    let hinted = curl(&[
        "--http2-prior-knowledge",
        "-i",
        &format!("http://{address}/stream?hints=1&n=3"),
    ]);
    let hinted = text(&hinted);
    assert!(hinted.starts_with("HTTP/2 103"), "{hinted}");
    assert!(hinted.contains("link: </app.css>; rel=preload"), "{hinted}");
    assert!(hinted.contains("HTTP/2 200"), "{hinted}");
    assert!(
        hinted.ends_with("<html>chunk 0\nchunk 1\nchunk 2\n"),
        "{hinted}"
    );
}

#[test]
fn curl_multiplexes_parallel_transfers_on_one_connection() {
    if !tools_present() {
        return;
    }
    // Over TLS: Debian's curl 7.88 fails parallel transfers with prior knowledge against
    // any server (nginx too: "Error in the HTTP2 framing layer"), and multiplexes by ALPN.
    let (_server, cert, tls_port) = tls_server(4);
    let url = format!("https://127.0.0.1:{tls_port}/slow?ms=600");
    let mut args = vec![
        "--http2",
        "--cacert",
        &cert,
        "--parallel",
        "--parallel-max",
        "4",
        "-w",
        "%{num_connects} %{http_version} %{http_code}\n",
    ];
    for _ in 0..4 {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    let started = Instant::now();
    let transfers = text(&curl(&args));
    let lines: Vec<&str> = transfers.lines().collect();
    assert_eq!(lines.len(), 4, "{transfers}");
    assert!(
        lines.iter().all(|line| line.ends_with(" 2 200")),
        "{transfers}"
    );
    let connects: u32 = lines
        .iter()
        .map(|line| line.split(' ').next().unwrap().parse::<u32>().unwrap())
        .sum();
    assert_eq!(connects, 1, "one connection for the four: {transfers}");
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "four 600 ms requests took {:?}",
        started.elapsed()
    );
}

#[test]
fn without_h2c_the_preface_is_refused_at_once() {
    if !tools_present() {
        return;
    }
    let server = RrServer::start(&http_config("", ""));
    let started = Instant::now();
    let refused = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/hello", server.http()),
    ]);
    assert!(!refused.status.success() || !text(&refused).contains("Hello"));
    assert!(started.elapsed() < Duration::from_secs(10), "it hung");
}

/// A self-signed certificate for localhost and 127.0.0.1: (cert, key).
fn certificate() -> (String, String) {
    let dir = scratch_dir().join("pki");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

/// A server with a TLS listener (a certificate of [`certificate`]) and `workers` workers:
/// (the server, the certificate's path, the TLS port).
fn tls_server(workers: usize) -> (RrServer, String, u16) {
    let (cert, key) = certificate();
    let tls_port = php_client_tests::server::free_port();
    let yaml = http_config(
        &format!("  ssl:\n    address: 127.0.0.1:{tls_port}\n    cert: {cert}\n    key: {key}\n"),
        "",
    )
    .replace("num_workers: 2", &format!("num_workers: {workers}"));
    let server = RrServer::start(&yaml);
    assert!(server.wait_for_line("https server listening", Duration::from_secs(5)));
    (server, cert, tls_port)
}

#[test]
fn http2_over_tls_is_agreed_by_alpn_and_carries_large_bodies() {
    if !tools_present() {
        return;
    }
    let (_server, cert, tls_port) = tls_server(2);
    let https = |path: &str, extra: &[&str]| {
        let mut args = vec!["--http2", "--cacert", &cert];
        args.extend_from_slice(extra);
        let url = format!("https://127.0.0.1:{tls_port}{path}");
        args.push(&url);
        curl(&args)
    };
    let echo = https("/echo?x=1", &["-w", "\n%{http_version}"]);
    let echo = text(&echo);
    let (json, version) = echo.rsplit_once('\n').unwrap();
    assert_eq!(version, "2");
    let json: Value = serde_json::from_str(json).unwrap();
    assert_eq!(json["protocol"], "HTTP/2.0");
    assert_eq!(
        json["uri"],
        format!("https://127.0.0.1:{tls_port}/echo?x=1")
    );
    // Multi-megabyte both ways.
    let body = scratch_dir().join("body");
    std::fs::write(&body, vec![b'z'; 3 << 20]).unwrap();
    let data = format!("@{}", body.display());
    let length = https(
        "/len",
        &[
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/octet-stream",
        ],
    );
    assert!(
        text(&length).starts_with(&format!("{} ", 3 << 20)),
        "{}",
        text(&length)
    );
    let big = https("/big?kb=3072", &[]);
    assert_eq!(big.stdout.len(), 3 << 20);
    assert!(big.stdout.iter().all(|b| *b == b'x'));
}

/// Reads frames until each stream of `ids` has its answer: (status 200?, body) in order;
/// None when the connection ends first.
fn answers_of(client: &mut RawH2, ids: &[u32]) -> Option<Vec<(bool, Vec<u8>)>> {
    let mut answers = vec![(false, Vec::new()); ids.len()];
    let mut open = ids.len();
    while open > 0 {
        let frame = client.read_until(|f| ids.contains(&f.stream) || f.kind == h2::GOAWAY)?;
        let index = ids.iter().position(|id| *id == frame.stream)?;
        match frame.kind {
            h2::HEADERS => answers[index].0 |= frame.is_status_200(),
            h2::DATA => answers[index].1.extend_from_slice(&frame.payload),
            _ => return None,
        }
        if frame.flags & h2::END_STREAM != 0 {
            open -= 1;
        }
    }
    Some(answers)
}

fn answer_of(client: &mut RawH2, id: u32) -> Option<(bool, Vec<u8>)> {
    answers_of(client, &[id]).map(|mut answers| answers.remove(0))
}

#[test]
fn streams_are_multiplexed_onto_the_pool() {
    let server = h2c_server("", 4);
    let mut client = RawH2::connect(server.http());
    let started = Instant::now();
    for id in [1, 3, 5, 7] {
        client.request(id, "GET", "/slow?ms=1000", true).unwrap();
    }
    let mut pids = HashSet::new();
    let mut done = 0;
    while done < 4 {
        let frame = client.read_until(|f| f.kind == h2::DATA).expect("answers");
        pids.insert(String::from_utf8_lossy(&frame.payload).into_owned());
        if frame.flags & h2::END_STREAM != 0 {
            done += 1;
        }
    }
    assert_eq!(pids.len(), 4, "four workers at once: {pids:?}");
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "four 1 s requests took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_stream_reset_mid_request_gives_its_worker_back() {
    let server = h2c_server("", 1);
    let mut client = RawH2::connect(server.http());
    // Reset while the one worker streams its reply (5 s of it), once its first chunk came.
    let streaming = "/stream?n=50&ms=100";
    client.request(1, "GET", streaming, true).unwrap();
    client
        .read_until(|f| f.stream == 1 && f.kind == h2::DATA)
        .expect("the stream's first chunk");
    client
        .send(h2::RST_STREAM, 0, 1, &h2::CANCEL.to_be_bytes())
        .unwrap();
    // And a request reset while its body is still coming.
    client.request(3, "POST", "/len", false).unwrap();
    client.send(h2::DATA, 0, 3, &[b'x'; 100]).unwrap();
    client
        .send(h2::RST_STREAM, 0, 3, &h2::CANCEL.to_be_bytes())
        .unwrap();
    let started = Instant::now();
    client.request(5, "GET", "/hello", true).unwrap();
    let (ok, body) = answer_of(&mut client, 5).expect("stream 5 answered");
    assert!(ok);
    assert_eq!(body, b"Hello from PHP\n");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the worker came back after {:?}",
        started.elapsed()
    );
    // The stopped stream is logged as any request is.
    assert!(server.wait_for_line(streaming, Duration::from_secs(5)));
}

#[test]
fn a_graceful_stop_finishes_the_streams_in_flight_and_says_goaway() {
    let mut server = h2c_server("", 1);
    let mut client = RawH2::connect(server.http());
    client.request(1, "GET", "/slow?ms=800", true).unwrap();
    // Under way once a PING sent after it is answered.
    client.send(h2::PING, 0, 0, &[2; 8]).unwrap();
    client
        .read_until(|f| f.kind == h2::PING)
        .expect("PING answered");
    server.signal(rustix::process::Signal::TERM);
    let goaway = client.read_until(|f| f.kind == h2::GOAWAY).expect("GOAWAY");
    assert_eq!(goaway.error_code(), Some(0), "NO_ERROR");
    let (ok, body) = answer_of(&mut client, 1).expect("the stream in flight answered");
    assert!(ok);
    assert!(!body.is_empty(), "the worker's pid");
    // The client never answers h2's closing PING: a second's grace, then the server exits.
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
}

#[test]
fn more_streams_than_the_descriptors_allow_wait_for_a_pair_instead_of_failing() {
    use std::os::unix::fs::PermissionsExt;
    // rr with 256 open files: 64 pairs for streams (48 in use), 180 streams at once.
    let dir = scratch_dir();
    let wrapper = dir.join("few-files");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nexec prlimit --nofile=256:256 \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = http_config("  http2:\n    h2c: true\n", "");
    let launch = php_client_tests::server::Launch {
        wrapper: Some(wrapper),
        env: Vec::new(),
    };
    let server = RrServer::start_launched(&yaml, &[], &launch).expect("rr starts");
    let mut clients: Vec<RawH2> = (0..3).map(|_| RawH2::connect(server.http())).collect();
    let ids: Vec<u32> = (0..60).map(|n| 2 * n + 1).collect();
    for client in &mut clients {
        for id in &ids {
            client.request(*id, "GET", "/slow?ms=10", true).unwrap();
        }
    }
    for client in &mut clients {
        let answers = answers_of(client, &ids).expect("every stream answered");
        assert!(answers.iter().all(|(ok, _)| *ok));
    }
    assert!(
        !server.output().contains("Too many open files"),
        "{}",
        server.output()
    );
}

#[test]
fn max_concurrent_streams_is_advertised_and_enforced() {
    let server = h2c_server("    max_concurrent_streams: 2\n", 2);
    let mut client = RawH2::connect(server.http());
    let settings = client
        .read_until(|f| f.kind == h2::SETTINGS && f.flags & h2::ACK == 0)
        .expect("the server's SETTINGS");
    assert_eq!(settings.setting(h2::MAX_CONCURRENT_STREAMS), Some(2));
    for id in [1, 3, 5] {
        client.request(id, "GET", "/slow?ms=500", true).unwrap();
    }
    let refused = client
        .read_until(|f| f.kind == h2::RST_STREAM)
        .expect("a refusal");
    assert_eq!(
        (refused.stream, refused.error_code()),
        (5, Some(h2::REFUSED_STREAM))
    );
    let answers = answers_of(&mut client, &[1, 3]).expect("answered");
    assert!(answers.iter().all(|(ok, _)| *ok));
}

/// After a flood on one connection, another client is served at once.
fn served_after(server: &RrServer) {
    let mut client = RawH2::connect(server.http());
    client.request(1, "GET", "/hello", true).unwrap();
    let (ok, body) = answer_of(&mut client, 1).expect("served after the flood");
    assert!(ok);
    assert_eq!(body, b"Hello from PHP\n");
}

/// The server's resident set in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_rapid_reset_flood_ends_the_connection_without_piling_up_work() {
    let server = h2c_server("    max_concurrent_streams: 8\n", 2);
    let mut client = RawH2::connect(server.http());
    let mut flood = Vec::new();
    let block = h2::header_block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/slow?ms=20"),
        (":authority", "localhost"),
    ]);
    for n in 0..2000u32 {
        let id = 2 * n + 1;
        flood.extend(h2::frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            id,
            &block,
        ));
        flood.extend(h2::frame(h2::RST_STREAM, 0, id, &h2::CANCEL.to_be_bytes()));
    }
    // Reset before they were taken up: the h2 layer's own count ends it.
    let _ = client.send_raw(&flood);
    let goaway = client.read_until(|f| f.kind == h2::GOAWAY).expect("GOAWAY");
    assert_eq!(goaway.error_code(), Some(h2::ENHANCE_YOUR_CALM));
    served_after(&server);
    // Reset once each request is under way (a PING's answer says the server read it):
    // at most `max_concurrent_streams` of them run at once, and the connection ends.
    let mut client = RawH2::connect(server.http());
    let mut goaway = None;
    for n in 0..2000u32 {
        let id = 2 * n + 1;
        let opened = client.send(h2::HEADERS, h2::END_HEADERS | h2::END_STREAM, id, &block);
        if opened.is_err() || client.send(h2::PING, 0, 0, &[1; 8]).is_err() {
            break;
        }
        let Some(frame) = client.read_until(|f| f.kind == h2::GOAWAY || f.kind == h2::PING) else {
            break;
        };
        if frame.kind == h2::GOAWAY {
            goaway = Some(frame);
            break;
        }
        if client
            .send(h2::RST_STREAM, 0, id, &h2::CANCEL.to_be_bytes())
            .is_err()
        {
            break;
        }
    }
    let goaway = goaway.or_else(|| client.read_until(|f| f.kind == h2::GOAWAY));
    assert_eq!(
        goaway.expect("GOAWAY").error_code(),
        Some(h2::ENHANCE_YOUR_CALM)
    );
    assert!(server.wait_for_line(
        "resets streams mid-request in a flood",
        Duration::from_secs(5)
    ));
    served_after(&server);
    let ran = server
        .output()
        .lines()
        .filter(|l| l.contains("\"URI\":\"/slow?ms=20\""))
        .count();
    assert!(
        ran < 200,
        "{ran} of 4000 reset requests reached the workers"
    );
}

#[test]
fn ping_settings_and_continuation_floods_are_bounded() {
    let server = h2c_server("", 2);
    let before = rss_kib(server.pid());
    for kind in [h2::PING, h2::SETTINGS] {
        let mut client = RawH2::connect(server.http());
        let one = if kind == h2::PING {
            h2::frame(h2::PING, 0, 0, &[7; 8])
        } else {
            h2::frame(h2::SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0])
        };
        let flood: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * 100_000)
            .collect();
        // Never reading the answers: the server must stop reading, not queue them all.
        client.set_read_timeout(Duration::from_secs(5));
        let writer = std::thread::spawn(move || {
            let _ = client.send_raw(&flood);
            client
        });
        served_after(&server);
        drop(writer);
    }
    // A header block that never ends.
    let mut client = RawH2::connect(server.http());
    let block = h2::header_block(&[(":method", "GET"), (":path", "/hello")]);
    let mut opened = client.send(h2::HEADERS, h2::END_STREAM, 1, &block).is_ok();
    let filler = h2::header_block(&[("x-filler", &"f".repeat(16_000))]);
    let mut sent = 0;
    while opened && sent < 640 {
        opened = client.send(h2::CONTINUATION, 0, 1, &filler).is_ok();
        sent += 1;
    }
    let ended = client.read_until(|f| f.kind == h2::GOAWAY);
    assert!(ended.is_none_or(|f| f.error_code().is_some()));
    served_after(&server);
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "the floods grew the server by {grown} KiB"
    );
}

/// The server's open descriptors.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn streams_in_flight_take_no_descriptors_of_their_own() {
    let server = h2c_server("", 1);
    let mut client = RawH2::connect(server.http());
    client.request(1, "GET", "/hello", true).unwrap();
    assert!(answer_of(&mut client, 1).expect("warm").0);
    let before = open_descriptors(server.pid());
    // One worker: the streams queue for it, all in flight once the first is answered.
    let ids: Vec<u32> = (1..=24).map(|n| 2 * n + 1).collect();
    for id in &ids {
        client.request(*id, "GET", "/slow?ms=200", true).unwrap();
    }
    let ends = |f: &h2::Frame| ids.contains(&f.stream) && f.flags & h2::END_STREAM != 0;
    let first = client.read_until(ends).expect("a first answer");
    let in_flight = open_descriptors(server.pid());
    assert!(
        in_flight <= before + 4,
        "{} streams in flight took {} descriptors (from {before})",
        ids.len() - 1,
        in_flight - before
    );
    let mut answered = 1;
    while answered < ids.len() {
        let frame = client.read_until(ends).expect("every stream answered");
        assert_ne!(frame.stream, first.stream);
        answered += 1;
    }
}

#[test]
fn static_files_cors_preflights_and_gzip_are_answered_on_the_stream() {
    if !tools_present() {
        return;
    }
    let public = scratch_dir().join("public");
    std::fs::create_dir_all(&public).unwrap();
    std::fs::write(public.join("hello.txt"), "hello world\n").unwrap();
    let yaml = http_config(
        &format!(
            "  http2:\n    h2c: true\n  middleware: [\"static\", \"headers\", \"gzip\"]\n  static:\n    dir: {}\n  headers:\n    response:\n      x-powered: ringrunner\n    cors:\n      allowed_origin: \"https://app.test\"\n      allowed_methods: \"GET, PUT\"\n",
            public.display()
        ),
        "",
    );
    let server = RrServer::start(&yaml);
    let url = |path: &str| format!("http://{}{path}", server.http());
    let h2 = |args: &[&str]| {
        let mut all = vec!["--http2-prior-knowledge", "-s", "-i"];
        all.extend_from_slice(args);
        text(&curl(&all))
    };
    let file = h2(&[&url("/hello.txt")]);
    assert!(file.starts_with("HTTP/2 200"), "{file}");
    assert!(file.contains("\r\nx-powered: ringrunner\r\n"), "{file}");
    assert!(file.ends_with("\r\n\r\nhello world\n"), "{file}");
    let range = h2(&["-H", "Range: bytes=0-4", &url("/hello.txt")]);
    assert!(range.starts_with("HTTP/2 206"), "{range}");
    assert!(range.ends_with("\r\n\r\nhello"), "{range}");
    let preflight = h2(&[
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://app.test",
        "-H",
        "Access-Control-Request-Method: PUT",
        &url("/status/418"),
    ]);
    assert!(preflight.starts_with("HTTP/2 200"), "{preflight}");
    assert!(
        preflight.contains("\r\naccess-control-allow-origin: https://app.test\r\n"),
        "{preflight}"
    );
    // The worker's answer, gzip-compressed on the stream and decoded by curl.
    let big = h2(&["--compressed", &url("/big?kb=64")]);
    assert!(big.starts_with("HTTP/2 200"), "{big}");
    assert!(big.contains("\r\ncontent-encoding: gzip\r\n"), "{big}");
    assert!(big.ends_with(&"x".repeat(64 * 1024)), "{}", &big[..200]);
}
