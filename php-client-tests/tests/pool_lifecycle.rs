//! A worker's stop and start when the worker or the system misbehaves (a worker that stops
//! reading its input, a start that fails after the process was spawned), and the wait queue
//! when every worker is stuck.

use php_client_tests::harness::{php_pool_config, test_relay, PoolHarness};
use php_client_tests::http_client::{get, Response};
use php_client_tests::server::{free_port, run_rr, worker_command, RrServer};
use ringrunner::pool::{SupervisorConfig, STOP_GRACE};
use std::time::{Duration, Instant};

/// Room on top of the pool's own bounds on a loaded machine.
const MARGIN: Duration = Duration::from_secs(15);

/// An HTTP server of one `script` worker: `server_extra` lines under `server:`,
/// `pool_extra` under `http.pool:` (each indented), `top_extra` at the top level; logs at
/// info unless `top_extra` sets them.
fn one_worker_config(
    script: &str,
    server_extra: &str,
    pool_extra: &str,
    top_extra: &str,
) -> String {
    let logs = if top_extra.contains("logs:") {
        ""
    } else {
        "logs:\n  level: info\n"
    };
    format!(
        "version: \"3\"\nserver:\n  command: \"{}\"\n{server_extra}http:\n  address: 127.0.0.1:0\n  pool:\n    num_workers: 1\n{pool_extra}{top_extra}{logs}",
        worker_command(script)
    )
}

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
    let yaml = one_worker_config(
        "deaf.php",
        "",
        "    destroy_timeout: 60s\n",
        "endure:\n  grace_period: 60s\n",
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

/// `rr reset` with a worker that stopped reading: the old worker is stopped within the stop
/// grace and the reset returns once its replacement runs, not after `reset_timeout` (60 s
/// here, when the old generation is killed).
#[test]
fn rr_reset_of_a_worker_that_stopped_reading_ends_within_the_stop_grace() {
    let rpc = format!("rpc:\n  listen: tcp://127.0.0.1:{}\n", free_port());
    let server = RrServer::start(&one_worker_config(
        "deaf.php",
        "",
        "    reset_timeout: 60s\n",
        &rpc,
    ));
    assert!(
        server.wait_for_line("stdin full", MARGIN),
        "{}",
        server.output()
    );
    let asked = Instant::now();
    let output = run_rr(&server.dir, &["reset", "-s"]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        asked.elapsed() < STOP_GRACE + MARGIN,
        "rr reset took {:?}:\n{}",
        asked.elapsed(),
        server.output()
    );
    // The replacement filled its stdin too: a second "stdin full".
    assert!(server.wait_for(MARGIN, |lines| lines
        .iter()
        .filter(|line| line.contains("stdin full"))
        .count()
        >= 2));
}

/// The children of process `pid`, each with its state letter (`Z` for a zombie), from
/// `/proc/*/stat`.
fn children_of(pid: u32) -> Vec<(u32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // "PID (comm) S PPID ...": the command may hold spaces and parentheses.
            let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
            let state = fields.next()?.chars().next()?;
            let parent: u32 = fields.next()?.parse().ok()?;
            (parent == pid).then_some((child, state))
        })
        .collect()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Sets the open-files soft limit of `pid` (a child of this process: it inherited our
/// limits) to `soft`, or back to ours with None.
fn set_open_files_limit(pid: u32, soft: Option<u64>) {
    use rustix::process::{getrlimit, prlimit, Pid, Resource, Rlimit};
    let ours = getrlimit(Resource::Nofile);
    let limit = Rlimit {
        current: soft.or(ours.current),
        maximum: ours.maximum,
    };
    prlimit(Pid::from_raw(pid as i32), Resource::Nofile, limit).expect("prlimit on rr");
}

/// Lines of `lines` that contain `needle`.
fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|line| line.contains(needle)).count()
}

const STARTED: &str = "worker is allocated";
const FAILED: &str = "worker failed to boot";

/// rr's workers connect over a TCP relay (the start path with the most descriptors after
/// the spawn: the accepted connection, its clone, the relay's two). With rr's open-files
/// limit a few descriptors above what it holds, some starts fail after the spawn (at the
/// connection's or the relay's descriptors): each failed start's process is killed and
/// reaped, so rr keeps no stray worker, no zombie and no descriptor of it.
#[test]
fn a_start_that_fails_after_the_spawn_leaves_no_process_behind() {
    let yaml = one_worker_config(
        "http.php",
        "  relay: \"tcp://127.0.0.1:0\"\n",
        "    allocate_timeout: 5s\n",
        "logs:\n  level: debug\n",
    );
    let server = RrServer::start(&yaml);
    let rr = server.pid();
    let baseline_fds = open_fds(rr);
    for spare in 1..=10 {
        let workers = children_of(rr);
        assert_eq!(workers.len(), 1, "spare {spare}: {workers:?}");
        let output = server.output();
        let (started, failed) = (
            output.matches(STARTED).count(),
            output.matches(FAILED).count(),
        );
        // No descriptor to spare: the restart fails at the spawn and backs off (100 ms);
        // meanwhile the killed worker's descriptors are all closed.
        set_open_files_limit(rr, Some(0));
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(workers[0].0 as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        let backing_off = server.wait_for(MARGIN, |lines| count(lines, FAILED) > failed);
        assert!(
            backing_off,
            "spare {spare}: no failed start:\n{}",
            server.output()
        );
        // The next try has exactly `spare` descriptors.
        set_open_files_limit(rr, Some((open_fds(rr) + spare) as u64));
        let attempted = server.wait_for(MARGIN, |lines| {
            count(lines, STARTED) > started || count(lines, FAILED) > failed + 1
        });
        assert!(attempted, "spare {spare}: no start:\n{}", server.output());
        set_open_files_limit(rr, None);
        let back = server.wait_for(MARGIN, |lines| count(lines, STARTED) > started);
        assert!(back, "spare {spare}: no worker again:\n{}", server.output());
        let left = children_of(rr);
        assert!(
            left.len() == 1 && left.iter().all(|(_, state)| *state != 'Z'),
            "spare {spare}: children {left:?}:\n{}",
            server.output()
        );
    }
    assert!(
        open_fds(rr) <= baseline_fds + 2,
        "rr holds {} descriptors, {baseline_fds} at the start",
        open_fds(rr)
    );
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// The only worker is stuck in a slow request; request after request gives up after
/// `allocate_timeout` (rr's NoFreeWorkers answer, `No-Workers: true`), many more than
/// `max_queue_size`: none of them stays counted, so none is refused with QueueSize, and
/// once the worker is free the next request is served.
#[test]
fn requests_that_gave_up_waiting_leave_no_trace_in_the_queue() {
    let pool = "    allocate_timeout: 200ms\n    max_queue_size: 2\n";
    let server = RrServer::start(&one_worker_config("http.php", "", pool, ""));
    let address = server.http();
    let slow = std::thread::spawn(move || get(address, "/slow?ms=8000"));
    // The worker is busy once a request gets the no-workers answer.
    let deadline = Instant::now() + MARGIN;
    while header(&get(address, "/hello"), "No-Workers").is_none() {
        assert!(Instant::now() < deadline, "the worker never got busy");
    }
    for attempt in 0..10 {
        let response = get(address, "/hello");
        assert_eq!(response.status, 500, "attempt {attempt}");
        assert_eq!(
            header(&response, "No-Workers"),
            Some("true"),
            "attempt {attempt} was refused, not timed out:\n{}",
            server.output()
        );
    }
    assert_eq!(slow.join().unwrap().status, 200);
    assert_eq!(get(address, "/hello").status, 200);
}
