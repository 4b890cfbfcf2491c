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
fn an_unknown_command_fails_the_workflow_task_with_rrs_text_and_others_run_on() {
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
