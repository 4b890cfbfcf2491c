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
