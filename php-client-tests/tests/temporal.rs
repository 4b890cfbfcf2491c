//! The `temporal` plugin through the real binary, a real Temporal server (the CLI's dev
//! server, one per test, in memory) and our PHP side of the SDK protocol
//! (`php/temporal/`), with workflows driven by the Python `temporalio` client
//! (`python/temporal_client.py`).

#[path = "temporal/rig.rs"]
mod rig;

use php_client_tests::server::{free_port, scratch_dir, spawn_serve, wait_child_exit};
use rig::Rig;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn a_workflow_runs_one_activity_end_to_end() {
    let rig = Rig::start(2, "");
    assert_eq!(
        rig.client(&["run", "GreetWorkflow", r#"["Bob"]"#]),
        json!({"result": "Hello, Bob!"})
    );
    assert!(rig.rr.output().contains("connected to temporal server"));
    assert!(rig
        .rr
        .output()
        .contains(&format!("\"TaskQueue\":\"{}\"", rig.queue)));
}

#[test]
fn a_timer_fires_and_a_child_workflow_answers_its_parent() {
    let rig = Rig::start(1, "");
    assert_eq!(
        rig.client(&["run", "TimerWorkflow", "[300]"]),
        json!({"result": "fired"})
    );
    assert_eq!(
        rig.client(&["run", "ParentWorkflow", "[21]"]),
        json!({"result": "child said 42"})
    );
}

#[test]
fn signals_change_a_workflow_and_a_query_reads_it() {
    let rig = Rig::start(1, "");
    assert_eq!(
        rig.client(&["cart"]),
        json!({"result": {"queried": ["apple", "pear"], "returned": ["apple", "pear"]}})
    );
}

#[test]
fn a_failing_activity_is_retried_by_its_policy_and_a_failed_workflow_reports_its_exception() {
    let rig = Rig::start(2, "");
    assert_eq!(
        rig.client(&["run", "RetryWorkflow", r#"["k"]"#]),
        json!({"result": "ok after attempt 3"})
    );
    let failed = rig.client(&["run", "FailWorkflow", "[]"]);
    assert_eq!(failed["error"], "WorkflowFailureError");
    assert_eq!(
        failed["cause"],
        json!({"kind": "ApplicationError", "message": "the workflow gave up", "type": "DomainException"})
    );
}

#[test]
fn a_cancelled_workflow_sees_its_timer_cancelled() {
    let rig = Rig::start(1, "");
    assert_eq!(rig.client(&["cancel"]), json!({"result": "cancelled"}));
}

#[test]
fn an_unknown_command_broken_options_or_a_reply_not_a_frame_fail_only_their_workflow_task() {
    let rig = Rig::start(1, "");
    let id = "bad-command";
    rig.client(&["start", "BadCommandWorkflow", r#"["unknown"]"#, id]);
    assert!(
        rig.rr.wait_for_line(
            "undefined command name: Teleport, possible outdated RoadRunner version",
            Duration::from_secs(30)
        ),
        "{}",
        rig.rr.output()
    );
    let id = "broken-options";
    rig.client(&["start", "BadCommandWorkflow", r#"["broken"]"#, id]);
    assert!(
        rig.rr
            .wait_for_line("invalid options of NewTimer", Duration::from_secs(30)),
        "{}",
        rig.rr.output()
    );
    let id = "garbage-reply";
    rig.client(&["start", "BadCommandWorkflow", r#"["garbage"]"#, id]);
    assert!(
        rig.rr
            .wait_for_line("malformed temporal frame", Duration::from_secs(30)),
        "{}",
        rig.rr.output()
    );
    assert_eq!(
        rig.client(&["run", "GreetWorkflow", r#"["Ann"]"#]),
        json!({"result": "Hello, Ann!"})
    );
}

#[test]
fn an_unreachable_server_stops_rr_with_rc_1_within_a_second_and_no_php_left() {
    let dir = scratch_dir();
    let queue = "unreachable";
    std::fs::write(
        dir.join(".rr.yaml"),
        rig::config(&format!("127.0.0.1:{}", free_port()), queue, 1, ""),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = spawn_serve(&dir, &[]);
    let status = wait_child_exit(&mut child, Duration::from_secs(30)).expect("rr exits");
    let elapsed = started.elapsed();
    let mut output = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut output).unwrap();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut output).unwrap();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("temporal_plugin_serve: failed reaching server:"),
        "{output}"
    );
    // Two PHP workers boot first (rr's order); the dial itself fails at once.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(
        rig::php_workers_of(queue).is_empty(),
        "PHP workers left behind: {:?}",
        rig::php_workers_of(queue)
    );
}

/// Starts `StepsWorkflow(6, 300 ms)` and waits until its second step ran: the workflow is
/// mid-way, a timer or an activity open.
fn start_steps_and_wait_for_step_1(rig: &Rig, id: &str) {
    rig.client(&["start", "StepsWorkflow", "[6, 300]", id]);
    assert!(
        rig::wait_for_log(&rig.log, "step 1 ", Duration::from_secs(60)),
        "{}",
        rig.rr.output()
    );
}

/// The workflow returned its six steps.
fn assert_steps_result(rig: &Rig, id: &str) {
    assert_eq!(
        rig.client(&["result", id]),
        json!({"result": ["step 0", "step 1", "step 2", "step 3", "step 4", "step 5"]}),
        "{}",
        rig.rr.output()
    );
}

/// The workflow ran every step once: completed activities are not run again by a replay.
fn assert_steps_completed_once(rig: &Rig, id: &str) {
    assert_steps_result(rig, id);
    let log = std::fs::read_to_string(&rig.log).unwrap();
    for step in 0..6 {
        assert_eq!(
            log.matches(&format!("step {step} ")).count(),
            1,
            "step {step} ran once: {log}"
        );
    }
}

#[test]
fn a_killed_workflow_worker_is_replaced_and_its_workflow_replays_in_the_new_one() {
    let rig = Rig::start(1, "");
    let id = "steps-ww-kill";
    start_steps_and_wait_for_step_1(&rig, id);
    let activity_pids = rig::activity_pids(&rig.log);
    let workflow_pids: Vec<u32> = rig::php_workers_of(&rig.queue)
        .into_iter()
        .filter(|pid| !activity_pids.contains(pid))
        .collect();
    assert_eq!(
        workflow_pids.len(),
        1,
        "one workflow worker: {workflow_pids:?}"
    );
    rig::kill(workflow_pids[0]);
    assert_steps_completed_once(&rig, id);
    assert!(rig.rr.output().contains("workflow worker replaced"));
    assert!(!rig::php_workers_of(&rig.queue).contains(&workflow_pids[0]));
}

#[test]
fn a_killed_activity_worker_fails_only_its_activity_which_is_retried() {
    let rig = Rig::start(2, "");
    assert_eq!(
        rig.client(&["run", "CrashWorkflow", "[]"]),
        json!({"result": "survived on attempt 2"})
    );
    assert_eq!(
        rig.client(&["run", "GreetWorkflow", r#"["Eve"]"#]),
        json!({"result": "Hello, Eve!"})
    );
}

#[test]
fn rr_reset_mid_workflow_restarts_both_pools_and_the_workflow_goes_on() {
    let rig = Rig::start(1, "");
    let id = "steps-reset";
    start_steps_and_wait_for_step_1(&rig, id);
    let before = rig::php_workers_of(&rig.queue);
    let output = php_client_tests::server::run_rr(&rig.rr.dir, &["reset", "temporal"]);
    assert!(output.status.success(), "{output:?}");
    assert!(rig
        .rr
        .output()
        .contains("reset signal received, resetting activity and workflow worker pools"));
    let after = rig::php_workers_of(&rig.queue);
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "every PID changes: {before:?} -> {after:?}"
    );
    assert_steps_completed_once(&rig, id);
}

#[test]
fn fifty_workflows_in_parallel_all_complete() {
    let rig = Rig::start(4, "");
    let answer = rig.client(&["many", "GreetWorkflow", r#"["Zed"]"#, "50"]);
    assert_eq!(answer["errors"], json!([]), "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 50);
    assert!(results.iter().all(|r| r == "Hello, Zed!"));
}

#[test]
fn rr_workers_lists_the_workflow_worker_and_the_activity_workers_in_one_table() {
    let rig = Rig::start(2, "");
    let output = php_client_tests::server::run_rr(&rig.rr.dir, &["workers", "temporal"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("Workers of [temporal]:"), "{text}");
    let pids = rig::php_workers_of(&rig.queue);
    assert_eq!(pids.len(), 3, "{pids:?}");
    for pid in pids {
        assert!(text.contains(&pid.to_string()), "{pid} in {text}");
    }
}

#[test]
fn a_workflow_worker_that_never_answers_is_killed_after_the_workflow_task_timeout() {
    let rig = Rig::start(1, "");
    rig.client(&["start", "HangWorkflow", "[]", "hangs", "2"]);
    assert!(
        rig.rr
            .wait_for_line("did not answer within 2s", Duration::from_secs(30)),
        "{}",
        rig.rr.output()
    );
    let hung: u32 = std::fs::read_to_string(&rig.log)
        .unwrap()
        .split("hung pid ")
        .nth(1)
        .and_then(|rest| rest.trim().parse().ok())
        .expect("the hung worker noted its pid");
    assert_eq!(
        rig.client(&["run", "GreetWorkflow", r#"["Hal"]"#]),
        json!({"result": "Hello, Hal!"}),
        "{}",
        rig.rr.output()
    );
    assert_eq!(
        rig.client(&["result", "hangs"]),
        json!({"result": "answered at last"}),
        "{}",
        rig.rr.output()
    );
    assert!(
        !rig::php_workers_of(&rig.queue).contains(&hung),
        "the hung workflow worker was replaced"
    );
}

#[test]
fn heartbeats_over_rpc_keep_a_long_activity_alive_past_its_heartbeat_timeout() {
    let rig = Rig::start(1, "");
    let answer = rig.client(&["run", "HeartbeatWorkflow", "[]"]);
    assert_eq!(
        answer,
        json!({"result": vec![json!({"canceled": false}); 6]}),
        "{}",
        rig.rr.output()
    );
}

#[test]
fn the_metrics_scrape_has_both_pools_and_the_outcomes_and_temporal_metrics_their_own_listener() {
    let temporal_metrics = free_port();
    let rig = Rig::start(
        2,
        &format!(
            "  metrics:\n    driver: prometheus\n    prometheus:\n      address: 127.0.0.1:{temporal_metrics}\n      prefix: app\n\
             metrics:\n  address: 127.0.0.1:0\n"
        ),
    );
    assert_eq!(
        rig.client(&["run", "GreetWorkflow", r#"["Mo"]"#]),
        json!({"result": "Hello, Mo!"})
    );
    assert!(rig
        .rr
        .wait_for_line("metrics server listening", Duration::from_secs(10)));
    let address = rig
        .rr
        .listening_address("metrics server listening")
        .expect("metrics address");
    let text = php_client_tests::http_client::get(address, "/metrics").text();
    for line in [
        "rr_temporal_workflow_total_workers 1",
        "rr_temporal_activity_total_workers 2",
        "rr_temporal_activities_total{outcome=\"completed\"} 1",
        "rr_temporal_workflow_tasks_total{outcome=\"failed\"} 0",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    // temporal.metrics: the core's own metrics (the Go SDK's names), with the prefix.
    let text = php_client_tests::http_client::get(
        std::net::SocketAddr::from(([127, 0, 0, 1], temporal_metrics)),
        "/metrics",
    )
    .text();
    for name in [
        "app_temporal_workflow_completed",
        "app_temporal_activity_execution_latency",
    ] {
        assert!(text.contains(name), "{name} in:\n{text}");
    }
}

#[test]
fn a_killed_rr_loses_nothing_temporal_recorded_and_a_new_rr_finishes_the_workflow() {
    let mut rig = Rig::start(1, "");
    let id = "steps-rr-kill";
    start_steps_and_wait_for_step_1(&rig, id);
    rig.rr.signal(rustix::process::Signal::KILL);
    assert!(rig.rr.wait_exit(Duration::from_secs(10)).is_some());
    let before = std::fs::read_to_string(&rig.log).unwrap();
    rig.rr = php_client_tests::server::RrServer::start(&rig::config(
        &rig.temporal.address(),
        &rig.queue,
        1,
        "",
    ));
    assert_steps_result(&rig, id);
    // What the dead rr had recorded (step 0 at least) is not run again.
    let log = std::fs::read_to_string(&rig.log).unwrap();
    assert!(before.contains("step 0 "));
    assert_eq!(log.matches("step 0 ").count(), 1, "{log}");
}

#[test]
fn updates_change_a_running_workflow_and_a_rejected_update_changes_nothing() {
    let rig = Rig::start(1, "");
    let answer = rig.client(&["update"]);
    let result = &answer["result"];
    assert_eq!(
        result["counts"],
        json!([1, 2]),
        "{answer}\n{}",
        rig.rr.output()
    );
    assert_eq!(
        result["rejected"]["error"], "WorkflowUpdateFailedError",
        "{answer}"
    );
    assert_eq!(
        result["rejected"]["cause"]["message"], "an item needs a name",
        "{answer}"
    );
    assert_eq!(result["returned"], json!(["apple", "pear"]), "{answer}");
}

#[test]
fn the_stack_trace_query_asks_the_workflow_worker() {
    let rig = Rig::start(1, "");
    assert_eq!(
        rig.client(&["stack"]),
        json!({"result": {"stack_trace": "CartWorkflow: awaiting a condition", "returned": []}}),
        "{}",
        rig.rr.output()
    );
}

#[test]
fn a_local_activity_runs_in_an_activity_worker_and_is_recorded_as_a_marker() {
    let rig = Rig::start(1, "");
    let id = "local-step";
    rig.client(&["start", "LocalStepWorkflow", "[]", id]);
    assert_eq!(
        rig.client(&["result", id]),
        json!({"result": "step 0"}),
        "{}",
        rig.rr.output()
    );
    let ran_in = rig::activity_pids(&rig.log);
    let workers = rig::php_workers_of(&rig.queue);
    assert!(
        ran_in.len() == 1 && workers.contains(&ran_in[0]),
        "ran once, in a worker of ours: {ran_in:?} {workers:?}"
    );
    let events = rig.client(&["events", id]);
    let events: Vec<&str> = events["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event.as_str())
        .collect();
    assert!(events.contains(&"EVENT_TYPE_MARKER_RECORDED"), "{events:?}");
    assert!(
        !events.contains(&"EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"),
        "a local activity, not a scheduled one: {events:?}"
    );
}

#[test]
fn a_side_effect_and_a_version_keep_their_recorded_values_through_a_replay() {
    let rig = Rig::start(1, "");
    let id = "markers-replay";
    rig.client(&["start", "MarkersWorkflow", "[]", id]);
    let before = rig.client(&["query", id, "values"]);
    let values = before["result"].as_array().unwrap();
    assert!(values[0].is_i64(), "{before}\n{}", rig.rr.output());
    assert_eq!(values[1], 2, "a new change runs its newest version");
    // A new workflow worker replays the run from history: the side effect's closure draws
    // another random number, GetVersion is asked again.
    let output = php_client_tests::server::run_rr(&rig.rr.dir, &["reset", "temporal"]);
    assert!(output.status.success(), "{output:?}");
    rig.client(&["signal", id, "go"]);
    assert_eq!(
        rig.client(&["result", id]),
        json!({"result": values}),
        "{}",
        rig.rr.output()
    );
}

/// `temporal.<method>` with a protobuf message (hex) through our PHP RPC client: the reply's
/// bytes as text (the `ReplayResponse`'s status message is readable in them).
fn proto_call(dsn: &str, method: &str, message_hex: &str) -> String {
    let output = std::process::Command::new(php_client_tests::php_binary())
        .arg(php_client_tests::php_dir().join("rpc_call.php"))
        .args([dsn, &format!("temporal.{method}"), message_hex, "proto"])
        .output()
        .expect("php runs");
    let hex = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    assert_eq!(bytes.len() * 2, hex.len(), "a hex reply: {hex}");
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn the_replay_rpc_methods_and_update_api_key_give_defined_answers() {
    let rig = Rig::start(1, "");
    let output = rig.rr.output();
    let dsn = output
        .lines()
        .find(|line| line.contains("rpc server listening"))
        .and_then(|line| line.split("\"address\":\"").nth(1)?.split('"').next())
        .expect("rpc address")
        .to_owned();
    // A request without its fields: rr's text; a full one: not implemented, saying so.
    assert!(proto_call(&dsn, "ReplayWorkflow", "")
        .contains("run_id, workflow_id or workflow_name should not be empty"));
    // workflow_execution {workflow_id "w", run_id "r"}, workflow_type {name "X"}
    let full = "0a060a01771201721203 0a0158".replace(' ', "");
    for method in [
        "ReplayWorkflow",
        "ReplayFromJSON",
        "DownloadWorkflowHistory",
    ] {
        let answer = proto_call(&dsn, method, &full);
        let expected = if method == "ReplayWorkflow" {
            "temporal.ReplayWorkflow is not implemented by ringrunner"
        } else {
            "should not be empty" // no save_path
        };
        assert!(answer.contains(expected), "{method}: {answer}");
    }
    assert!(proto_call(&dsn, "ReplayWorkflowHistory", "")
        .contains("workflow_name and/or history should not be empty"));
    let call = |key: &str| {
        php_client_tests::rpc_call::php_call(&dsn, "temporal.UpdateAPIKey", &json!(key), false)
    };
    assert_eq!(call("a-new-key"), Ok("true".to_owned()));
    assert_eq!(call(""), Ok("false".to_owned()));
    assert_eq!(
        rig.client(&["run", "GreetWorkflow", r#"["Key"]"#]),
        json!({"result": "Hello, Key!"})
    );
}

#[test]
fn a_result_past_temporals_payload_limit_fails_its_workflow_task_only() {
    let rig = Rig::start(1, "");
    let id = "big-result";
    // 3 MiB: past Temporal's 2 MiB blob limit; the server would terminate the workflow.
    rig.client(&["start", "BigWorkflow", "[3145728]", id]);
    assert!(
        rig.rr
            .wait_for_line("bytes Temporal accepts", Duration::from_secs(60)),
        "{}",
        rig.rr.output()
    );
    let events = rig.client(&["events", id]).to_string();
    assert!(
        events.contains("EVENT_TYPE_WORKFLOW_TASK_FAILED"),
        "{events}"
    );
    assert!(!events.contains("TERMINATED"), "{events}");
    assert_eq!(
        rig.client(&["run", "GreetWorkflow", r#"["Other"]"#]),
        json!({"result": "Hello, Other!"})
    );
}
