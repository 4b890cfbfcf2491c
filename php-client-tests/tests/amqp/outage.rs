//! The amqp driver under pressure and through outages: a pipeline holds a bounded number of
//! deliveries whatever the ack mode and prefetch; a broker that goes away leaves the RPCs
//! answering and shutdown bounded; a reconnect runs again only the jobs in flight.

use super::rig::*;
use php_client_tests::jobs_log::{taken, wait_taken};
use php_client_tests::server::scratch_dir;
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
                "many", pipeline, &count, "500", "hold", prefix, "auto", gate,
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
