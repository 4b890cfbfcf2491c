//! The command translation's unit tests.

use super::*;

fn context() -> RunContext<'static> {
    RunContext {
        namespace: "default",
        task_queue: "q",
        workflow_id: "w",
    }
}

fn command(id: u64, name: &str, options: &str) -> Message {
    Message {
        id,
        command: name.into(),
        options: options.as_bytes().to_vec(),
        ..Message::default()
    }
}

#[test]
fn an_unknown_command_fails_with_rrs_text() {
    let error = translate(
        &[command(9001, "Teleport", "{}")],
        &mut RunState::default(),
        context(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "undefined command name: Teleport, possible outdated RoadRunner version"
    );
}

#[test]
fn an_activity_and_a_timer_become_core_commands_with_the_sdk_ids() {
    let mut run = RunState::default();
    let out = translate(
        &[
            command(
                9001,
                "ExecuteActivity",
                r#"{"name":"Greet","options":{"StartToCloseTimeout":10000000000}}"#,
            ),
            command(9002, "NewTimer", r#"{"ms":1500}"#),
        ],
        &mut run,
        context(),
    )
    .unwrap();
    match &out.commands[..] {
        [Variant::ScheduleActivity(activity), Variant::StartTimer(timer)] => {
            assert_eq!(
                (
                    activity.seq,
                    activity.activity_type.as_str(),
                    activity.task_queue.as_str()
                ),
                (9001, "Greet", "q")
            );
            assert_eq!(activity.start_to_close_timeout.unwrap().seconds, 10);
            assert_eq!(timer.seq, 9002);
        }
        other => panic!("unexpected {other:?}"),
    }
    let cancelled = translate(
        &[command(9003, "Cancel", r#"{"ids":[9002]}"#)],
        &mut run,
        context(),
    )
    .unwrap();
    assert!(matches!(
        cancelled.commands[..],
        [Variant::CancelTimer(CancelTimer { seq: 9002 })]
    ));
    assert_eq!(
        cancelled.immediate.iter().map(|m| m.id).collect::<Vec<_>>(),
        [9002, 9003]
    );
}

#[test]
fn update_answers_accept_reject_and_complete_the_cores_update() {
    let mut run = RunState::default();
    for (id, run_validator) in [("u1", true), ("u2", false)] {
        run.updates.insert(
            id.into(),
            OpenUpdate {
                protocol_instance_id: format!("p-{id}"),
                run_validator,
            },
        );
    }
    let rejected_failure = prost::Message::encode_to_vec(&application_failure("no".into(), "X"));
    let mut rejected = command(9001, "UpdateValidated", r#"{"id":"u1"}"#);
    rejected.failure = Some(rejected_failure.clone());
    // In replay (no validator run) the same failure does not reject (rr's handler).
    let mut replayed = command(9002, "UpdateValidated", r#"{"id":"u2"}"#);
    replayed.failure = Some(rejected_failure);
    let completed = command(9003, "UpdateCompleted", r#"{"id":"u2"}"#);
    let out = translate(&[rejected, replayed, completed], &mut run, context()).unwrap();
    let answers: Vec<_> = out
        .commands
        .iter()
        .map(|command| match command {
            Variant::UpdateResponse(answer) => (
                answer.protocol_instance_id.as_str(),
                match &answer.response {
                    Some(UpdateAnswer::Rejected(failure)) => failure.message.clone(),
                    Some(UpdateAnswer::Accepted(())) => "accepted".into(),
                    Some(UpdateAnswer::Completed(_)) => "completed".into(),
                    None => "none".into(),
                },
            ),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        answers,
        [
            ("p-u1", "no".to_owned()),
            ("p-u2", "accepted".to_owned()),
            ("p-u2", "completed".to_owned())
        ]
    );
    assert!(run.updates.is_empty() && out.immediate.is_empty());
    let error = translate(
        &[command(9004, "UpdateCompleted", "{}")],
        &mut run,
        context(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "update id is empty, can't complete update"
    );
}

#[test]
fn broken_options_fail_the_task_not_the_server() {
    let error = translate(
        &[command(9001, "NewTimer", "{\"ms\":\"x")],
        &mut RunState::default(),
        context(),
    )
    .unwrap_err();
    assert!(matches!(
        error,
        CommandError::Message(MessageError::Options { .. })
    ));
}

#[test]
fn payloads_past_temporals_limit_fail_the_task() {
    let mut big = command(9001, "CompleteWorkflow", "{}");
    big.payloads = Some(vec![0; MAX_COMMAND_PAYLOADS_BYTES + 1]);
    let error = translate(&[big], &mut RunState::default(), context()).unwrap_err();
    assert!(matches!(
        error,
        CommandError::PayloadsTooLarge { bytes, .. } if bytes == MAX_COMMAND_PAYLOADS_BYTES + 1
    ));
}
