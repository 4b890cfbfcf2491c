//! `GetWorkerInfo` (spec temporal "Captured exchanges"): what the PHP SDK registered, one
//! payload per task queue.

use super::payloads::payloads_of;
use super::relay::Relay;
use crate::pool::Pool;
use ringrunner_protocol::temporal::{Context, Frame, Message};
use serde::Deserialize;

/// How long the workflow worker may take to answer `GetWorkerInfo` at start.
const GET_WORKER_INFO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// One task queue's registrations.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TaskQueueInfo {
    /// The task queue.
    pub task_queue: String,
    /// Workflow types (`{"Name": …, "Queries": […], "Signals": […]}`).
    pub workflows: Vec<serde_json::Value>,
    /// Activity types (`{"Name": …}`).
    pub activities: Vec<serde_json::Value>,
    /// The SDK's version, sent to the server as `client-version`.
    pub php_sdk_version: String,
}

/// Every task queue the SDK registered.
#[derive(Debug, Clone, Default)]
pub struct WorkerInfoSet {
    /// Task queues, in the SDK's order, each once.
    pub task_queues: Vec<String>,
    /// The registrations as sent.
    pub queues: Vec<TaskQueueInfo>,
    /// The SDK's version (empty when it sent none).
    pub php_sdk_version: String,
}

/// Asks the workflow worker for its registrations.
///
/// # Errors
/// The exchange's error, a failure answer, or payloads that are not WorkerInfo JSON.
pub async fn fetch(relay: &Relay, workflow_pool: &Pool) -> Result<WorkerInfoSet, String> {
    let ww_pid = workflow_pool
        .workers()
        .first()
        .map_or(0, |worker| worker.pid);
    let request = Message {
        id: 0,
        command: "GetWorkerInfo".to_owned(),
        options: serde_json::to_vec(&serde_json::json!({
            "rr_version": crate::RR_COMPATIBLE_VERSION,
            "ww_pid": ww_pid,
        }))
        .unwrap_or_default(),
        ..Message::default()
    };
    let frame = Frame {
        messages: vec![request],
    };
    let reply = relay
        .exchange(
            workflow_pool,
            &Context::default(),
            &frame,
            workflow_pool
                .config()
                .allocate_timeout
                .min(GET_WORKER_INFO_TIMEOUT),
        )
        .await
        .map_err(|error| format!("GetWorkerInfo: {error}"))?;
    let answer = reply
        .messages
        .iter()
        .find(|message| !message.is_command())
        .ok_or("GetWorkerInfo: the workflow worker sent no answer")?;
    if answer.failure.is_some() {
        return Err("GetWorkerInfo: the workflow worker answered a failure".to_owned());
    }
    let payloads = payloads_of(answer).map_err(|error| format!("GetWorkerInfo: {error}"))?;
    let mut set = WorkerInfoSet::default();
    for payload in payloads {
        let queue: TaskQueueInfo = serde_json::from_slice(&payload.data)
            .map_err(|error| format!("GetWorkerInfo: not a WorkerInfo: {error}"))?;
        if queue.task_queue.is_empty() {
            return Err("GetWorkerInfo: a WorkerInfo without TaskQueue".to_owned());
        }
        if !set.task_queues.contains(&queue.task_queue) {
            set.task_queues.push(queue.task_queue.clone());
        }
        if set.php_sdk_version.is_empty() {
            set.php_sdk_version.clone_from(&queue.php_sdk_version);
        }
        set.queues.push(queue);
    }
    Ok(set)
}
