//! The activity side of the bridge: a core activity task becomes `InvokeActivity` on an
//! activity worker (one per frame); its result or failure completes the task. A worker that
//! dies mid-activity fails only that activity (the pool replaces the worker; the server
//! retries the activity by its policy).

use super::payloads::{application_failure, failure_of, nanos_of, payloads_of};
use super::relay::Relay;
use crate::plugins::rpc::services::base64;
use crate::pool::Pool;
use ringrunner_protocol::temporal::{Context, Frame, Message};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use temporalio_common::protos::coresdk::activity_result::{
    activity_execution_result, ActivityExecutionResult, Failure as ActivityFailure, Success,
};
use temporalio_common::protos::coresdk::activity_task::{activity_task, ActivityTask, Start};
use temporalio_common::protos::coresdk::ActivityTaskCompletion;

/// An activity running in a worker, as a heartbeat finds it by its task token.
#[derive(Debug, Clone, Default)]
pub struct Running {
    /// The task queue (its core worker takes the heartbeats).
    pub task_queue: String,
    /// The server asked to cancel it (the next heartbeat says so).
    pub canceled: bool,
}

/// The activity side, shared by the core workers of every task queue.
#[derive(Debug)]
pub struct ActivityBridge {
    relay: Relay,
    pool: Pool,
    /// Activities in the workers by task token (at most the core's outstanding activities).
    running: Mutex<HashMap<Vec<u8>, Running>>,
    /// Activities completed, and failed (for the metrics).
    completed: AtomicU64,
    failed: AtomicU64,
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
            running: Mutex::new(HashMap::new()),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
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
        let start = match task.variant {
            Some(activity_task::Variant::Start(start)) => start,
            Some(activity_task::Variant::Cancel(_)) => {
                if let Some(running) = self.lock_running().get_mut(&task.task_token) {
                    running.canceled = true;
                }
                return None;
            }
            None => return None,
        };
        self.lock_running().insert(
            task.task_token.clone(),
            Running {
                task_queue: task_queue.to_owned(),
                canceled: false,
            },
        );
        let result = self.invoke(task_queue, &task.task_token, &start).await;
        self.lock_running().remove(&task.task_token);
        let counter = match result {
            activity_execution_result::Status::Completed(_) => &self.completed,
            _ => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Some(ActivityTaskCompletion {
            task_token: task.task_token,
            result: Some(ActivityExecutionResult {
                status: Some(result),
            }),
        })
    }

    /// Activities completed and failed so far.
    pub fn outcomes(&self) -> (u64, u64) {
        (
            self.completed.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// The running activity of `task_token`.
    pub fn running(&self, task_token: &[u8]) -> Option<Running> {
        self.lock_running().get(task_token).cloned()
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
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
        let reply = match self
            .relay
            .exchange(&self.pool, &context, &frame, activity_limit(start))
            .await
        {
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

/// How long an activity may run in its worker: its start-to-close timeout (or
/// schedule-to-close), plus a margin for the server to time it out first.
fn activity_limit(start: &Start) -> std::time::Duration {
    let timeout = [
        &start.start_to_close_timeout,
        &start.schedule_to_close_timeout,
    ]
    .into_iter()
    .map(|timeout| nanos_of(timeout.as_ref()))
    .find(|nanos| *nanos > 0)
    .unwrap_or(ACTIVITY_LIMIT_WITHOUT_TIMEOUT_NS);
    std::time::Duration::from_nanos(u64::try_from(timeout).unwrap_or(0)) + ACTIVITY_LIMIT_MARGIN
}

/// An activity with neither timeout (the server requires one of them, so in practice never).
const ACTIVITY_LIMIT_WITHOUT_TIMEOUT_NS: i64 = 3_600_000_000_000;
/// Past the activity's own timeout, before its worker is killed.
const ACTIVITY_LIMIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// `InvokeActivity` (or `InvokeLocalActivity`) with Go's `activity.Info` as rr sends it
/// (spec "Activity worker").
fn invoke_activity(id: u64, task_queue: &str, task_token: &[u8], start: &Start) -> Message {
    let execution = start.workflow_execution.as_ref();
    let info = json!({
        "TaskToken": base64(task_token),
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
    // A local activity (`ExecuteLocalActivity`, run by the core within the workflow task) is
    // `InvokeLocalActivity{name, info}` (spec "Commands"): it has no heartbeats.
    let (command, options) = if start.is_local {
        (
            "InvokeLocalActivity",
            json!({"name": start.activity_type, "info": info}),
        )
    } else {
        (
            "InvokeActivity",
            json!({
                "name": start.activity_type,
                "info": info,
                "heartbeatDetails": start.heartbeat_details.len(),
            }),
        )
    };
    Message {
        id,
        command: command.to_owned(),
        options: serde_json::to_vec(&options).unwrap_or_default(),
        payloads: super::payloads::encode_payloads(start.input.clone()),
        header: super::payloads::encode_header(start.header_fields.clone()),
        ..Message::default()
    }
}
