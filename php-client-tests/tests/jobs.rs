//! The `jobs` plugin with the memory driver through the real binary: jobs pushed from PHP
//! over RPC (jobs.v1 protobuf) and consumed by real PHP workers speaking the reply protocol:
//! consumed once, nack with redelivery, requeue with headers, delays honoured, priorities,
//! pause and resume, declare and destroy, 10,000 jobs through 4 consumers exactly once, bad
//! input, `rr jobs` and the informer's jobs table.

use php_client_tests::jobs_log::{now, taken, wait_taken, wait_until};
use php_client_tests::server::{free_port, run_rr, scratch_dir, worker_command, Launch, RrServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Jobs {
    server: RrServer,
    dsn: String,
    log: PathBuf,
}

fn start(workers: usize, pipelines: &str, consume: &str) -> Jobs {
    start_with(workers, pipelines, consume, "", &Launch::default())
}

/// [`start`] with more top-level sections, launched as `launch` says.
fn start_with(
    workers: usize,
    pipelines: &str,
    consume: &str,
    extra: &str,
    launch: &Launch,
) -> Jobs {
    let log = scratch_dir().join("jobs.log");
    let dsn = format!("tcp://127.0.0.1:{}", free_port());
    let yaml = format!(
        "version: \"3\"\nrpc:\n  listen: {dsn}\nserver:\n  command: \"{}\"\n  env:\n    - JOBS_LOG: {}\njobs:\n  pool:\n    num_workers: {workers}\n  consume: [{consume}]\n  pipelines:\n{pipelines}{extra}logs:\n  level: info\n",
        worker_command("jobs.php"),
        log.display()
    );
    Jobs {
        server: RrServer::start_launched(&yaml, &[], launch)
            .unwrap_or_else(|(status, output)| panic!("rr did not start ({status}):\n{output}")),
        dsn,
        log,
    }
}

fn call(jobs: &Jobs, args: &[&str]) -> Result<Value, String> {
    php_client_tests::jobs_log::call(&jobs.dsn, args)
}

fn stat(jobs: &Jobs, pipeline: &str) -> Value {
    call(jobs, &["stat"]).unwrap()[pipeline].clone()
}

const MEMORY: &str = "    emails:\n      driver: memory\n      config:\n        priority: 10\n";

#[test]
fn a_pushed_job_is_consumed_once_and_acknowledged() {
    let jobs = start(2, MEMORY, "emails");
    assert_eq!(
        call(&jobs, &["push", "emails", "ack", "a1", "{\"to\":\"ann\"}"]),
        Ok(json!(true))
    );
    let lines = wait_taken(&jobs.log, 1, Duration::from_secs(5));
    assert_eq!(lines[0]["id"], "a1");
    assert_eq!(lines[0]["job"], "ack");
    assert_eq!(lines[0]["pipeline"], "emails");
    assert_eq!(lines[0]["payload"], "{\"to\":\"ann\"}");
    assert_eq!(
        lines[0]["headers"],
        json!([]),
        "no headers: PHP decodes {{}} as []"
    );
    // The ack frees the slot after the worker's log line is written: poll the figure.
    let deadline = Instant::now() + Duration::from_secs(5);
    while stat(&jobs, "emails")["active"] != json!(0) {
        assert!(Instant::now() < deadline, "the ack never freed the slot");
        std::thread::park_timeout(Duration::from_millis(10));
    }
    assert_eq!(stat(&jobs, "emails")["ready"], json!(true));
    assert_eq!(taken(&jobs.log).len(), 1, "consumed once");
}

#[test]
fn nack_with_redelivery_requeue_with_headers_and_delays() {
    let jobs = start(2, MEMORY, "emails");
    call(&jobs, &["push", "emails", "retry", "r1", "x"]).unwrap();
    let lines = wait_taken(&jobs.log, 2, Duration::from_secs(5));
    assert_eq!(
        (lines[0]["id"].clone(), lines[1]["id"].clone()),
        (json!("r1"), json!("r1")),
        "requeued, same id"
    );
    assert_eq!(
        lines[1]["headers"]["attempt"],
        json!(["2"]),
        "the requeue's headers reach the second run"
    );
    // nack with requeue and a 1 s delay: back after the delay, within 100 ms of it.
    let pushed = now();
    call(&jobs, &["push", "emails", "later", "l1", "first"]).unwrap();
    let lines = wait_taken(&jobs.log, 3, Duration::from_secs(5));
    assert_eq!(lines[2]["id"], "l1");
    let first = lines[2]["at"].as_f64().unwrap();
    // The worker nacks the first run with redelivery after 1 s; the job keeps its payload,
    // so the second run nacks again: two runs 1 s apart are enough to see the delay.
    let lines = wait_taken(&jobs.log, 4, Duration::from_secs(5));
    let second = lines[3]["at"].as_f64().unwrap();
    assert!(
        second - first >= 1.0 && second - first < 1.1 + 0.1,
        "redelivered {:.3} s later",
        second - first
    );
    assert!(first - pushed < 0.5);
    // A delayed push: not before its delay.
    let pushed = now();
    call(&jobs, &["push", "emails", "ack", "d1", "x", "1"]).unwrap();
    let lines = wait_taken(&jobs.log, 6, Duration::from_secs(5));
    let delayed = lines.iter().find(|l| l["id"] == "d1").expect("d1 ran");
    let waited = delayed["at"].as_f64().unwrap() - pushed;
    assert!(
        (1.0..1.1 + 0.1).contains(&waited),
        "a 1 s delay ran after {waited:.3} s"
    );
    // A plain nack drops the job (no dead-letter queue in memory).
    call(&jobs, &["push", "emails", "nack", "n1", "x"]).unwrap();
    wait_taken(&jobs.log, 7, Duration::from_secs(5));
}

#[test]
fn priorities_pause_resume_declare_and_destroy() {
    let pipelines = "    low:\n      driver: memory\n      config:\n        priority: 20\n    high:\n      driver: memory\n      config:\n        priority: 5\n";
    // One shard: the pollers wait for the one worker in the order they took their jobs (across
    // shards the pool prefers a waiter on the shard the worker comes back to).
    let one_shard = Launch {
        wrapper: None,
        env: vec![("RINGRUNNER_SHARDS".into(), "1".into())],
    };
    let jobs = start_with(1, pipelines, "low, high", "", &one_shard);
    call(&jobs, &["pause", "low", "high"]).unwrap();
    assert_eq!(stat(&jobs, "low")["ready"], json!(false));
    call(&jobs, &["push", "low", "ack", "paused", "x"]).unwrap();
    assert_eq!(
        stat(&jobs, "low")["active"],
        json!(0),
        "a paused pipeline holds its jobs"
    );
    assert_eq!(
        call(&jobs, &["pause", "low"]),
        Err("no active listeners, nothing to pause".into())
    );
    call(&jobs, &["resume", "low", "high"]).unwrap();
    wait_taken(&jobs.log, 1, Duration::from_secs(5));
    // One worker, three pollers: three held jobs occupy them (the worker holds the first
    // until the release file exists), so what is pushed meanwhile waits in the queue and
    // runs by priority (an explicit 1, then high's 5, then low's 20).
    let release = jobs.log.with_file_name("release");
    let release_arg = release.display().to_string();
    for id in ["h1", "h2", "h3"] {
        call(&jobs, &["push", "low", "hold", id, &release_arg, "0", "30"]).unwrap();
    }
    wait_taken(&jobs.log, 2, Duration::from_secs(5));
    call(&jobs, &["push", "low", "ack", "low-1", "x"]).unwrap();
    call(&jobs, &["push", "high", "ack", "high-1", "x"]).unwrap();
    call(&jobs, &["push", "low", "ack", "low-2", "x", "0", "1"]).unwrap();
    std::fs::write(&release, "").unwrap();
    let order: Vec<String> = wait_taken(&jobs.log, 7, Duration::from_secs(10))
        .iter()
        .skip(4)
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        ["low-2", "high-1", "low-1"],
        "{:?}",
        taken(&jobs.log)
            .iter()
            .map(|l| l["id"].clone())
            .collect::<Vec<_>>()
    );
    // Declared at run time: waits for resume unless listed in consume.
    call(
        &jobs,
        &[
            "declare",
            &json!({"name": "extra", "driver": "memory", "priority": "3", "prefetch": "10"})
                .to_string(),
        ],
    )
    .unwrap();
    assert_eq!(
        call(
            &jobs,
            &[
                "declare",
                &json!({"name": "extra", "driver": "memory"}).to_string()
            ]
        ),
        Err("pipeline already exists, name: extra, driver: memory".into())
    );
    assert_eq!(
        call(
            &jobs,
            &[
                "declare",
                &json!({"name": "x", "driver": "beanstalk"}).to_string()
            ]
        ),
        Err("can't find driver constructor for the pipeline: beanstalk".into())
    );
    let mut listed: Vec<String> = serde_json::from_value(call(&jobs, &["list"]).unwrap()).unwrap();
    listed.sort();
    assert_eq!(listed, ["extra", "high", "low"]);
    assert_eq!(stat(&jobs, "extra")["ready"], json!(false));
    assert_eq!(stat(&jobs, "extra")["priority"], json!(3));
    assert_eq!(call(&jobs, &["destroy", "extra"]), Ok(json!(["extra"])));
    assert_eq!(
        call(&jobs, &["push", "extra", "ack", "e1", "x"]),
        Err("no such pipeline, requested: extra".into())
    );
    // rr jobs and rr workers show them.
    let listed =
        String::from_utf8_lossy(&run_rr(&jobs.server.dir, &["jobs", "--list"]).stdout).into_owned();
    assert!(
        listed.contains("PIPELINE ( S )") && listed.contains("high") && listed.contains("low"),
        "{listed}"
    );
    assert_eq!(
        run_rr(&jobs.server.dir, &["jobs", "--pause", "high"])
            .status
            .code(),
        Some(0)
    );
    let workers =
        String::from_utf8_lossy(&run_rr(&jobs.server.dir, &["workers"]).stdout).into_owned();
    assert!(
        workers.contains("Workers of [jobs]") && workers.contains("Jobs of [jobs]"),
        "{workers}"
    );
    assert!(
        workers.contains("PAUSED/STOPPED") && workers.contains("READY"),
        "{workers}"
    );
}

#[test]
fn ten_thousand_jobs_through_four_consumers_each_exactly_once() {
    let pipelines = "    bulk:\n      driver: memory\n      config:\n        prefetch: 200\n";
    let jobs = start(4, pipelines, "bulk");
    call(&jobs, &["many", "bulk", "10000"]).unwrap();
    let lines = wait_taken(&jobs.log, 10_000, Duration::from_secs(120));
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in &lines {
        *seen
            .entry(line["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 10_000);
    assert!(seen.values().all(|count| *count == 1), "a job ran twice");
    let pids: std::collections::HashSet<u64> =
        lines.iter().map(|l| l["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 4, "the four consumers shared the work");
}

#[test]
fn bad_input_gets_clear_errors_and_the_pipeline_goes_on() {
    let pipelines =
        format!("{MEMORY}    broker:\n      driver: amqp\n      config:\n        queue: x\n");
    let jobs = start(1, &pipelines, "emails");
    assert_eq!(
        call(&jobs, &["push", "nope", "ack", "a", "x"]),
        Err("no such pipeline, requested: nope".into())
    );
    assert_eq!(
        call(&jobs, &["push", "emails", "ack", "", "x"]),
        Err("empty ID field not allowed".into())
    );
    assert_eq!(
        call(&jobs, &["push", "broker", "ack", "b", "x"]),
        Err("consumer not registered for the requested driver: amqp".into())
    );
    // A reply that is not the protocol's JSON: logged and acknowledged (not redelivered).
    call(&jobs, &["push", "emails", "garbage", "g1", "x"]).unwrap();
    assert!(jobs
        .server
        .wait_for_line("response handler error", Duration::from_secs(5)));
    // A worker that dies mid-job: the job is dropped as rr's memory driver does, and the
    // pipeline goes on with a new worker.
    call(&jobs, &["push", "emails", "crash", "c1", "x"]).unwrap();
    wait_taken(&jobs.log, 2, Duration::from_secs(5));
    call(&jobs, &["push", "emails", "ack", "after", "x"]).unwrap();
    let lines = wait_taken(&jobs.log, 3, Duration::from_secs(10));
    assert_eq!(lines.iter().filter(|l| l["id"] == "g1").count(), 1);
    assert_eq!(lines[2]["id"], "after");
}

#[test]
fn the_jobs_service_reads_json_with_the_proto_field_names_too() {
    let jobs = start(1, MEMORY, "emails");
    let push = json!({"job": {"job": "ack", "id": "j1", "payload": "aGVsbG8=", "headers": {"k": {"value": ["v"]}}, "options": {"pipeline": "emails"}}});
    assert_eq!(
        php_client_tests::rpc_call::php_call(&jobs.dsn, "jobs.Push", &push, false),
        Ok("[]".into()),
        "PHP writes the empty reply object as []"
    );
    let lines = wait_taken(&jobs.log, 1, Duration::from_secs(5));
    assert_eq!(lines[0]["payload"], "hello");
    assert_eq!(lines[0]["headers"]["k"], json!(["v"]));
    let stats =
        php_client_tests::rpc_call::php_call(&jobs.dsn, "jobs.Stat", &json!({}), false).unwrap();
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["stats"][0]["pipeline"], "emails");
    let bad = json!({"job": {"id": "x", "payload": "***", "options": {"pipeline": "emails"}}});
    assert_eq!(
        php_client_tests::rpc_call::php_call(&jobs.dsn, "jobs.Push", &bad, false),
        Err("jobs.Push: payload: not base64".into())
    );
}

#[test]
fn the_metrics_plugin_counts_pushes_and_jobs_as_rr_names_them() {
    let jobs = start_with(
        2,
        MEMORY,
        "emails",
        "metrics:\n  address: 127.0.0.1:0\n",
        &Launch::default(),
    );
    assert!(jobs
        .server
        .wait_for_line("metrics server listening", Duration::from_secs(10)));
    let scrape = jobs
        .server
        .listening_address("metrics server listening")
        .unwrap();
    call(&jobs, &["push", "emails", "ack", "m1", "x"]).unwrap();
    call(&jobs, &["many", "emails", "3"]).unwrap();
    let _ = call(&jobs, &["push", "nope", "ack", "m2", "x"]);
    wait_taken(&jobs.log, 4, Duration::from_secs(5));
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    // The counters move as the worker's ack is applied, a moment after its log line: poll.
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = php_client_tests::http_client::get(scrape, "/metrics").text();
        if value(&text, "rr_jobs_jobs_ok") == Some(4.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::park_timeout(Duration::from_millis(10));
    };
    assert_eq!(value(&text, "rr_jobs_push_ok"), Some(4.0), "{text}");
    assert_eq!(value(&text, "rr_jobs_push_err"), Some(1.0));
    assert_eq!(
        value(
            &text,
            "rr_jobs_requests_total{driver=\"memory\",job=\"emails\",source=\"single\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "rr_jobs_requests_total{driver=\"memory\",job=\"emails\",source=\"batch\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            "rr_jobs_push_latency_count{driver=\"memory\",job=\"emails\",source=\"batch\"}"
        ),
        Some(3.0)
    );
    assert_eq!(value(&text, "rr_jobs_workers_ready"), Some(2.0));
}

#[test]
fn a_requeue_past_the_delayed_cap_is_taken_back_not_lost() {
    let jobs = start(1, MEMORY, "emails");
    // 1000 delayed jobs (an hour away): the pipeline's delayed cap is reached.
    call(
        &jobs,
        &["many", "emails", "1000", "500", "ack", "far-", "3600"],
    )
    .unwrap();
    assert_eq!(stat(&jobs, "emails")["delayed"], json!(1000));
    assert_eq!(
        call(&jobs, &["push", "emails", "ack", "one-more", "x", "5"]),
        Err("max concurrency number reached".into()),
        "a push past the cap is still refused"
    );
    // Its first run nacks with requeue and a 1 s delay: that job is already ours, it comes
    // back (before, the requeue's push was refused and the job lost with an error line).
    call(&jobs, &["push", "emails", "later-once", "l1", "x"]).unwrap();
    let lines = wait_taken(&jobs.log, 2, Duration::from_secs(20));
    assert_eq!(
        (&lines[0]["id"], &lines[1]["id"]),
        (&json!("l1"), &json!("l1"))
    );
    assert!(!jobs.server.output().contains("job might be missed"));
}

#[test]
fn a_pipeline_waiting_for_room_in_the_shared_queue_is_woken_when_room_appears() {
    let pipelines = "    a:\n      driver: memory\n      config:\n        priority: 10\n    b:\n      driver: memory\n      config:\n        priority: 10\n";
    // pipeline_size 1; one worker, three pollers.
    let jobs = start_with(
        1,
        pipelines,
        "a, b",
        "  pipeline_size: 1\n",
        &Launch::default(),
    );
    let release = jobs.log.with_file_name("release");
    let release_arg = release.display().to_string();
    // Three held jobs occupy the three pollers (the worker holds the first until the
    // release file exists).
    for id in ["h1", "h2", "h3"] {
        call(&jobs, &["push", "a", "hold", id, &release_arg]).unwrap();
    }
    wait_taken(&jobs.log, 1, Duration::from_secs(10));
    // Stat's count is read on request: polled, there is no event for it.
    let wait_active = |pipeline: &str, active: u64| {
        wait_until(
            &format!("{pipeline} has {active} out"),
            Duration::from_secs(10),
            || stat(&jobs, pipeline)["active"] == json!(active),
        );
    };
    wait_active("a", 3);
    // The fourth fills the shared queue; b's job waits in b's local queue for room.
    call(&jobs, &["push", "a", "ack", "a4", "x"]).unwrap();
    wait_active("a", 4);
    call(&jobs, &["push", "b", "ack", "b1", "x"]).unwrap();
    assert_eq!(stat(&jobs, "b")["active"], json!(0), "no room for b1 yet");
    // The held jobs end, a4 leaves the queue: b1 must follow without another push to b.
    std::fs::write(&release, "").unwrap();
    let lines = wait_taken(&jobs.log, 5, Duration::from_secs(20));
    assert!(
        lines.iter().any(|line| line["id"] == "b1"),
        "{:?}",
        lines.iter().map(|l| l["id"].clone()).collect::<Vec<_>>()
    );
}
