//! The amqp driver under pressure and through outages: a pipeline holds a bounded number of
//! deliveries whatever the ack mode and prefetch; a broker that goes away leaves the RPCs
//! answering and shutdown bounded; a reconnect runs again only the jobs in flight.

use super::rig::*;
use php_client_tests::jobs_log::{taken, wait_taken};
use php_client_tests::server::scratch_dir;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Counts every run of every job in the log: each of `ids` ran exactly once.
fn assert_each_ran_once(log: &std::path::Path, ids: &[String]) {
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for line in taken(log) {
        *per_id
            .entry(line["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "ran more than once: {twice:?}");
    let missing: Vec<_> = ids.iter().filter(|id| !per_id.contains_key(*id)).collect();
    assert!(missing.is_empty(), "never ran: {missing:?}");
    assert_eq!(per_id.len(), ids.len(), "only the jobs pushed ran");
}

/// `jobs.pipeline_size` bounds what a pipeline takes out of the broker, for auto-acked jobs
/// (acked on arrival, so `basic.qos` alone no longer limits them) and for a pipeline
/// declared with `prefetch: 0` (no qos limit at all): with the only worker held, the shared
/// queue fills, consuming stops, and the rest waits in the broker. Opened, every job runs
/// exactly once.
#[test]
fn a_pipeline_takes_no_more_than_pipeline_size_whatever_the_ack_mode_and_prefetch() {
    const PIPELINE_SIZE: u64 = 10;
    const JOBS: u64 = 1000;
    // Out of the broker's ready count at most: the jobs the pollers hold (num_workers + 2),
    // the shared queue, the one delivery a listener holds while it waits for room, and the
    // client's buffer of unacknowledged deliveries (prefetch 10; prefetch 0 becomes
    // pipeline_size).
    const OUT_MAX: u64 = 3 + PIPELINE_SIZE + 1 + 10;
    let _alone = alone();
    let Some(broker) = broker() else { return };
    let jobs = start_with_jobs_lines(
        &broker,
        1,
        &emails(""),
        "emails, declared",
        &format!("  pipeline_size: {PIPELINE_SIZE}\n"),
    );
    call(
        &jobs,
        &[
            "declare",
            &DECLARE.replace(r#""prefetch":"100""#, r#""prefetch":"0""#),
        ],
    )
    .unwrap();
    let gate = scratch_dir().join("gate");
    let gate = gate.to_str().unwrap();
    let count = JOBS.to_string();
    let mut ids = Vec::new();
    for (pipeline, prefix) in [("emails", "e-"), ("declared", "d-")] {
        call(
            &jobs,
            &[
                "many", pipeline, &count, "500", "hold", prefix, "0", "auto", gate,
            ],
        )
        .unwrap();
        ids.extend((0..JOBS).map(|i| format!("{prefix}{i}")));
    }
    wait_taken(&jobs.log, 1, Duration::from_secs(20));
    for queue in ["emails-q", "declared-q"] {
        let (ready, _unacked) = broker.queue_counts(queue).expect("the queue exists");
        assert!(
            JOBS - ready <= OUT_MAX,
            "{queue}: {} of {JOBS} jobs left the broker with pipeline_size {PIPELINE_SIZE}",
            JOBS - ready
        );
    }
    std::fs::write(gate, "open").unwrap();
    wait_taken(&jobs.log, ids.len(), Duration::from_secs(120));
    assert_each_ran_once(&jobs.log, &ids);
    for queue in ["emails-q", "declared-q"] {
        assert_eq!(broker.queue_counts(queue), Some((0, 0)), "{queue}");
    }
}

/// `call`, if it answers within `limit` (the PHP client left behind is ended by rr's end).
fn call_within(jobs: &Jobs, args: &[&str], limit: Duration) -> Option<Result<Value, String>> {
    let dsn = jobs.dsn.clone();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let (answer, answered) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _ = answer.send(php_client_tests::jobs_log::call(&dsn, &args));
    });
    answered.recv_timeout(limit).ok()
}

/// rr's log lines when a pipeline's connection is lost, and when it is back.
const REDIALING: &str = "pipeline connection was closed, redialing";
const RESTORED: &str = "connection was successfully restored";

/// Pushes a job `ack` with `id` to `pipeline` and waits until a worker took it.
fn push_and_run(jobs: &Jobs, pipeline: &str, id: &str) {
    call(jobs, &["push", pipeline, "ack", id, "x"]).unwrap();
    wait_runs(&jobs.log, id, 1);
}

/// Waits for rr's log `line`, or fails with rr's output.
fn expect_line(jobs: &Jobs, line: &str, limit: Duration) {
    assert!(
        jobs.server.wait_for_line(line, limit),
        "no {line:?} within {limit:?}:\n{}",
        jobs.server.output()
    );
}

/// With the broker stopped the pipeline redials, and meanwhile Stat answers (the amqp
/// pipeline not ready, a memory one untouched), Pause and Resume answer, the memory
/// pipeline runs jobs; the broker back, the pipeline is ready and consumes again. A SIGTERM
/// while a dial hangs (an address that takes the TCP connection and never answers) ends rr.
#[test]
fn with_the_broker_down_the_rpcs_answer_and_a_sigterm_ends_rr() {
    // Generous: a PHP client's start on a loaded machine; a frozen control plane never answers.
    const ANSWER_WITHIN: Duration = Duration::from_secs(10);
    let Some(mut broker) = broker() else { return };
    let pipelines = format!(
        "{}    local:\n      driver: memory\n      config:\n        priority: 1\n",
        emails("        durable: true\n")
    );
    let mut jobs = start(&broker, 1, &pipelines, "emails, local");
    push_and_run(&jobs, "emails", "e1");
    broker.stop();
    expect_line(&jobs, REDIALING, Duration::from_secs(30));
    let stats = call_within(&jobs, &["stat"], ANSWER_WITHIN)
        .expect("Stat answers while the broker is down")
        .unwrap();
    assert_eq!(stats["emails"]["ready"], json!(false), "{stats}");
    assert_eq!(stats["local"]["ready"], json!(true), "{stats}");
    for method in ["pause", "resume"] {
        call_within(&jobs, &[method, "emails"], ANSWER_WITHIN)
            .unwrap_or_else(|| panic!("{method} answers while the broker is down"))
            .unwrap();
    }
    push_and_run(&jobs, "local", "m1");
    broker.restart();
    expect_line(&jobs, RESTORED, Duration::from_secs(60));
    wait_until("emails is ready again", Duration::from_secs(30), || {
        stat(&jobs, "emails")["ready"] == json!(true)
    });
    push_and_run(&jobs, "emails", "e2");
    // The broker gone again, its port taken by a listener that never answers: rr's next
    // dial hangs in the AMQP handshake.
    let port = broker.port;
    broker.stop();
    let silent = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the broker's port");
    let (dialed, dial) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = dialed.send(silent.accept().map(|(stream, _)| (stream, silent)));
    });
    let _held = dial
        .recv_timeout(Duration::from_secs(60))
        .expect("rr redials")
        .expect("accept");
    jobs.server.signal(rustix::process::Signal::TERM);
    assert!(
        jobs.server.wait_exit(Duration::from_secs(20)).is_some(),
        "rr did not end while a dial hung:\n{}",
        jobs.server.output()
    );
}
