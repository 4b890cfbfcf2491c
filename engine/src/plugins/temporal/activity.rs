//! The activity side of the bridge: a core activity task becomes `InvokeActivity` on an
//! activity worker (one per frame); its result or failure completes the task. A worker that
//! dies mid-activity fails only that activity (the pool replaces the worker; the server
//! retries the activity by its policy).

use super::payloads::{application_failure, failure_of, nanos_of, payloads_of};
use super::relay::Relay;
use crate::pool::Pool;
use base64::Engine as _;
use ringrunner_protocol::temporal::{Context, Frame, Message};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use temporalio_common::protos::coresdk::activity_result::{
    activity_execution_result, ActivityExecutionResult, Failure as ActivityFailure, Success,
};
use temporalio_common::protos::coresdk::activity_task::{activity_task, ActivityTask, Start};
use temporalio_common::protos::coresdk::ActivityTaskCompletion;

/// The activity side, shared by the core workers of every task queue.
#[derive(Debug)]
pub struct ActivityBridge {
    relay: Relay,
    pool: Pool,
    /// rr's request ids (shared with the workflow side's counter in rr; any unique id
    /// serves).
    next_request_id: Arc<AtomicU64>,
}

impl ActivityBridge {
    /// A bridge to the activity workers of `pool`.
    #[must_use]
    pub fn new(relay: Relay, pool: Pool) -> Self {
        Self {
            relay,
            pool,
            next_request_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Runs `task` on an activity worker; None for a task that needs no completion (a
    /// cancellation: the running activity's outcome completes it).
    pub async fn run(
        &self,
        task_queue: &str,
        task: ActivityTask,
    ) -> Option<ActivityTaskCompletion> {
        let Some(activity_task::Variant::Start(start)) = task.variant else {
            return None;
        };
        let result = self.invoke(task_queue, &task.task_token, &start).await;
        Some(ActivityTaskCompletion {
            task_token: task.task_token,
            result: Some(ActivityExecutionResult {
                status: Some(result),
            }),
        })
    }

    async fn invoke(
        &self,
        task_queue: &str,
        task_token: &[u8],
        start: &Start,
    ) -> activity_execution_result::Status {
        let context = Context {
            task_queue: task_queue.to_owned(),
            ..Context::default()
        };
        let mut message = invoke_activity(
            self.next_request_id.fetch_add(1, Ordering::Relaxed),
            task_queue,
            task_token,
            start,
        );
        context.stamp(&mut message);
        let frame = Frame {
            messages: vec![message],
        };
        let failure = |text: String| {
            activity_execution_result::Status::Failed(ActivityFailure {
                failure: Some(application_failure(text, "RoadRunnerError")),
                ..ActivityFailure::default()
            })
        };
        let reply = match self.relay.exchange(&self.pool, &context, &frame).await {
            Ok(reply) => reply,
            Err(error) => {
                tracing::warn!(activity = start.activity_type.as_str(), error = %error, "activity failed in its worker");
                return failure(error.to_string());
            }
        };
        let Some(answer) = reply
            .messages
            .iter()
            .rev()
            .find(|message| !message.is_command())
        else {
            return failure("the activity worker answered no result".to_owned());
        };
        match (failure_of(answer), payloads_of(answer)) {
            (Ok(Some(failure)), _) => activity_execution_result::Status::Failed(ActivityFailure {
                failure: Some(failure),
                ..ActivityFailure::default()
            }),
            (Ok(None), Ok(payloads)) => activity_execution_result::Status::Completed(Success {
                result: payloads.into_iter().next(),
            }),
            (Err(error), _) | (_, Err(error)) => failure(error.to_string()),
        }
    }
}

/// `InvokeActivity` with Go's `activity.Info` as rr sends it (spec "Activity worker").
fn invoke_activity(id: u64, task_queue: &str, task_token: &[u8], start: &Start) -> Message {
    let execution = start.workflow_execution.as_ref();
    let info = json!({
        "TaskToken": base64::engine::general_purpose::STANDARD.encode(task_token),
        "WorkflowType": {"Name": start.workflow_type},
        "WorkflowNamespace": start.workflow_namespace,
        "WorkflowExecution": {
            "ID": execution.map(|e| e.workflow_id.as_str()).unwrap_or_default(),
            "RunID": execution.map(|e| e.run_id.as_str()).unwrap_or_default(),
        },
        "ActivityID": start.activity_id,
        "ActivityType": {"Name": start.activity_type},
        "TaskQueue": task_queue,
        "HeartbeatTimeout": nanos_of(start.heartbeat_timeout.as_ref()),
        "ScheduleToCloseTimeout": nanos_of(start.schedule_to_close_timeout.as_ref()),
        "StartToCloseTimeout": nanos_of(start.start_to_close_timeout.as_ref()),
        "Attempt": start.attempt,
        "IsLocalActivity": start.is_local,
    });
    Message {
        id,
        command: "InvokeActivity".to_owned(),
        options: serde_json::to_vec(&json!({
            "name": start.activity_type,
            "info": info,
            "heartbeatDetails": start.heartbeat_details.len(),
        }))
        .unwrap_or_default(),
        payloads: super::payloads::encode_payloads(start.input.clone()),
        header: super::payloads::encode_header(start.header_fields.clone()),
        ..Message::default()
    }
}
