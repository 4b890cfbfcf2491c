//! The pool through real `php` worker processes, over pipes or, with
//! `RINGRUNNER_TEST_RELAY=tcp` / `unix`, over a socket relay (scripts/test runs all three).

use php_client_tests::harness::{php_pool_config, test_relay, PoolHarness};
use ringrunner::pool::{ExecError, ReplyFrame, ReplySink, Request, SpawnError, SupervisorConfig};
use ringrunner_protocol::Flags;
use std::sync::Arc;
use std::time::{Duration, Instant};

const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn echoes_from_every_shard() {
    let harness = PoolHarness::start(php_pool_config("behave.php", 2)).unwrap();
    for round in 0..100 {
        let body = format!("echo:round {round}");
        assert_eq!(
            harness.exec_on(round % 2, &body).unwrap(),
            format!("round {round}")
        );
    }
    assert_eq!(harness.ready_pids().len(), 2);
}

#[test]
fn soft_error_keeps_the_worker() {
    let harness = PoolHarness::start(php_pool_config("behave.php", 1)).unwrap();
    let pid = harness.exec("pid").unwrap();
    assert_eq!(
        harness.exec("error:boom"),
        Err(ExecError::SoftJob("boom".into()))
    );
    assert_eq!(harness.exec("pid").unwrap(), pid);
}

#[test]
fn crash_mid_request_fails_only_that_request_and_the_pool_refills() {
    let harness = PoolHarness::start(php_pool_config("behave.php", 2)).unwrap();
    let before = harness.ready_pids();
    let Err(ExecError::Network(_)) = harness.exec("crash") else {
        panic!("crash must fail")
    };
    assert!(
        harness.wait_until(EVENT_TIMEOUT, |h| h.ready_pids().len() == 2
            && h.ready_pids() != before)
    );
    for _ in 0..10 {
        assert_eq!(harness.exec("echo:x").unwrap(), "x");
    }
}

#[test]
fn worker_stop_request_reruns_the_request_on_another_worker() {
    let marker = std::env::temp_dir().join(format!("rr-stop-once-{}", std::process::id()));
    let _ = std::fs::remove_dir(&marker);
    let harness = PoolHarness::start(php_pool_config("behave.php", 2)).unwrap();
    let reply = harness
        .exec(&format!("stop_once:{}", marker.display()))
        .unwrap();
    assert!(reply.parse::<u32>().is_ok(), "{reply}");
    assert!(harness.wait_until(EVENT_TIMEOUT, |h| h.ready_pids().len() == 2));
    std::fs::remove_dir(&marker).unwrap();
}

#[test]
fn max_jobs_rotates_after_the_reply() {
    let mut config = php_pool_config("behave.php", 1);
    config.max_jobs = 2;
    let harness = PoolHarness::start(config).unwrap();
    let first = harness.exec("pid").unwrap();
    assert_eq!(harness.exec("pid").unwrap(), first);
    let third = harness.exec("pid").unwrap();
    assert_ne!(third, first);
    assert_eq!(harness.exec("pid").unwrap(), third);
}

#[test]
fn exec_ttl_kills_the_worker_on_time() {
    let mut config = php_pool_config("behave.php", 1);
    config.supervisor = Some(SupervisorConfig {
        exec_ttl: Duration::from_millis(300),
        ..SupervisorConfig::default()
    });
    let harness = PoolHarness::start(config).unwrap();
    let pid = harness.exec("pid").unwrap();
    let started = Instant::now();
    assert_eq!(harness.exec("sleep:5000"), Err(ExecError::ExecTtl));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(600),
        "{elapsed:?}"
    );
    assert_eq!(
        ExecError::ExecTtl.to_string(),
        "worker_exec_with_timeout: ExecTTL: context deadline exceeded"
    );
    let replacement = harness.exec("pid").unwrap();
    assert_ne!(replacement, pid);
}

#[test]
fn boot_failure_names_command_status_and_stderr() {
    let error = PoolHarness::start(php_pool_config("boot_fail.php", 2)).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, SpawnError::Handshake { .. }), "{text}");
    assert!(text.contains("boot_fail.php"), "{text}");
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains("Class \"App\\Kernel\" not found"), "{text}");
}

#[test]
fn missing_script_is_reported_with_php_s_message() {
    let error = PoolHarness::start(php_pool_config("no_such_worker.php", 1)).unwrap_err();
    // PHP prints its message on stdout: the relay itself on pipes, discarded on sockets.
    let expected = if test_relay().is_some() {
        "exited before connecting to the relay"
    } else {
        "Could not open input file"
    };
    assert!(error.to_string().contains(expected), "{error}");
}

#[test]
fn allocate_timeout_gives_rr_s_error() {
    let mut config = php_pool_config("behave.php", 1);
    // On sockets allocate_timeout also bounds a worker's connection at start (rr's rule):
    // leave PHP time to boot on a loaded machine.
    let timeout = Duration::from_millis(if test_relay().is_some() { 1000 } else { 200 });
    config.allocate_timeout = timeout;
    let harness = PoolHarness::start(config).unwrap();
    let busy = harness.exec_in_background(1, "sleep:2500");
    assert!(harness.wait_until(EVENT_TIMEOUT, |h| h.pool.idle_workers() == 0));
    let started = Instant::now();
    let error = harness.exec("echo:late").unwrap_err();
    assert_eq!(error, ExecError::NoFreeWorkers);
    assert_eq!(
        error.to_string(),
        "static_pool_exec: NoFreeWorkers:\n\tstatic_pool_exec"
    );
    assert!(started.elapsed() < timeout + Duration::from_millis(800));
    assert_eq!(busy.blocking_recv().unwrap().unwrap(), "slept");
}

#[test]
fn queue_limit_refuses_at_once() {
    let mut config = php_pool_config("behave.php", 1);
    config.max_queue_size = 1;
    let harness = PoolHarness::start(config).unwrap();
    let busy = harness.exec_in_background(1, "sleep:800");
    assert!(harness.wait_until(EVENT_TIMEOUT, |h| h.pool.idle_workers() == 0));
    assert_eq!(harness.exec("echo:x"), Err(ExecError::QueueFull));
    assert_eq!(busy.blocking_recv().unwrap().unwrap(), "slept");
    assert_eq!(harness.exec("echo:x").unwrap(), "x");
}

#[test]
fn waiters_get_workers_as_they_come_back() {
    let harness = PoolHarness::start(php_pool_config("behave.php", 2)).unwrap();
    let pending: Vec<_> = (0..20)
        .map(|i| harness.exec_in_background(i, &format!("sleep:{}", 10 + i % 3)))
        .collect();
    for reply in pending {
        assert_eq!(reply.blocking_recv().unwrap().unwrap(), "slept");
    }
}

#[test]
fn garbage_on_stdout_kills_and_replaces_the_worker() {
    if test_relay().is_some() {
        // Stdout is not the relay on sockets: it goes to /dev/null (socket_relays.rs).
        return;
    }
    let harness = PoolHarness::start(php_pool_config("behave.php", 1)).unwrap();
    let pid = harness.exec("pid").unwrap();
    let Err(ExecError::Network(reason)) = harness.exec("garbage") else {
        panic!("garbage must fail")
    };
    assert!(reason.contains("CRC"), "{reason}");
    let replacement = harness.exec("pid").unwrap();
    assert_ne!(replacement, pid);
}

#[test]
fn streamed_reply_is_gathered_with_pongs() {
    let harness = PoolHarness::start(php_pool_config("behave.php", 1)).unwrap();
    // 12 chunks: the PHP client pings on chunks 5 and 10 and waits for our PONG.
    assert_eq!(harness.exec("stream:12").unwrap(), "01234567891011");
    assert_eq!(harness.exec("echo:after").unwrap(), "after");
}

/// Takes `keep` frames of a reply, then reports its receiver gone.
struct HangUpAfter {
    keep: usize,
    frames: Vec<(Vec<u8>, bool)>,
}

impl ReplySink for HangUpAfter {
    async fn frame(&mut self, frame: ReplyFrame<'_>) -> bool {
        self.frames.push((frame.body.to_vec(), frame.last));
        self.frames.len() < self.keep
    }
}

#[test]
fn stream_cancelled_by_the_receiver_stops_the_worker_and_keeps_it() {
    let harness = PoolHarness::start(php_pool_config("behave.php", 1)).unwrap();
    let pid = harness.exec("pid").unwrap();
    let pool = harness.pool.clone();
    let frames = harness.shards.block_on(0, move |shard| async move {
        let mut sink = HangUpAfter {
            keep: 2,
            frames: Vec::new(),
        };
        let request = Request {
            codec: Flags::EMPTY,
            context: b"",
            body: b"stream:100000",
            lent: None,
        };
        pool.exec_streamed(&shard, request, &mut sink)
            .await
            .map(|()| sink.frames)
    });
    let frames = frames.unwrap();
    assert_eq!(
        frames.len(),
        2,
        "frames after the hang-up are not delivered"
    );
    assert_eq!(frames[0], (b"0".to_vec(), false));
    // The worker saw STOP, confirmed with an empty final frame and went back to the pool.
    assert_eq!(harness.exec("pid").unwrap(), pid);
    assert_eq!(harness.exec("stream:3").unwrap(), "012");
}

#[test]
fn debug_mode_starts_a_fresh_worker_for_every_request() {
    let mut config = php_pool_config("behave.php", 2);
    config.debug = true;
    let harness = PoolHarness::start(config).unwrap();
    // The boot check's workers are gone: nothing runs until a request asks.
    assert!(harness.wait_until(Duration::from_secs(10), |h| h.pool.workers().is_empty()));
    let pids: Vec<String> = (0..4).map(|_| harness.exec("pid").unwrap()).collect();
    let mut unique = pids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 4, "{pids:?}");
}

#[test]
fn empty_payload_is_refused() {
    let harness = PoolHarness::start(php_pool_config("behave.php", 1)).unwrap();
    assert_eq!(harness.exec(""), Err(ExecError::EmptyPayload));
}

#[test]
fn reset_replaces_every_worker() {
    let harness = PoolHarness::start(php_pool_config("behave.php", 3)).unwrap();
    let before = harness.ready_pids();
    let pool = harness.pool.clone();
    harness
        .shards
        .block_on(1, move |_| async move { pool.reset().await });
    let after = harness.ready_pids();
    assert_eq!(after.len(), 3);
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "{before:?} -> {after:?}"
    );
    assert_eq!(harness.exec("echo:x").unwrap(), "x");
}

#[test]
fn reset_under_load_replaces_every_worker_each_time() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut config = php_pool_config("behave.php", 2);
    config.reset_timeout = Duration::from_secs(30);
    let harness = Arc::new(PoolHarness::start(config).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    // Requests from both shards keep the two workers flipping between ready and working.
    let load: Vec<_> = (0..4)
        .map(|client| {
            let (harness, stop) = (harness.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut served = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(harness.exec_on(client % 2, "echo:x").unwrap(), "x");
                    served += 1;
                }
                served
            })
        })
        .collect();
    let pids = |harness: &PoolHarness| {
        let mut pids: Vec<u32> = harness.pool.workers().iter().map(|w| w.pid).collect();
        pids.sort_unstable();
        pids
    };
    for round in 0..15 {
        let before = pids(&harness);
        let pool = harness.pool.clone();
        let started = std::time::Instant::now();
        harness
            .shards
            .block_on(1, move |_| async move { pool.reset().await });
        // A worker the reset failed to retire is only killed at `reset_timeout`.
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "round {round}: {took:?}");
        let after = pids(&harness);
        assert!(
            after.iter().all(|pid| !before.contains(pid)),
            "round {round}: {before:?} -> {after:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        assert!(thread.join().unwrap() > 0);
    }
}

#[test]
fn destroy_stops_every_process_and_refuses_new_work() {
    let harness = PoolHarness::start(php_pool_config("behave.php", 3)).unwrap();
    let pids = harness.ready_pids();
    let pool = harness.pool.clone();
    harness
        .shards
        .block_on(0, move |_| async move { pool.destroy().await });
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still there"
        );
    }
    assert_eq!(harness.exec("echo:x"), Err(ExecError::Stopped));
}

#[test]
fn app_that_stops_booting_degrades_without_spinning_and_recovers() {
    let flag = std::env::temp_dir().join(format!("rr-boot-fail-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    let mut config = php_pool_config("boot_fail_if.php", 2);
    config
        .command
        .env
        .push(("BOOT_FAIL_FLAG".into(), flag.clone().into()));
    let harness = PoolHarness::start(config).unwrap();
    std::fs::write(&flag, "broken deploy").unwrap();
    let Err(ExecError::Network(_)) = harness.exec("crash") else {
        panic!()
    };
    assert!(harness.wait_until(EVENT_TIMEOUT, |h| h.pool.failing_workers() == 1));
    // The worker that is left keeps serving.
    for _ in 0..5 {
        assert_eq!(harness.exec("echo:still").unwrap(), "still");
    }
    std::fs::remove_file(&flag).unwrap();
    assert!(
        harness.wait_until(EVENT_TIMEOUT, |h| h.pool.failing_workers() == 0
            && h.ready_pids().len() == 2)
    );
}

fn supervised(workers: usize, supervisor: SupervisorConfig) -> PoolHarness {
    let mut config = php_pool_config("behave.php", workers);
    config.supervisor = Some(SupervisorConfig {
        watch_tick: Duration::from_millis(50),
        ..supervisor
    });
    PoolHarness::start(config).unwrap()
}

#[test]
fn ttl_retires_idle_workers_and_never_interrupts_a_request() {
    let harness = supervised(
        1,
        SupervisorConfig {
            ttl: Duration::from_millis(600),
            ..SupervisorConfig::default()
        },
    );
    let first = harness.exec("pid").unwrap();
    // Outlives the ttl: the request still completes, then the worker is replaced.
    assert_eq!(harness.exec("sleep:900").unwrap(), "slept");
    let second = harness.exec("pid").unwrap();
    assert_ne!(second, first);
    let second_pid: u32 = second.parse().unwrap();
    assert!(
        harness.wait_until(EVENT_TIMEOUT, |h| !h.ready_pids().contains(&second_pid)
            && h.ready_pids().len() == 1)
    );
}

#[test]
fn idle_ttl_retires_only_workers_that_served() {
    let harness = supervised(
        2,
        SupervisorConfig {
            idle_ttl: Duration::from_millis(300),
            ..SupervisorConfig::default()
        },
    );
    let pids = harness.ready_pids();
    let used: u32 = harness.exec("pid").unwrap().parse().unwrap();
    let unused = *pids.iter().find(|pid| **pid != used).unwrap();
    assert!(harness.wait_until(EVENT_TIMEOUT, |h| {
        let now = h.ready_pids();
        now.len() == 2 && !now.contains(&used)
    }));
    assert!(
        harness.ready_pids().contains(&unused),
        "a never-used worker must not idle-expire"
    );
}

#[test]
fn max_worker_memory_retires_a_leaking_worker() {
    let harness = supervised(
        1,
        SupervisorConfig {
            max_worker_memory_mib: 48,
            ..SupervisorConfig::default()
        },
    );
    let leaker: u32 = harness.exec("pid").unwrap().parse().unwrap();
    assert_eq!(harness.exec("leak:64").unwrap(), "1");
    assert!(harness.wait_until(EVENT_TIMEOUT, |h| {
        let now = h.ready_pids();
        now.len() == 1 && !now.contains(&leaker)
    }));
}

#[test]
fn workers_get_rr_environment_in_spec_order() {
    let mut config = php_pool_config("behave.php", 1);
    config.mode = Some("http".into());
    config.rpc_listen = Some("tcp://127.0.0.1:6001".into());
    // server.env cannot override RR_VERSION or RR_MODE, which come after it.
    config.command.env.push(("RR_MODE".into(), "user".into()));
    config
        .command
        .env
        .push(("APP_ENV".into(), "testing".into()));
    let relay = config.relay_dsn.clone();
    let harness = PoolHarness::start(config).unwrap();
    let exported = harness.exec("env:RR_RELAY").unwrap();
    if relay.ends_with(":0") {
        assert!(exported.starts_with("tcp://127.0.0.1:") && !exported.ends_with(":0"));
    } else {
        assert_eq!(exported, relay);
    }
    assert_eq!(harness.exec("env:RR_RPC").unwrap(), "tcp://127.0.0.1:6001");
    assert_eq!(harness.exec("env:RR_VERSION").unwrap(), "2025.1.15");
    assert_eq!(harness.exec("env:RR_MODE").unwrap(), "http");
    assert_eq!(harness.exec("env:APP_ENV").unwrap(), "testing");
}
