//! The `jobs` plugin's amqp driver through the real binary, a real RabbitMQ node (Debian's
//! `rabbitmq-server`, one private node per test) and real PHP consumers: pushed over RPC and
//! consumed once, nack and requeue with delays through the broker's dead-letter queues, a
//! worker or the whole server killed mid-job (the job comes back), the broker restarted
//! mid-run (consumption resumes, no acknowledged job lost), 10,000 jobs through 4 consumers
//! exactly once, declare/pause/resume/destroy over RPC, and bad input. Each test skips,
//! visibly, only when RabbitMQ is not installed.

#[path = "amqp/outage.rs"]
mod outage;
#[path = "amqp/rig.rs"]
mod rig;

use php_client_tests::jobs_log::{now, taken, wait_taken};
use php_client_tests::rabbitmq::MAX_MESSAGE_BYTES;
use php_client_tests::server::{free_port, scratch_dir, worker_command, RrServer};
use rig::*;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn a_pushed_job_is_consumed_once_with_rr_headers_and_acknowledged() {
    let Some(broker) = broker() else { return };
    let jobs = start(&broker, 2, &emails("        durable: true\n"), "emails");
    assert_eq!(
        call(
            &jobs,
            &[
                "push",
                "emails",
                "ack",
                "a1",
                "{\"to\":\"ann\"}",
                "0",
                "0",
                "{\"attempts\":[\"1\"]}"
            ]
        ),
        Ok(json!(true))
    );
    let lines = wait_taken(&jobs.log, 1, Duration::from_secs(5));
    let job = &lines[0];
    assert_eq!(
        (job["id"].clone(), job["job"].clone()),
        (json!("a1"), json!("ack"))
    );
    assert_eq!(
        (job["driver"].clone(), job["queue"].clone()),
        (json!("amqp"), json!("emails-q"))
    );
    assert_eq!(job["pipeline"], "emails");
    assert_eq!(job["payload"], "{\"to\":\"ann\"}");
    assert_eq!(
        job["headers"]["attempts"],
        json!(["1"]),
        "user headers travel in rr_headers"
    );
    assert_eq!(job["headers"]["rr_id"], json!(["a1"]));
    assert_eq!(
        job["headers"]["rr_priority"],
        json!(["10"]),
        "0 takes the pipeline's priority"
    );
    // The worker's ack reaches the broker: nothing ready, nothing unacknowledged.
    wait_until(
        "the ack reached the broker",
        Duration::from_secs(10),
        || broker.queue_counts("emails-q") == Some((0, 0)),
    );
    let emails = stat(&jobs, "emails");
    assert_eq!(
        (
            emails["driver"].clone(),
            emails["queue"].clone(),
            emails["ready"].clone(),
            emails["active"].clone()
        ),
        (json!("amqp"), json!("emails-q"), json!(true), json!(0))
    );
    assert_eq!(taken(&jobs.log).len(), 1, "consumed once");
    assert_eq!(call(&jobs, &["list"]).unwrap(), json!(["emails"]));
}

#[test]
fn nack_requeue_and_delays_go_through_the_broker() {
    let _alone = alone();
    let Some(broker) = broker() else { return };
    let jobs = start(&broker, 2, &emails("        durable: true\n"), "emails");
    // Requeue with headers: a new message with the merged headers.
    call(&jobs, &["push", "emails", "retry", "r1", "x"]).unwrap();
    wait_runs(&jobs.log, "r1", 2);
    let second = taken(&jobs.log)
        .into_iter()
        .filter(|l| l["id"] == "r1")
        .nth(1)
        .unwrap();
    assert_eq!(
        second["headers"]["attempt"],
        json!(["2"]),
        "the requeue's headers reach the second run"
    );
    // A nack with requeue and a 1 s delay goes through a delay queue: back after the delay,
    // within 100 ms of it.
    call(&jobs, &["push", "emails", "later-once", "l1", "x"]).unwrap();
    let times = wait_runs(&jobs.log, "l1", 2);
    let gap = times[1] - times[0];
    // A delayed push: not before its delay, counted as delayed until it is acknowledged.
    let pushed = now();
    call(&jobs, &["push", "emails", "ack", "d1", "x", "1"]).unwrap();
    assert_eq!(stat(&jobs, "emails")["delayed"], json!(1));
    let waited = wait_runs(&jobs.log, "d1", 1)[0] - pushed;
    // Never early; late by under 100 ms (RabbitMQ's expiry timer on a loaded two-core
    // machine has been seen 209 ms late once: the better of the two is held to 100 ms, the
    // worse to 500 ms).
    for (what, took) in [("redelivered", gap), ("a delayed push ran", waited)] {
        assert!((1.0..1.5).contains(&took), "{what} {took:.3} s later");
    }
    assert!(
        gap.min(waited) < 1.1,
        "delays overshot by {gap:.3} and {waited:.3} s"
    );
    let delayed_run = taken(&jobs.log)
        .into_iter()
        .find(|l| l["id"] == "d1")
        .unwrap();
    assert_eq!(
        delayed_run["headers"]["reason"],
        json!(["expired"]),
        "x-death reaches the worker"
    );
    wait_until("the delayed count drops", Duration::from_secs(5), || {
        stat(&jobs, "emails")["delayed"] == json!(0)
    });
    // A nack with requeue and no delay: the broker redelivers the same message.
    call(&jobs, &["push", "emails", "nack-requeue", "n1", "x"]).unwrap();
    wait_runs(&jobs.log, "n1", 2);
    // A plain nack drops it; a reply that is not the protocol's JSON is acknowledged.
    call(&jobs, &["push", "emails", "nack", "n2", "x"]).unwrap();
    call(&jobs, &["push", "emails", "garbage", "g1", "x"]).unwrap();
    wait_runs(&jobs.log, "g1", 1);
    wait_runs(&jobs.log, "n2", 1);
    wait_until("the queue empties", Duration::from_secs(10), || {
        broker.queue_counts("emails-q") == Some((0, 0))
    });
    assert_eq!(
        runs(&jobs.log, "n2").len(),
        1,
        "a nack without requeue is not redelivered"
    );
    assert!(jobs.server.output().contains("response handler error"));
}

#[test]
fn a_worker_or_the_whole_server_killed_mid_job_gives_the_job_back() {
    let Some(broker) = broker() else { return };
    let pipeline = emails("        durable: true\n        requeue_on_fail: true\n");
    let jobs = start(&broker, 1, &pipeline, "emails");
    // The worker dies mid-job: nacked with requeue (requeue_on_fail), run again.
    call(&jobs, &["push", "emails", "crash-once", "c1", "x"]).unwrap();
    wait_runs(&jobs.log, "c1", 2);
    // The whole server is killed mid-job: the broker takes the unacknowledged job back and
    // the next server runs it.
    let gate = scratch_dir().join("gate");
    call(
        &jobs,
        &["push", "emails", "hold", "h1", gate.to_str().unwrap()],
    )
    .unwrap();
    wait_runs(&jobs.log, "h1", 1);
    let Jobs {
        mut server,
        dsn,
        log,
    } = jobs;
    server.signal(rustix::process::Signal::KILL);
    server
        .wait_exit(Duration::from_secs(10))
        .expect("rr exits on SIGKILL");
    wait_until(
        "the broker takes the job back",
        Duration::from_secs(10),
        || broker.queue_counts("emails-q") == Some((1, 0)),
    );
    std::fs::write(&gate, "open").unwrap();
    let yaml = config(&broker, 1, &pipeline, "emails", &log, &dsn);
    let mut again = RrServer::start_with(&yaml, &[]).unwrap_or_else(|(s, o)| panic!("{s}\n{o}"));
    wait_runs(&log, "h1", 2);
    wait_until("the job is acknowledged", Duration::from_secs(10), || {
        broker.queue_counts("emails-q") == Some((0, 0))
    });
    // A graceful stop mid-backlog: the job in hand finishes and is acked, what was
    // prefetched goes back to the broker; nothing is lost, nothing is left unacknowledged.
    let before = taken(&log).len();
    php_client_tests::jobs_log::call(&dsn, &["many", "emails", "50", "50", "slow", "s-"]).unwrap();
    wait_until("a slow job taken", Duration::from_secs(10), || {
        taken(&log).len() > before
    });
    assert!(again.stop().success());
    let ran = taken(&log).len() - before;
    let (ready, unacked) = broker.queue_counts("emails-q").expect("the queue stays");
    assert_eq!(unacked, 0);
    assert_eq!(
        ran as u64 + ready,
        50,
        "{ran} ran, {ready} back in the queue"
    );
}

#[test]
fn the_broker_restarted_mid_run_loses_no_acknowledged_job() {
    let _alone = alone();
    let Some(mut broker) = broker() else { return };
    let jobs = start(
        &broker,
        2,
        &emails("        durable: true\n        prefetch: 20\n"),
        "emails",
    );
    call(&jobs, &["many", "emails", "600", "100", "slow", "before-"]).unwrap();
    wait_until("consumption under way", Duration::from_secs(20), || {
        taken(&jobs.log).len() >= 100
    });
    broker.restart();
    assert!(
        jobs.server.wait_for_line(
            "connection was successfully restored",
            Duration::from_secs(60)
        ),
        "no redial:\n{}",
        jobs.server.output()
    );
    assert!(jobs
        .server
        .output()
        .contains("pipeline connection was closed, redialing"));
    call(&jobs, &["many", "emails", "200", "100", "slow", "after-"]).unwrap();
    let expected: Vec<String> = (0..600)
        .map(|i| format!("before-{i}"))
        .chain((0..200).map(|i| format!("after-{i}")))
        .collect();
    wait_until(
        "every job pushed was consumed",
        Duration::from_secs(60),
        || {
            let seen: std::collections::HashSet<String> = taken(&jobs.log)
                .iter()
                .map(|line| line["id"].as_str().unwrap().to_owned())
                .collect();
            expected.iter().all(|id| seen.contains(id))
        },
    );
    wait_until("the queue empties", Duration::from_secs(20), || {
        broker.queue_counts("emails-q") == Some((0, 0))
    });
    // At least once: only the jobs in flight at the restart may run twice: those the
    // pollers held (num_workers + 2) and those whose ack was on its way when the broker
    // went (0 to 2 seen at this rate; up to 8 allowed on a loaded machine). The prefetched
    // ones that had not started (20) are dropped with the old connection, not run and then
    // redelivered (before: 20 ran twice).
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for line in taken(&jobs.log) {
        *per_id
            .entry(line["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let twice: Vec<_> = per_id.iter().filter(|(_, runs)| **runs > 1).collect();
    assert!(twice.len() <= 2 + 2 + 8, "ran twice: {twice:?}");
    assert!(per_id.values().all(|runs| *runs <= 2), "{per_id:?}");
}

#[test]
fn ten_thousand_jobs_through_four_consumers_exactly_once() {
    let _alone = alone();
    let Some(broker) = broker() else { return };
    let jobs = start(&broker, 4, &emails("        prefetch: 100\n"), "emails");
    call(&jobs, &["many", "emails", "10000", "500"]).unwrap();
    let lines = wait_taken(&jobs.log, 10_000, Duration::from_secs(120));
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for line in &lines {
        *per_id.entry(line["id"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 10_000);
    assert!(per_id.values().all(|n| *n == 1), "a job ran twice");
    let consumers: std::collections::HashSet<i64> =
        lines.iter().map(|l| l["pid"].as_i64().unwrap()).collect();
    assert_eq!(consumers.len(), 4, "all four consumers took jobs");
    wait_until("the queue empties", Duration::from_secs(10), || {
        broker.queue_counts("emails-q") == Some((0, 0))
    });
}

#[test]
fn declare_pause_resume_and_destroy_over_rpc() {
    let Some(broker) = broker() else { return };
    let jobs = start(&broker, 1, &emails(""), "emails");
    call(&jobs, &["declare", DECLARE]).unwrap();
    let mut names = call(&jobs, &["list"]).unwrap();
    names.as_array_mut().unwrap().sort_by_key(|n| n.to_string());
    assert_eq!(names, json!(["declared", "emails"]));
    assert_eq!(
        call(&jobs, &["declare", DECLARE]),
        Err("pipeline already exists, name: declared, driver: amqp".into())
    );
    // Declared, not consuming: its queue does not exist yet, and rr's Stat says so.
    let missing = call(&jobs, &["stat"]).unwrap_err();
    assert!(
        missing.contains("NOT_FOUND - no queue 'declared-q'"),
        "{missing}"
    );
    call(&jobs, &["resume", "declared"]).unwrap();
    call(&jobs, &["push", "declared", "ack", "x1", "x"]).unwrap();
    wait_runs(&jobs.log, "x1", 1);
    // Paused: a push waits in the broker, a delayed one is counted (rr's own expectation).
    call(&jobs, &["pause", "declared"]).unwrap();
    assert_eq!(
        call(&jobs, &["pause", "declared"]),
        Err("no active listeners, nothing to pause".into())
    );
    call(&jobs, &["push", "declared", "ack", "x2", "x"]).unwrap();
    call(&jobs, &["push", "declared", "ack", "x3", "x", "5"]).unwrap();
    let declared = stat(&jobs, "declared");
    assert_eq!(
        (
            declared["active"].clone(),
            declared["delayed"].clone(),
            declared["ready"].clone(),
            declared["priority"].clone()
        ),
        (json!(1), json!(1), json!(false), json!(3))
    );
    assert!(
        runs(&jobs.log, "x2").is_empty(),
        "a paused pipeline does not consume"
    );
    call(&jobs, &["resume", "declared"]).unwrap();
    assert_eq!(
        call(&jobs, &["resume", "declared"]),
        Err("amqp listener is already in the active state".into())
    );
    wait_runs(&jobs.log, "x2", 1);
    assert_eq!(
        call(&jobs, &["destroy", "declared"]).unwrap(),
        json!(["declared"])
    );
    assert_eq!(call(&jobs, &["list"]).unwrap(), json!(["emails"]));
    assert_eq!(
        broker.queue_counts("declared-q"),
        None,
        "delete_queue_on_stop"
    );
    // The other pipeline is untouched.
    call(&jobs, &["push", "emails", "ack", "e1", "x"]).unwrap();
    wait_runs(&jobs.log, "e1", 1);
}

#[test]
fn bad_input_gets_clear_errors_and_spares_the_other_pipelines() {
    let Some(broker) = broker() else { return };
    let pipelines = format!(
        "{}    push-only:\n      driver: amqp\n      config:\n        exchange: rr-exchange\n        routing_key: emails\n    no-key:\n      driver: amqp\n      config:\n        queue: no-key-q\n",
        emails("")
    );
    let jobs = start(&broker, 1, &pipelines, "emails");
    assert_eq!(
        call(&jobs, &["push", "nope", "ack", "a", "x"]),
        Err("no such pipeline, requested: nope".into())
    );
    assert_eq!(
        call(&jobs, &["resume", "push-only"]),
        Err("empty queue name, consider adding the queue name to the AMQP configuration".into())
    );
    assert_eq!(
        call(&jobs, &["push", "no-key", "ack", "a", "x"]),
        Err(
            "empty routing key, consider adding the routing key name to the AMQP configuration"
                .into()
        )
    );
    let bad_headers = DECLARE.replace(r#""queue_headers":"[]""#, r#""queue_headers":"{bad""#);
    assert!(call(&jobs, &["declare", &bad_headers])
        .unwrap_err()
        .starts_with("queue_headers: "));
    // Multi-megabyte jobs travel whole; one over the broker's limit is refused to the
    // pusher (the broker closes the publish channel: the pipeline redials) and the next
    // push, to this pipeline or another, works.
    let big = (3 * 1024 * 1024).to_string();
    call(&jobs, &["big", "emails", "big1", &big]).unwrap();
    let over = (MAX_MESSAGE_BYTES + 1).to_string();
    let refused = call(&jobs, &["big", "emails", "big2", &over]).unwrap_err();
    assert!(refused.contains("publish"), "{refused}");
    let lines = wait_taken(&jobs.log, 1, Duration::from_secs(10));
    assert_eq!(
        lines[0]["payload"].as_str().map(str::len),
        Some(3 * 1024 * 1024)
    );
    assert!(
        jobs.server.wait_for_line(
            "connection was successfully restored",
            Duration::from_secs(30)
        ),
        "{}",
        jobs.server.output()
    );
    call(&jobs, &["push", "emails", "ack", "after-big", "x"]).unwrap();
    wait_runs(&jobs.log, "after-big", 1);
    assert!(runs(&jobs.log, "big2").is_empty());
    // A push-only pipeline publishes to the exchange the consumer reads.
    call(&jobs, &["push", "push-only", "ack", "p1", "x"]).unwrap();
    wait_runs(&jobs.log, "p1", 1);
    // Wrong credentials and a broker that is not there: rr does not start, and says why.
    for (addr, why) in [
        (
            broker.uri().replace("guest:guest", "guest:wrong"),
            "ACCESS_REFUSED",
        ),
        (
            format!("amqp://guest:guest@127.0.0.1:{}/", free_port()),
            "Connection refused",
        ),
    ] {
        let yaml = config(
            &broker,
            1,
            &emails(""),
            "emails",
            &scratch_dir().join("log"),
            &format!("tcp://127.0.0.1:{}", free_port()),
        )
        .replace(&broker.uri(), &addr);
        let (status, output) = RrServer::start_with(&yaml, &[]).expect_err("rr must not start");
        assert!(!status.success());
        assert!(
            output.contains("jobs.pipelines.emails: amqp dial")
                && output.contains(why)
                && !output.contains("guest:wrong"),
            "{output}"
        );
    }
}

#[test]
fn an_amqp_pipeline_without_the_amqp_section_is_listed_and_refuses_pushes() {
    let log = scratch_dir().join("jobs.log");
    let dsn = format!("tcp://127.0.0.1:{}", free_port());
    let yaml = format!(
        "version: \"3\"\nrpc:\n  listen: {dsn}\nserver:\n  command: \"{}\"\njobs:\n  pool:\n    num_workers: 1\n  pipelines:\n{}logs:\n  level: info\n",
        worker_command("jobs.php"),
        emails("")
    );
    let server = RrServer::start_with(&yaml, &[]).unwrap_or_else(|(s, o)| panic!("{s}\n{o}"));
    assert!(server
        .output()
        .contains("can't find driver constructor for the pipeline"));
    let jobs = Jobs { server, dsn, log };
    assert_eq!(call(&jobs, &["list"]).unwrap(), json!(["emails"]));
    assert_eq!(
        call(&jobs, &["push", "emails", "ack", "a", "x"]),
        Err("consumer not registered for the requested driver: amqp".into())
    );
}
