//! The I/O backends: where io_uring is denied (a seccomp filter like Docker's default
//! profile, installed by our `deny-io-uring` launcher) the server says so in one line and
//! serves on epoll; asked for io_uring there, it exits 1 with one line and no backtrace; by
//! default it runs on io_uring where that works. The rest of the suite runs on each backend
//! (`scripts/test` runs it again with `RINGRUNNER_IO=epoll`).

use php_client_tests::http_client::{get, request};
use php_client_tests::server::{http_config, Launch, RrServer};
use std::path::PathBuf;

const DENIED_LINE: &str =
    "io_uring unavailable (io_uring_setup: Operation not permitted (os error 1)): using epoll";

fn denied(backend: &str) -> Launch {
    Launch {
        wrapper: Some(PathBuf::from(env!("CARGO_BIN_EXE_deny-io-uring"))),
        env: vec![("RINGRUNNER_IO".into(), backend.into())],
    }
}

fn plain(backend: &str) -> Launch {
    Launch {
        wrapper: None,
        env: vec![("RINGRUNNER_IO".into(), backend.into())],
    }
}

/// The server's io_uring instances (each shard's ring is one descriptor).
fn io_uring_fds(server: &RrServer) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .expect("the server's fds")
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter(|target| target.to_string_lossy() == "anon_inode:[io_uring]")
        .count()
}

/// A 2 MiB body through the relay and a 3 MiB reply back, then small requests.
fn serves_big_and_small(server: &RrServer) {
    let body = vec![b'z'; 2 << 20];
    let mut raw = format!(
        "POST /len HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let reply = request(server.http(), &raw);
    assert_eq!(reply.status, 200);
    assert!(reply.text().starts_with("2097152 "), "{}", reply.text());
    let big = get(server.http(), "/big?kb=3072");
    assert_eq!(big.status, 200);
    assert_eq!(big.body.len(), 3 << 20);
    for _ in 0..20 {
        assert_eq!(get(server.http(), "/hello").text(), "Hello from PHP\n");
    }
}

#[test]
fn where_io_uring_is_denied_the_server_says_so_once_and_serves_on_epoll() {
    let server = RrServer::start_launched(&http_config("", ""), &[], &denied("auto"))
        .unwrap_or_else(|(status, output)| panic!("rr did not start ({status}):\n{output}"));
    serves_big_and_small(&server);
    let output = server.output();
    assert_eq!(output.matches(DENIED_LINE).count(), 1, "{output}");
    assert!(!output.contains("panicked"), "{output}");
    assert_eq!(io_uring_fds(&server), 0);
}

#[test]
fn asked_for_io_uring_where_it_is_denied_the_server_exits_with_one_line() {
    let (status, output) =
        RrServer::start_launched(&http_config("", ""), &[], &denied("io_uring")).unwrap_err();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains(
            "io_uring unavailable (io_uring_setup: Operation not permitted (os error 1)) \
             and RINGRUNNER_IO=io_uring asks for it"
        ),
        "{output}"
    );
    assert!(!output.contains("panicked"), "{output}");
    assert!(!output.contains("backtrace"), "{output}");
    assert!(output.lines().count() <= 3, "{output}");
}

#[test]
fn an_unknown_backend_is_refused_with_the_choices() {
    let (status, output) =
        RrServer::start_launched(&http_config("", ""), &[], &plain("kqueue")).unwrap_err();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("RINGRUNNER_IO=kqueue: not a backend (auto, io_uring, epoll)"),
        "{output}"
    );
}

#[test]
fn by_default_each_shard_has_a_ring_and_epoll_when_asked_has_none() {
    let server = RrServer::start_launched(&http_config("", ""), &[], &plain("auto"))
        .unwrap_or_else(|(status, output)| panic!("rr did not start ({status}):\n{output}"));
    if server.output().contains("io_uring unavailable") {
        eprintln!(
            "SKIPPED: io_uring is unavailable on this machine:\n{}",
            server.output()
        );
    } else {
        serves_big_and_small(&server);
        assert_eq!(
            io_uring_fds(&server),
            2,
            "one ring per shard (RINGRUNNER_SHARDS=2)"
        );
    }
    drop(server);
    let server = RrServer::start_launched(&http_config("", ""), &[], &plain("epoll"))
        .unwrap_or_else(|(status, output)| panic!("rr did not start ({status}):\n{output}"));
    serves_big_and_small(&server);
    assert_eq!(io_uring_fds(&server), 0);
    assert!(!server.output().contains("io_uring unavailable"));
}
