//! The tcp plugin through the real binary with real PHP workers (`workers/tcp.php`, our
//! client of spec tcp-jobs Part A): a line server, split delimiters, EOF mid-message, a
//! crashing worker, `tcp.Close` over RPC, bad peers and bad replies, 1,000 connections.

use php_client_tests::server::{free_port, scratch_dir, worker_command, RrServer};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A server with the `lines` (CRLF) and `dotted` (".") servers, its events log and RPC.
struct TcpServer {
    rr: RrServer,
    events: PathBuf,
    rpc: String,
    _dir: Scratch,
}

/// A folder removed when the test ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TcpServer {
    fn start(tcp_extra: &str, workers: usize) -> Self {
        let dir = scratch_dir();
        let events = dir.join("events.log");
        let rpc = format!("tcp://127.0.0.1:{}", free_port());
        let yaml = format!(
            "version: '3'\nserver:\n  command: \"{}\"\n  env:\n    TCP_EVENTS: {}\ntcp:\n  servers:\n    lines:\n      addr: 127.0.0.1:0\n    dotted:\n      addr: tcp://127.0.0.1:0\n      delimiter: \".\"\n{tcp_extra}  pool:\n    num_workers: {workers}\nrpc:\n  listen: {rpc}\nlogs:\n  level: info\n",
            worker_command("tcp.php"),
            events.display()
        );
        let rr = RrServer::start(&yaml);
        assert!(rr.wait_for(Duration::from_secs(10), |lines| {
            lines
                .iter()
                .filter(|l| l.contains("tcp server listening"))
                .count()
                == 2
        }));
        Self {
            rr,
            events,
            rpc,
            _dir: Scratch(dir),
        }
    }

    fn address(&self, server: &str) -> SocketAddr {
        let output = self.rr.output();
        let line = output
            .lines()
            .find(|l| {
                l.contains("tcp server listening")
                    && l.contains(&format!("\"server\":\"{server}\""))
            })
            .unwrap_or_else(|| panic!("no listener for {server}: {output}"));
        let value: Value = serde_json::from_str(&line[line.rfind('{').unwrap()..]).unwrap();
        value["address"].as_str().unwrap().parse().unwrap()
    }

    /// The events PHP saw for connection `uuid`, as (event, body).
    fn events_of(&self, uuid: &str) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["uuid"] == uuid)
            .map(|event| {
                (
                    event["event"].as_str().unwrap().to_owned(),
                    event["body"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Waits until the events of `uuid` satisfy `done` (PHP writes them as it goes).
    fn wait_events(
        &self,
        uuid: &str,
        done: impl Fn(&[(String, String)]) -> bool,
    ) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events_of(uuid);
            if done(&events) || Instant::now() > deadline {
                return events;
            }
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }
}

/// A client connection that has read its greeting.
struct Peer {
    reader: BufReader<TcpStream>,
    uuid: String,
}

impl Peer {
    fn connect(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut reader = BufReader::new(stream);
        let mut greeting = String::new();
        reader.read_line(&mut greeting).unwrap();
        let fields: Vec<&str> = greeting.trim_end().split(' ').collect();
        assert_eq!(fields[0], "hello", "{greeting:?}");
        Self {
            uuid: fields[1].to_owned(),
            reader,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    /// True when the server closed the connection (EOF, or a reset after it).
    fn closed(&mut self) -> bool {
        let mut byte = [0; 1];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }
}

fn kinds(events: &[(String, String)]) -> Vec<&str> {
    events.iter().map(|(kind, _)| kind.as_str()).collect()
}

#[test]
fn a_line_server_echoes_and_php_sees_every_event_once() {
    let server = TcpServer::start("", 2);
    let mut peer = Peer::connect(server.address("lines"));
    assert_eq!(peer.uuid.len(), 36);
    peer.send(b"ping\r\n");
    assert_eq!(peer.line(), "echo:ping\r\n");
    // A message and its delimiter split over several reads, the delimiter itself included.
    // The pause shapes the input (each piece its own segment, so the server likely reads
    // them apart); it synchronises nothing: the echo below is the event waited on, and it
    // holds however the pieces arrive.
    for piece in [&b"hel"[..], b"lo\r", b"\n"] {
        peer.send(piece);
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(peer.line(), "echo:hello\r\n");
    peer.send(b"silent\r\n");
    // CONTINUE writes nothing: wait until PHP has seen it (two messages in one read would
    // reach PHP as one, by rr's framing).
    server.wait_events(&peer.uuid, |e| {
        e.iter().any(|(_, body)| body == "silent\r\n")
    });
    peer.send(b"after\r\n");
    assert_eq!(peer.line(), "echo:after\r\n", "CONTINUE writes nothing");
    peer.send(b"quit\r\n");
    assert_eq!(peer.line(), "bye\r\n");
    assert!(peer.closed());
    let events = server.wait_events(&peer.uuid, |e| e.last().is_some_and(|(k, _)| k == "CLOSE"));
    assert_eq!(
        kinds(&events),
        ["CONNECTED", "DATA", "DATA", "DATA", "DATA", "DATA", "CLOSE"]
    );
    assert_eq!(events[2].1, "hello\r\n");
    assert_eq!(events[0].1, "");
    // The other server: its own delimiter; two messages in one read go as one (rr's framing).
    let stream = TcpStream::connect(server.address("dotted")).unwrap();
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(greeting.contains(" dotted 127.0.0.1:"), "{greeting}");
    reader.get_mut().write_all(b"a.b.").unwrap();
    let mut echo = [0u8; 9];
    reader.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"echo:a.b.");
}

#[test]
fn eof_mid_message_sends_the_rest_then_one_close() {
    let server = TcpServer::start("", 1);
    let mut peer = Peer::connect(server.address("lines"));
    peer.send(b"partial");
    peer.reader
        .get_ref()
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    // The half-closed peer still gets the answer to its last message, then the close.
    let mut rest = String::new();
    peer.reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "echo:partial");
    let events = server.wait_events(&peer.uuid, |e| e.len() >= 3);
    assert_eq!(kinds(&events), ["CONNECTED", "DATA", "CLOSE"]);
    assert_eq!(events[1].1, "partial");
}

#[test]
fn a_crashing_worker_or_a_bad_reply_closes_only_its_connection() {
    let server = TcpServer::start("", 2);
    let address = server.address("lines");
    let mut bystander = Peer::connect(address);
    for (message, close_event) in [
        (&b"crash\r\n"[..], false),
        (b"error\r\n", false),
        (b"bogus\r\n", true),
        (b"close\r\n", true),
    ] {
        let mut peer = Peer::connect(address);
        peer.send(message);
        assert!(peer.closed(), "{}", String::from_utf8_lossy(message));
        let events = server.wait_events(&peer.uuid, |e| e.len() >= 2 + usize::from(close_event));
        let expected: &[&str] = if close_event {
            &["CONNECTED", "DATA", "CLOSE"]
        } else {
            &["CONNECTED", "DATA"]
        };
        assert_eq!(
            kinds(&events),
            expected,
            "{}",
            String::from_utf8_lossy(message)
        );
        bystander.send(b"still\r\n");
        assert_eq!(bystander.line(), "echo:still\r\n");
    }
    assert!(server.rr.output().contains("execute error"));
}

#[test]
fn tcp_close_over_rpc_closes_the_connection_by_uuid() {
    let server = TcpServer::start("", 1);
    let mut peer = Peer::connect(server.address("lines"));
    let call = |uuid: &str| {
        let output = std::process::Command::new(php_client_tests::php_binary())
            .arg(php_client_tests::php_dir().join("rpc_call.php"))
            .args([&server.rpc, "tcp.Close", &Value::from(uuid).to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(call(&peer.uuid), "true");
    assert!(peer.closed());
    let events = server.wait_events(&peer.uuid, |e| e.len() >= 2);
    assert_eq!(kinds(&events), ["CONNECTED", "CLOSE"]);
    assert_eq!(call("no-such-uuid"), "true");
    // tcp is listed by the informer and the resetter; a reset keeps connections open.
    let mut kept = Peer::connect(server.address("lines"));
    let output = php_client_tests::server::run_rr(&server.rr.dir, &["reset", "tcp", "-s"]);
    assert!(output.status.success());
    kept.send(b"after reset\r\n");
    assert_eq!(kept.line(), "echo:after reset\r\n");
    let output = php_client_tests::server::run_rr(&server.rr.dir, &["workers", "tcp"]);
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("Workers of [tcp]:"));
}

#[test]
fn an_endless_message_and_a_peer_that_stops_reading_are_cut_off() {
    let server = TcpServer::start("  max_message_size: 1\n  write_timeout: 1s\n", 1);
    let address = server.address("lines");
    let mut endless = Peer::connect(address);
    let chunk = vec![b'n'; 64 * 1024];
    let mut sent = 0;
    while sent <= 2 << 20 {
        if endless.reader.get_mut().write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(endless.closed());
    assert!(server
        .rr
        .wait_for_line("over tcp.max_message_size", Duration::from_secs(10)));
    // A peer asks for 64 MB and never reads: its write stalls, the connection is closed.
    let mut stalled = Peer::connect(address);
    stalled.send(b"big 64000000\r\n");
    assert!(server
        .rr
        .wait_for_line("write response error", Duration::from_secs(20)));
    let mut next = Peer::connect(address);
    next.send(b"fine\r\n");
    assert_eq!(next.line(), "echo:fine\r\n");
}

#[test]
fn a_thousand_connections_at_once() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let server = TcpServer::start("", 4);
    let address = server.address("lines");
    let started = Instant::now();
    let mut peers: Vec<Peer> = (0..1000).map(|_| Peer::connect(address)).collect();
    for (index, peer) in peers.iter_mut().enumerate() {
        peer.send(format!("n{index}\r\n").as_bytes());
    }
    for (index, peer) in peers.iter_mut().enumerate() {
        assert_eq!(peer.line(), format!("echo:n{index}\r\n"));
    }
    let uuids: std::collections::HashSet<&str> = peers.iter().map(|p| p.uuid.as_str()).collect();
    assert_eq!(uuids.len(), 1000);
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_server_on_a_unix_socket() {
    let dir = scratch_dir();
    let socket = dir.join("tcp.sock");
    let yaml = format!(
        "version: '3'\nserver:\n  command: \"{}\"\ntcp:\n  servers:\n    local:\n      addr: unix://{}\n  pool:\n    num_workers: 1\nlogs:\n  level: info\n",
        worker_command("tcp.php"),
        socket.display()
    );
    let mut rr = RrServer::start(&yaml);
    assert!(rr.wait_for_line("tcp server listening", Duration::from_secs(10)));
    let stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(
        greeting.starts_with("hello ") && greeting.ends_with(" local \r\n"),
        "no remote address on a unix socket: {greeting:?}"
    );
    reader.get_mut().write_all(b"over unix\r\n").unwrap();
    let mut echo = String::new();
    reader.read_line(&mut echo).unwrap();
    assert_eq!(echo, "echo:over unix\r\n");
    drop(reader);
    assert!(rr.stop().success());
    assert!(!socket.exists(), "the socket file goes with the server");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn past_max_connections_a_new_connection_is_closed_and_logged() {
    let server = TcpServer::start("  max_connections: 2\n", 2);
    let address = server.address("lines");
    let mut first = Peer::connect(address);
    let _second = Peer::connect(address);
    // The third gets no greeting: closed at once, PHP never hears of it.
    let mut third = TcpStream::connect(address).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut greeting = Vec::new();
    assert!(
        third.read_to_end(&mut greeting).is_ok() && greeting.is_empty(),
        "the third was served: {:?}",
        String::from_utf8_lossy(&greeting)
    );
    assert!(server.rr.wait_for_line(
        "tcp.max_connections connections are open",
        Duration::from_secs(10)
    ));
    // Once one closes, there is room again.
    first.send(b"quit\r\n");
    assert_eq!(first.line(), "bye\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut byte = [0u8; 1];
        if matches!(stream.read(&mut byte), Ok(1)) {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a close");
    }
}

#[test]
fn an_idle_client_is_closed_after_read_timeout_and_php_gets_close() {
    let server = TcpServer::start("  read_timeout: 1s\n", 1);
    let mut talker = Peer::connect(server.address("lines"));
    talker.send(b"ping\r\n");
    assert_eq!(talker.line(), "echo:ping\r\n");
    // Then nothing: closed by the server (EOF, not our 20 s read timeout).
    let mut byte = [0u8; 1];
    let started = Instant::now();
    assert!(
        matches!(talker.reader.read(&mut byte), Ok(0)),
        "still open after {:?}",
        started.elapsed()
    );
    let events = server.wait_events(&talker.uuid, |e| {
        e.last().is_some_and(|(kind, _)| kind == "CLOSE")
    });
    assert_eq!(kinds(&events), ["CONNECTED", "DATA", "CLOSE"]);
    assert!(server.rr.wait_for_line(
        "nothing received for tcp.read_timeout",
        Duration::from_secs(10)
    ));
}
