//! `tcp://` and `unix://` relays through real `php` workers (spec relay-protocol §7.3, §8.2):
//! the pool listens, workers connect and are matched by the pid of their handshake.

use php_client_tests::harness::{php_pool_config, PoolHarness};
use php_client_tests::server::scratch_dir;
use ringrunner::pool::{ExecError, PoolConfig, SpawnError};
use ringrunner::worker::socket_relay::RelayAddress;
use std::io::{Read, Write};
use std::time::Duration;

const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

fn over(mut config: PoolConfig, dsn: &str) -> PoolConfig {
    config.relay = RelayAddress::parse(dsn).unwrap();
    config.relay_dsn = dsn.into();
    config
}

/// Each relay kind, with a fresh unix socket path.
fn relays() -> Vec<(String, Option<std::path::PathBuf>)> {
    let dir = scratch_dir();
    vec![
        ("tcp://127.0.0.1:0".into(), None),
        (
            format!("unix://{}", dir.join("rr.sock").display()),
            Some(dir),
        ),
    ]
}

#[test]
fn workers_connect_handshake_and_serve_from_every_shard() {
    for (dsn, dir) in relays() {
        let harness = PoolHarness::start(over(php_pool_config("behave.php", 2), &dsn)).unwrap();
        for round in 0..50 {
            let body = format!("echo:{dsn} {round}");
            assert_eq!(
                harness.exec_on(round % 2, &body).unwrap(),
                format!("{dsn} {round}")
            );
        }
        let pids = harness.ready_pids();
        assert_eq!(pids.len(), 2, "{dsn}");
        for pid in pids {
            // Stdout is not the relay: it goes nowhere.
            let stdout = std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap();
            assert_eq!(stdout, std::path::Path::new("/dev/null"), "{dsn}");
        }
        let relay_env = harness.exec("env:RR_RELAY").unwrap();
        if dsn.starts_with("tcp://") {
            assert!(relay_env.starts_with("tcp://127.0.0.1:") && !relay_env.ends_with(":0"));
        } else {
            assert_eq!(relay_env, dsn);
        }
        drop(harness);
        if let Some(dir) = dir {
            assert!(
                !dir.join("rr.sock").exists(),
                "the socket file outlived the pool"
            );
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}

#[test]
fn a_crashed_worker_is_replaced_by_one_that_connects_again() {
    for (dsn, dir) in relays() {
        let harness = PoolHarness::start(over(php_pool_config("behave.php", 2), &dsn)).unwrap();
        let before = harness.ready_pids();
        let Err(ExecError::Network(_)) = harness.exec("crash") else {
            panic!("crash must fail on {dsn}")
        };
        assert!(
            harness.wait_until(EVENT_TIMEOUT, |h| h.ready_pids().len() == 2
                && h.ready_pids() != before)
        );
        for _ in 0..10 {
            assert_eq!(harness.exec("echo:x").unwrap(), "x", "{dsn}");
        }
        drop(harness);
        if let Some(dir) = dir {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}

#[test]
fn strangers_on_the_relay_are_closed_and_accepting_goes_on() {
    let mut config = over(php_pool_config("behave.php", 1), "tcp://127.0.0.1:0");
    config.max_jobs = 1;
    let harness = PoolHarness::start(config).unwrap();
    let dsn = harness.exec("env:RR_RELAY").unwrap();
    let address = dsn.trim_start_matches("tcp://").to_owned();
    // Garbage instead of a handshake reply: closed.
    let mut stranger = std::net::TcpStream::connect(&address).unwrap();
    stranger.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    stranger.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    let mut seen = Vec::new();
    let _ = stranger.read_to_end(&mut seen);
    assert!(seen.len() >= 12, "the pid request comes first: {seen:?}");
    // A well-formed handshake from a pid nobody spawned: kept aside, never used.
    let mut impostor = std::net::TcpStream::connect(&address).unwrap();
    let mut request = [0u8; 64];
    let _ = impostor.read(&mut request).unwrap();
    let mut reply = Vec::new();
    ringrunner_protocol::payload::encode_pid_reply(999_999, &mut reply);
    impostor.write_all(&reply).unwrap();
    // Workers keep being replaced (max_jobs 1) and connect through the same listener.
    for round in 0..5 {
        assert_eq!(
            harness.exec(&format!("echo:{round}")).unwrap(),
            round.to_string()
        );
    }
}

#[test]
fn a_worker_that_exits_before_connecting_fails_the_start_clearly() {
    let mut config = over(php_pool_config("boot_fail.php", 1), "tcp://127.0.0.1:0");
    config.allocate_timeout = Duration::from_secs(10);
    let error = PoolHarness::start(config).unwrap_err();
    let SpawnError::Handshake { reason, .. } = &error else {
        panic!("{error}")
    };
    assert!(
        reason.contains("exited before connecting to the relay"),
        "{error}"
    );
}

#[test]
fn a_worker_that_never_connects_times_out() {
    // A pipes-only script: it never reads RR_RELAY, so it never connects.
    let dir = scratch_dir();
    let script = dir.join("silent.php");
    std::fs::write(&script, "<?php sleep(30);\n").unwrap();
    let mut config = over(php_pool_config("behave.php", 1), "tcp://127.0.0.1:0");
    config.command.argv = vec![php_client_tests::php_binary(), script.display().to_string()];
    config.allocate_timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let error = PoolHarness::start(config).unwrap_err();
    assert!(matches!(error, SpawnError::Timeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn rr_serve_over_tcp_and_unix_relays() {
    let dir = scratch_dir();
    for dsn in [
        "tcp://127.0.0.1:0".to_owned(),
        format!("unix://{}", dir.join("http.sock").display()),
    ] {
        let yaml = php_client_tests::server::http_config("", "");
        let server = php_client_tests::server::RrServer::start_with(
            &yaml,
            &["-o", &format!("server.relay={dsn}")],
        )
        .unwrap_or_else(|(status, output)| panic!("{dsn}: {status}: {output}"));
        for _ in 0..20 {
            let response = php_client_tests::http_client::get(server.http(), "/hello");
            assert_eq!(response.status, 200, "{dsn}");
            assert_eq!(response.text(), "Hello from PHP\n");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A field of `/proc/PID/status` (its first number: a count, or KiB).
fn proc_status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// `rr serve` over a tcp relay on a port of its own, each worker serving one request.
fn serve_over_tcp_relay() -> (php_client_tests::server::RrServer, String) {
    let relay = format!("127.0.0.1:{}", php_client_tests::server::free_port());
    let yaml = php_client_tests::server::http_config("", "    max_jobs: 1\n");
    let server = php_client_tests::server::RrServer::start_with(
        &yaml,
        &["-o", &format!("server.relay=tcp://{relay}")],
    )
    .unwrap_or_else(|(status, output)| panic!("{status}: {output}"));
    (server, relay)
}

/// Each GET needs a fresh worker (max_jobs 1), which connects through the relay.
fn assert_fresh_workers_serve(server: &php_client_tests::server::RrServer) {
    for _ in 0..4 {
        let response = php_client_tests::http_client::get(server.http(), "/hello");
        assert_eq!(response.status, 200, "{}", server.output());
    }
}

#[test]
fn a_flood_of_silent_relay_connections_is_bounded_and_workers_still_start() {
    let (server, relay) = serve_over_tcp_relay();
    let pid = server.pid();
    assert_fresh_workers_serve(&server);
    let threads_before = proc_status_field(pid, "Threads:");
    let fds_before = open_fds(pid);
    let mut strangers = Vec::new();
    for _ in 0..200 {
        let stranger = std::net::TcpStream::connect(&relay).unwrap();
        stranger.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
        strangers.push(stranger);
    }
    // rr has taken each one once it sent its pid request or closed it (past the cap).
    for stranger in &mut strangers {
        let mut request = [0u8; 64];
        assert!(stranger.read(&mut request).is_ok(), "rr never took it");
    }
    // Margins for what a loaded machine varies (worker restarts, runtime threads); the flood
    // is 200 connections.
    let threads = proc_status_field(pid, "Threads:");
    assert!(
        threads <= threads_before + 16,
        "{threads} threads, {threads_before} before the flood"
    );
    assert_fresh_workers_serve(&server);
    // allocate_timeout (10 s) later every stranger is closed: descriptors are back.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while open_fds(pid) > fds_before + 16 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} descriptors, {fds_before} before the flood",
            open_fds(pid)
        );
        std::thread::park_timeout(Duration::from_millis(100));
    }
    assert!(server.wait_for_line("did not finish its handshake", EVENT_TIMEOUT));
    assert_fresh_workers_serve(&server);
}

#[test]
fn a_handshake_reply_announcing_a_huge_frame_is_refused_before_it_is_buffered() {
    let (server, relay) = serve_over_tcp_relay();
    let pid = server.pid();
    let peak_before_kib = proc_status_field(pid, "VmHWM:");
    let mut peer = std::net::TcpStream::connect(&relay).unwrap();
    peer.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    peer.set_write_timeout(Some(EVENT_TIMEOUT)).unwrap();
    let mut request = [0u8; 64];
    assert!(peer.read(&mut request).unwrap() >= 12);
    // A control frame header (version 1, 3 words) announcing 200 MiB, then 64 MiB of it.
    let mut header = vec![0x13, 0x01];
    header.extend_from_slice(&(200u32 << 20).to_le_bytes());
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    header.extend_from_slice(&[0, 0]);
    let sent = peer
        .write_all(&header)
        .and_then(|()| peer.write_all(&vec![0u8; 64 << 20]));
    assert!(sent.is_err(), "rr took 64 MiB of a handshake reply");
    let peak_kib = proc_status_field(pid, "VmHWM:");
    assert!(
        peak_kib < peak_before_kib + 16 * 1024,
        "peak RSS {peak_kib} KiB, {peak_before_kib} KiB before"
    );
    assert!(server.wait_for_line("failed its handshake", EVENT_TIMEOUT));
    assert_fresh_workers_serve(&server);
}

#[test]
fn a_trickled_handshake_reply_is_cut_off_at_the_deadline_for_the_whole_handshake() {
    let (server, relay) = serve_over_tcp_relay();
    let mut peer = std::net::TcpStream::connect(&relay).unwrap();
    peer.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    let mut request = [0u8; 64];
    assert!(peer.read(&mut request).unwrap() >= 12);
    let mut reply = Vec::new();
    ringrunner_protocol::payload::encode_pid_reply(999_999, &mut reply);
    // One byte every 500 ms: each read comes well within allocate_timeout (10 s) of the
    // last, the whole reply (26 bytes, 13 s) does not. The pause shapes the input; the
    // close below is the event checked.
    let started = std::time::Instant::now();
    for byte in &reply {
        if peer.write_all(std::slice::from_ref(byte)).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = [0u8; 1];
    let end = peer.read(&mut rest);
    assert!(
        matches!(end, Ok(0)) || end.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "a trickled handshake was kept open {:?} after it began",
        started.elapsed()
    );
    assert!(server.wait_for_line("did not finish its handshake", EVENT_TIMEOUT));
}
