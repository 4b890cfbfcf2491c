//! Clients that do not read, trickle, smuggle or send malformed requests, against the real
//! `rr` binary with real PHP workers: none of them may hold a worker, a connection or a
//! request hostage, and each gets a defined answer.

use php_client_tests::http_client::{get, request, Client};
use php_client_tests::server::{
    free_port, http_config as config, scratch_dir, spawn_serve, wait_child_exit, wait_for_port,
    worker_command, RrServer,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A connection with a 4 KiB receive buffer, set before connecting so the window stays small.
fn connect_small_window(address: SocketAddr) -> TcpStream {
    use rustix::net::{connect, socket, sockopt, AddressFamily, SocketType};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    sockopt::set_socket_recv_buffer_size(&fd, 4096).expect("SO_RCVBUF");
    connect(&fd, &address).expect("connect");
    let stream = TcpStream::from(fd);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Reads until `needle` has arrived; panics at EOF.
fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(needle) {
        assert_eq!(
            stream.read(&mut byte).expect("read"),
            1,
            "EOF before {needle:?}"
        );
        seen.push(byte[0]);
    }
    seen
}

#[test]
fn clients_that_stop_reading_pin_no_worker_and_are_closed_after_write_timeout() {
    // Two workers, four clients that ask for 32 MiB and read only the status line.
    let mut server = RrServer::start(&config("  write_timeout: 2s\n", ""));
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = connect_small_window(server.http());
            stream
                .write_all(b"GET /big?kb=32768 HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap();
            assert_eq!(read_until(&mut stream, b"\r\n"), b"HTTP/1.1 200 OK\r\n");
            stream
        })
        .collect();
    // Each worker went back to the pool before its reply was written.
    let status = server.status.expect("status listener");
    assert_eq!(get(status, "/ready").status, 200);
    let asked = Instant::now();
    assert_eq!(get(server.http(), "/hello").status, 200);
    assert!(asked.elapsed() < Duration::from_secs(5));
    // The writes stall; after write_timeout each connection is closed, with a log line.
    let closed_all = server.wait_for(Duration::from_secs(30), |lines| {
        lines
            .iter()
            .filter(|l| l.contains("write_timeout elapsed"))
            .count()
            == 4
    });
    assert!(closed_all, "{}", server.output());
    // Nothing is left for a stop to wait on.
    let stopping = Instant::now();
    assert!(server.stop().success());
    assert!(stopping.elapsed() < Duration::from_secs(10));
    drop(stalled);
}

#[test]
fn content_length_beside_chunked_is_not_forwarded_and_the_connection_closes() {
    let server = RrServer::start(&config("", ""));
    let mut client = Client::connect(server.http());
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    let response = client.read_response(false).expect("the answer");
    let echo = response.json();
    assert_eq!(echo["body"], "hello");
    assert!(echo["headers"].get("Content-Length").is_none(), "{echo}");
    assert_eq!(response.header("connection"), Some("close"));
    // The request hidden after the body never reaches a worker.
    assert!(client.is_closed());
}

#[test]
fn go_refuses_what_would_reach_the_worker_with_a_broken_uri() {
    let server = RrServer::start(&config("  max_request_size: 1\n", ""));
    let refused = |raw: &[u8]| {
        let response = request(server.http(), raw);
        (response.status, response.text())
    };
    assert_eq!(
        refused(b"GET /echo HTTP/1.1\r\n\r\n"),
        (400, "400 Bad Request: missing required Host header".into())
    );
    assert_eq!(
        refused(b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        (400, "400 Bad Request: too many Host headers".into())
    );
    assert_eq!(
        refused(b"GET xecho HTTP/1.1\r\nHost: h\r\n\r\n"),
        (400, "400 Bad Request".into())
    );
    assert_eq!(
        refused(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n"),
        (400, "400 Bad Request".into())
    );
    // HTTP/1.0 needs no Host: the worker gets rr's `http:///echo` (our test worker's URI
    // parser finds no path in it and answers 404 itself).
    let old = request(server.http(), b"GET /echo HTTP/1.0\r\n\r\n");
    assert_eq!((old.status, old.text()), (404, "not found: \n".into()));
    // A bare LF inside a chunk-size line.
    assert_eq!(
        refused(b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x\nab\r\nhello\r\n0\r\n\r\n").0,
        400
    );
    // A chunk announced larger than max_request_size: 413 before its data is sent.
    let mut client = Client::connect(server.http());
    client.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n");
    let response = client.read_response(false).expect("413 at once");
    assert_eq!(response.status, 413);
}

#[test]
fn a_413_reaches_a_client_that_is_still_sending_its_body() {
    let server = RrServer::start(&config("  max_request_size: 1\n", ""));
    for _ in 0..3 {
        let mut client = Client::connect(server.http());
        let mut writer = client.stream_clone();
        let sender = std::thread::spawn(move || {
            writer
                .write_all(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4194304\r\n\r\n")?;
            writer.write_all(&vec![b'x'; 4 << 20])
        });
        // The body goes out whole (a server that closed at once resets the connection, and
        // the client's write fails: most clients then report that error, not the answer).
        let sent = sender.join().unwrap();
        assert!(sent.is_ok(), "{sent:?}");
        let response = client.read_response(false).expect("the 413, not a reset");
        assert_eq!(response.status, 413);
    }
}

#[test]
fn a_body_trickled_byte_by_byte_is_cut_off_at_the_minimum_rate() {
    let server = RrServer::start(&config("  read_header_timeout: 2s\n", ""));
    let mut client = Client::connect(server.http());
    let mut writer = client.stream_clone();
    client.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n");
    let started = Instant::now();
    // The client under test: one byte every 300 ms, each read well within the 2 s timeout;
    // the whole body would take 30 s.
    let trickler = std::thread::spawn(move || {
        for _ in 0..100 {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let response = client.read_response(false).expect("an answer");
    assert_eq!(response.status, 408);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert!(client.is_closed());
    trickler.join().unwrap();
}

#[test]
fn answers_given_while_stopping_say_connection_close() {
    let mut server = RrServer::start(&config("", ""));
    let status = server.status.expect("status listener");
    // Both workers idle first: /ready is 503 too while a worker is still entering service.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(status, "/ready").status != 200 {
        assert!(Instant::now() < deadline, "the workers never got ready");
    }
    let mut clients: Vec<Client> = (0..2).map(|_| Client::connect(server.http())).collect();
    for client in &mut clients {
        client.send(b"GET /slow?ms=3000 HTTP/1.1\r\nHost: h\r\n\r\n");
    }
    // Both workers are busy with them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(status, "/ready").status == 200 {
        assert!(Instant::now() < deadline, "the workers never got busy");
    }
    server.signal(rustix::process::Signal::TERM);
    for client in &mut clients {
        let response = client
            .read_response(false)
            .expect("the request in flight is answered");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), Some("close"));
        assert!(client.is_closed());
    }
    assert!(server
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
}

/// `server.relay` set to each kind, the pool's `http.php` workers.
fn relay_config(relay: &str) -> String {
    format!(
        "version: \"3\"\nserver:\n  command: \"{}\"\n  relay: \"{relay}\"\nhttp:\n  address: 127.0.0.1:0\n  pool:\n    num_workers: 2\nstatus:\n  address: 127.0.0.1:0\nlogs:\n  level: info\n",
        worker_command("http.php")
    )
}

#[test]
fn multi_megabyte_bodies_and_replies_cross_every_relay() {
    let dir = scratch_dir();
    let body: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    let crc = format!("{:08x}", crc32fast::hash(&body));
    for relay in [
        "pipes".to_owned(),
        "tcp://127.0.0.1:0".to_owned(),
        format!("unix://{}", dir.join("rr.sock").display()),
    ] {
        let server = RrServer::start(&relay_config(&relay));
        let mut client = Client::connect(server.http());
        let mut raw = format!(
            "POST /len HTTP/1.1\r\nHost: h\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        client.send(&raw);
        let response = client.read_response(false).expect("an answer");
        assert_eq!(response.status, 200, "{relay}: {}", response.text());
        assert_eq!(response.text(), format!("{} {crc}", body.len()), "{relay}");
        // The same body chunked (decoded into its own buffer, lent from there).
        let mut chunked =
            b"POST /len HTTP/1.1\r\nHost: h\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(1 << 20) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        client.send(&chunked);
        let response = client.read_response(false).expect("an answer");
        assert_eq!(
            response.text(),
            format!("{} {crc}", body.len()),
            "{relay} chunked"
        );
        let reply = client.get("/big?kb=12288");
        assert_eq!(reply.status, 200, "{relay}");
        assert_eq!(reply.body.len(), 12 << 20, "{relay}");
        assert!(reply.body.iter().all(|&b| b == b'x'), "{relay}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn requests_are_answered_while_the_log_output_is_a_pipe_nobody_reads() {
    use std::io::BufRead;
    let port = free_port();
    let dir = scratch_dir();
    let yaml = config("", "").replacen(
        "  address: 127.0.0.1:0\n",
        &format!("  address: 127.0.0.1:{port}\n"),
        1,
    );
    std::fs::write(dir.join(".rr.yaml"), yaml).unwrap();
    // stdout and stderr are pipes this test does not read.
    let mut child = spawn_serve(&dir, &[]);
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_for_port(address, Duration::from_secs(30)),
        "rr never listened"
    );
    // Each request logs a line; 12,000 of them overflow the pipe and the queue (8,192 lines).
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect(address);
                (0..3000).all(|_| client.get("/hello").status == 200)
            })
        })
        .collect();
    for client in clients {
        assert!(client.join().unwrap());
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    // Once the output drains, the drop count is reported in the log.
    let stderr = child.stderr.take().unwrap();
    let (found, report) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stderr).lines();
        let seen = lines.any(|line| line.is_ok_and(|l| l.contains("log lines lost")));
        let _ = found.send(seen);
        for _ in lines {}
    });
    assert_eq!(report.recv_timeout(Duration::from_secs(20)), Ok(true));
    // And a stop is not held by stdout, which nobody reads either.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let Some(status) = wait_child_exit(&mut child, Duration::from_secs(20)) else {
        let _ = child.kill();
        panic!("rr did not exit after SIGTERM");
    };
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_listener_out_of_descriptors_backs_off_instead_of_logging_a_flood() {
    use std::os::unix::fs::PermissionsExt;
    // rr with 64 open files and 120 clients holding their connections: accept(2) fails with
    // EMFILE while the backlog stays readable. Each failure waits twice the last (5 ms up to
    // a second, as Go's server), so the log reaches the one-second delay after nine lines a
    // shard; before, each shard logged every 10 ms (about 260 lines in the same 1.3 s).
    let dir = scratch_dir();
    let wrapper = dir.join("few-files");
    std::fs::write(&wrapper, "#!/bin/sh\nexec prlimit --nofile=64:64 \"$@\"\n").unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let launch = php_client_tests::server::Launch {
        wrapper: Some(wrapper),
        env: Vec::new(),
    };
    let server = RrServer::start_launched(&config("", ""), &[], &launch).expect("rr starts");
    let held: Vec<TcpStream> = (0..120)
        .map(|_| TcpStream::connect(server.http()).expect("connect (the backlog takes it)"))
        .collect();
    assert!(
        server.wait_for_line(r#""retry_in":"1s""#, Duration::from_secs(30)),
        "{}",
        server.output()
    );
    let failures = server.output().matches("accept failed").count();
    assert!(failures < 30, "{failures} accept failures logged");
    drop(held);
    // Descriptors back: the listener serves again (its next try within a second).
    assert_eq!(get(server.http(), "/hello").status, 200);
}
