//! The JSON options of the PHP SDK's commands (spec temporal "Commands", PHP -> rr): Go's
//! structs as the SDK marshals them (durations in nanoseconds, Go's field names).

use super::payloads::GoRetryPolicy;
use serde::Deserialize;

/// `{name, options}` of `ExecuteActivity`, `ExecuteChildWorkflow`, `ContinueAsNew`, …
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NamedOptions<T> {
    pub name: String,
    pub options: T,
}

/// Go's `bindings.ExecuteActivityOptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ActivityOptions {
    pub task_queue_name: String,
    pub schedule_to_close_timeout: i64,
    pub schedule_to_start_timeout: i64,
    pub start_to_close_timeout: i64,
    pub heartbeat_timeout: i64,
    #[serde(rename = "ActivityID")]
    pub activity_id: String,
    pub retry_policy: Option<GoRetryPolicy>,
}

/// Go's `bindings.WorkflowOptions` (children, continue-as-new).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ChildOptions {
    pub namespace: String,
    #[serde(rename = "WorkflowID")]
    pub workflow_id: String,
    pub task_queue_name: String,
    pub workflow_execution_timeout: i64,
    pub workflow_run_timeout: i64,
    pub workflow_task_timeout: i64,
    #[serde(rename = "WorkflowIDReusePolicy")]
    pub workflow_id_reuse_policy: i32,
    pub parent_close_policy: i32,
    pub retry_policy: Option<GoRetryPolicy>,
    pub cron_schedule: String,
}

/// `NewTimer`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TimerOptions {
    pub ms: u64,
}

/// `GetChildWorkflowExecution`: the child command's id.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IdOptions {
    pub id: u64,
}

/// `Cancel`: the commands to cancel.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CancelOptions {
    pub ids: Vec<u64>,
}

/// `GetVersion`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VersionOptions {
    #[serde(rename = "changeID")]
    pub change_id: String,
    #[serde(rename = "minSupported")]
    pub min_supported: i64,
    #[serde(rename = "maxSupported")]
    pub max_supported: i64,
}

/// `SignalExternalWorkflow`, `CancelExternalWorkflow`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ExternalOptions {
    pub namespace: String,
    #[serde(rename = "workflowID")]
    pub workflow_id: String,
    #[serde(rename = "runID")]
    pub run_id: String,
    pub signal: String,
    #[serde(rename = "childWorkflowOnly")]
    pub child_workflow_only: bool,
}

/// `Panic`, `UndefinedResponse`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MessageOptions {
    pub message: String,
}

/// `ExecuteLocalActivity`: rr's `ExecuteLocalActivityOptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LocalActivityOptions {
    pub schedule_to_close_timeout: i64,
    pub start_to_close_timeout: i64,
    pub retry_policy: Option<GoRetryPolicy>,
}

/// `UpdateValidated`, `UpdateCompleted`: the update's id.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UpdateOptions {
    pub id: String,
}
