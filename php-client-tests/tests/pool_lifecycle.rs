//! A worker's stop and start when the worker or the system misbehaves: a worker that stops
//! reading its input, a start that fails after the process was spawned.

use php_client_tests::harness::{php_pool_config, test_relay, PoolHarness};
use php_client_tests::server::{worker_command, RrServer};
use ringrunner::pool::{SupervisorConfig, STOP_GRACE};
use std::time::{Duration, Instant};

/// Room on top of the pool's own bounds on a loaded machine.
const MARGIN: Duration = Duration::from_secs(15);

/// `deaf.php` fills its own stdin pipe after the handshake: the stop frame cannot be
/// written. The supervisor's `ttl` retires it; the stop must still end within the stop grace
/// (the write included) and the slot get a new worker, not hang on the write for good.
#[test]
fn a_worker_that_stops_reading_is_retired_within_the_stop_grace() {
    if test_relay().is_some() {
        return; // over a socket relay stdin is /dev/null: nothing to fill
    }
    let full = std::env::temp_dir().join(format!("rr-deaf-{}", std::process::id()));
    let _ = std::fs::remove_file(&full);
    let mut config = php_pool_config("deaf.php", 1);
    config.command.argv.push(full.display().to_string());
    config.supervisor = Some(SupervisorConfig {
        watch_tick: Duration::from_millis(50),
        ttl: Duration::from_millis(300),
        ..SupervisorConfig::default()
    });
    let harness = PoolHarness::start(config).unwrap();
    let first = harness.ready_pids();
    assert_eq!(first.len(), 1);
    assert!(
        harness.wait_until(MARGIN, |_| std::fs::read_to_string(&full)
            .is_ok_and(|pid| pid == first[0].to_string())),
        "the worker never filled its stdin"
    );
    let replaced = harness.wait_until(STOP_GRACE + MARGIN, |h| {
        let pids = h.ready_pids();
        !pids.is_empty() && pids != first
    });
    assert!(replaced, "the deaf worker {first:?} was never replaced");
    assert!(
        !std::path::Path::new(&format!("/proc/{}", first[0])).exists(),
        "the deaf worker {} is still there (or a zombie)",
        first[0]
    );
    let _ = std::fs::remove_file(&full);
}

/// SIGTERM with a worker that stopped reading: rr exits within the stop grace, not after
/// `destroy_timeout` or the shutdown's `grace_period` (both 60 s here).
#[test]
fn sigterm_stops_a_worker_that_stopped_reading_within_the_stop_grace() {
    let yaml = format!(
        "version: \"3\"\nserver:\n  command: \"{}\"\nhttp:\n  address: 127.0.0.1:0\n  pool:\n    num_workers: 1\n    destroy_timeout: 60s\nendure:\n  grace_period: 60s\nlogs:\n  level: info\n",
        worker_command("deaf.php")
    );
    let mut server = RrServer::start(&yaml);
    assert!(
        server.wait_for_line("stdin full", MARGIN),
        "{}",
        server.output()
    );
    let asked = Instant::now();
    server.signal(rustix::process::Signal::TERM);
    let status = server.wait_exit(STOP_GRACE + MARGIN);
    assert!(
        status.is_some(),
        "rr still runs {:?} after SIGTERM:\n{}",
        asked.elapsed(),
        server.output()
    );
}
