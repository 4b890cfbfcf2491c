//! The PHP SDK's workflow commands (spec temporal "Commands", PHP -> rr) as the core's
//! workflow commands. An SDK command id is the core's sequence number for the command's
//! kind, so the core's resolutions (`ResolveActivity{seq}`, `FireTimer{seq}`, …) come back
//! as responses to the same id.

use super::command_options::{
    ActivityOptions, CancelOptions, ChildOptions, ExternalOptions, IdOptions, LocalActivityOptions,
    MessageOptions, NamedOptions, TimerOptions, UpdateOptions, VersionOptions,
};
use super::payloads::{
    application_failure, failure_of, go_duration, header_of, json_payload, options_of, payloads_of,
    seq_of, MessageError,
};
use ringrunner_protocol::temporal::Message;
use std::collections::{HashMap, HashSet};
use temporalio_common::protos::coresdk::common::NamespacedWorkflowExecution;
use temporalio_common::protos::coresdk::workflow_commands::update_response::Response as UpdateAnswer;
use temporalio_common::protos::coresdk::workflow_commands::{
    signal_external_workflow_execution::Target, workflow_command::Variant,
    CancelChildWorkflowExecution, CancelTimer, CompleteWorkflowExecution,
    ContinueAsNewWorkflowExecution, FailWorkflowExecution, RequestCancelActivity,
    RequestCancelExternalWorkflowExecution, RequestCancelLocalActivity, ScheduleActivity,
    ScheduleLocalActivity, SignalExternalWorkflowExecution, StartChildWorkflowExecution,
    StartTimer, UpdateResponse,
};
use temporalio_common::protos::temporal::api::failure::v1::{
    failure, CanceledFailureInfo, Failure,
};

/// What an open SDK command is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// A timer (`NewTimer`).
    Timer,
    /// An activity (`ExecuteActivity`).
    Activity,
    /// A local activity (`ExecuteLocalActivity`).
    LocalActivity,
    /// A child workflow (`ExecuteChildWorkflow`) with its workflow id.
    Child(String),
    /// A signal or cancel to another workflow.
    External,
}

/// What ringrunner remembers of one workflow run between activations.
#[derive(Debug, Default)]
pub struct RunState {
    /// Open commands by SDK id.
    pub pending: HashMap<u64, Pending>,
    /// `GetChildWorkflowExecution` requests waiting for their child to start: child id ->
    /// request id.
    pub child_waiters: HashMap<u64, u64>,
    /// Children started: child id -> (workflow id, run id).
    pub children_started: HashMap<u64, (String, String)>,
    /// Patches the history has (`NotifyHasPatch`).
    pub patches: HashSet<String>,
    /// The run replays its history now.
    pub replaying: bool,
    /// Updates handed to the worker (`InvokeUpdate`) and not answered yet, by update id.
    pub updates: HashMap<String, OpenUpdate>,
    /// Versions `GetVersion` decided in this run, by change id.
    pub versions: HashMap<String, i64>,
    /// `SideEffect`s met in this run so far (the next one's number).
    pub side_effects: u64,
}

/// An update the workflow worker was asked to validate and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpdate {
    /// The core's handle of the update (its protocol instance).
    pub protocol_instance_id: String,
    /// Whether the validator's verdict counts (false in replay: the update was accepted
    /// before, whatever the validator says now, as rr does).
    pub run_validator: bool,
}

/// Why a command fails the workflow task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A message that does not decode.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A command name ringrunner does not know (rr's text).
    #[error("undefined command name: {0}, possible outdated RoadRunner version")]
    Undefined(String),
    /// The SDK's `Panic`.
    #[error("{0}")]
    Panic(String),
    /// `UpdateValidated`/`UpdateCompleted` without an update id (rr's text; `action` is
    /// `validate` or `complete`).
    #[error("update id is empty, can't {0} update")]
    EmptyUpdateId(&'static str),
    /// A command whose payloads Temporal would refuse: failing the task keeps the workflow
    /// (the server would terminate it), retried until its code sends less.
    #[error(
        "{command}: payloads of {bytes} bytes exceed the {MAX_COMMAND_PAYLOADS_BYTES} bytes Temporal accepts (its limit.blobSize.error); the workflow task fails and is retried until the workflow sends less"
    )]
    PayloadsTooLarge {
        /// The command.
        command: String,
        /// Its payloads' size.
        bytes: usize,
    },
    /// A version `GetVersion` found in history that the code no longer supports (the Go
    /// SDK's texts).
    #[error("{}", unsupported_version(change_id, *version, *min_supported, *max_supported))]
    UnsupportedVersion {
        /// The change.
        change_id: String,
        /// The version history holds.
        version: i64,
        /// The code's range.
        min_supported: i64,
        /// The code's range.
        max_supported: i64,
    },
}

fn unsupported_version(
    change_id: &str,
    version: i64,
    min_supported: i64,
    max_supported: i64,
) -> String {
    if version < min_supported {
        format!(
            "Workflow code removed support of version {version}. for \"{change_id}\" changeID. The oldest supported version is {min_supported}"
        )
    } else {
        format!(
            "Workflow code is too old to support version {version} for \"{change_id}\" changeID. The maximum supported version is {max_supported}"
        )
    }
}

/// The longest retry backoff of a local activity the core waits out itself; a longer one
/// fails the local activity (the PHP SDK's local activities are for short work; a regular
/// activity retries on any schedule).
pub const LOCAL_RETRY_THRESHOLD: std::time::Duration = std::time::Duration::from_secs(60);

/// The most payload bytes one command may carry: Temporal's default blob size limit
/// (`limit.blobSize.error`, 2 MiB). Past it the server terminates the workflow when the
/// command reaches it; ringrunner fails the workflow task instead.
pub const MAX_COMMAND_PAYLOADS_BYTES: usize = 2 * 1024 * 1024;

/// What one batch of commands gives.
#[derive(Debug, Default)]
pub struct Translated {
    /// The core's commands, in order.
    pub commands: Vec<Variant>,
    /// Responses the worker gets at once, in this workflow task (`GetVersion`,
    /// `SideEffect`, `Cancel`, …).
    pub immediate: Vec<Message>,
}

/// The run's workflow task context that commands need.
#[derive(Debug, Clone, Copy)]
pub struct RunContext<'a> {
    /// The namespace the worker runs in.
    pub namespace: &'a str,
    /// The task queue of the run.
    pub task_queue: &'a str,
    /// The workflow id of the run (children's ids derive from it).
    pub workflow_id: &'a str,
}

/// Translates the commands of one reply.
///
/// # Errors
/// A command that does not decode, an unknown one, or the SDK's `Panic`.
pub fn translate(
    messages: &[Message],
    run: &mut RunState,
    context: RunContext<'_>,
) -> Result<Translated, CommandError> {
    let mut out = Translated::default();
    for message in messages.iter().filter(|message| message.is_command()) {
        let bytes = message.payloads.as_ref().map_or(0, Vec::len);
        if bytes > MAX_COMMAND_PAYLOADS_BYTES {
            return Err(CommandError::PayloadsTooLarge {
                command: message.command.clone(),
                bytes,
            });
        }
        translate_one(message, run, context, &mut out)?;
    }
    Ok(out)
}

fn answer(id: u64, payloads: Option<Vec<u8>>) -> Message {
    Message {
        id,
        payloads,
        ..Message::default()
    }
}

fn translate_one(
    message: &Message,
    run: &mut RunState,
    context: RunContext<'_>,
    out: &mut Translated,
) -> Result<(), CommandError> {
    let id = message.id;
    match message.command.as_str() {
        "ExecuteActivity" => {
            run.pending.insert(id, Pending::Activity);
            out.commands.push(schedule_activity(message, context)?);
        }
        "ExecuteLocalActivity" => {
            run.pending.insert(id, Pending::LocalActivity);
            out.commands.push(schedule_local_activity(message)?);
        }
        "UpdateValidated" | "UpdateCompleted" => {
            if let Some(answer) = answer_update(message, run)? {
                out.commands.push(Variant::UpdateResponse(answer));
            }
        }
        "NewTimer" => {
            let options: TimerOptions = options_of(message)?;
            run.pending.insert(id, Pending::Timer);
            out.commands.push(Variant::StartTimer(StartTimer {
                seq: seq_of(id)?,
                start_to_fire_timeout: Some(super::payloads::proto_duration(
                    std::time::Duration::from_millis(options.ms),
                )),
            }));
        }
        "CompleteWorkflow" => out.commands.push(complete_workflow(message)?),
        "ContinueAsNew" => out.commands.push(continue_as_new(message)?),
        "ExecuteChildWorkflow" => {
            let command = start_child(message, context)?;
            run.pending
                .insert(id, Pending::Child(command.workflow_id.clone()));
            out.commands
                .push(Variant::StartChildWorkflowExecution(command));
        }
        "GetChildWorkflowExecution" => {
            let options: IdOptions = options_of(message)?;
            match run.children_started.get(&options.id) {
                Some(started) => out.immediate.push(child_execution(id, started)),
                None => {
                    run.child_waiters.insert(options.id, id);
                }
            }
        }
        "SignalExternalWorkflow" | "CancelExternalWorkflow" => {
            run.pending.insert(id, Pending::External);
            out.commands.push(external_command(message, context)?);
        }
        _ => answer_at_once(message, run, out)?,
    }
    Ok(())
}

/// The commands the worker gets its answer to within the same workflow task.
fn answer_at_once(
    message: &Message,
    run: &mut RunState,
    out: &mut Translated,
) -> Result<(), CommandError> {
    let id = message.id;
    match message.command.as_str() {
        "Cancel" => {
            let options: CancelOptions = options_of(message)?;
            for target in options.ids {
                cancel(target, run, out)?;
            }
            out.immediate.push(answer(
                id,
                super::payloads::encode_payloads(vec![json_payload(&"completed".into())]),
            ));
        }
        "GetVersion" => {
            let options: VersionOptions = options_of(message)?;
            let version = super::markers::get_version(&options, run, &mut out.commands)?;
            out.immediate.push(answer(
                id,
                super::payloads::encode_payloads(vec![json_payload(&version.into())]),
            ));
        }
        "SideEffect" => {
            let value = super::markers::side_effect(message, run, &mut out.commands);
            out.immediate.push(answer(id, value));
        }
        "UpsertWorkflowSearchAttributes" | "UpsertWorkflowTypedSearchAttributes" | "UpsertMemo" => {
            tracing::debug!(
                command = message.command.as_str(),
                "temporal command not forwarded to the server yet"
            );
            out.immediate
                .push(answer(id, super::payloads::encode_payloads(Vec::new())));
        }
        "UndefinedResponse" => {
            let options: MessageOptions = options_of(message)?;
            tracing::warn!(message = options.message.as_str(), "undefined response");
        }
        "Panic" => {
            let options: MessageOptions = options_of(message)?;
            return Err(CommandError::Panic(options.message));
        }
        other => return Err(CommandError::Undefined(other.to_owned())),
    }
    Ok(())
}

fn schedule_activity(message: &Message, context: RunContext<'_>) -> Result<Variant, CommandError> {
    let seq = seq_of(message.id)?;
    let named: NamedOptions<ActivityOptions> = options_of(message)?;
    let options = named.options;
    Ok(Variant::ScheduleActivity(ScheduleActivity {
        seq,
        activity_id: if options.activity_id.is_empty() {
            seq.to_string()
        } else {
            options.activity_id
        },
        activity_type: named.name,
        task_queue: if options.task_queue_name.is_empty() {
            context.task_queue.to_owned()
        } else {
            options.task_queue_name
        },
        headers: header_of(message)?,
        arguments: payloads_of(message)?,
        schedule_to_close_timeout: go_duration(options.schedule_to_close_timeout),
        schedule_to_start_timeout: go_duration(options.schedule_to_start_timeout),
        start_to_close_timeout: go_duration(options.start_to_close_timeout),
        heartbeat_timeout: go_duration(options.heartbeat_timeout),
        retry_policy: options.retry_policy.map(|policy| policy.to_proto()),
        ..ScheduleActivity::default()
    }))
}

/// `ExecuteLocalActivity`: the core runs it on the activity pool (`InvokeLocalActivity`)
/// and records its result in a marker. Its retries back off inside the core up to
/// `LOCAL_RETRY_THRESHOLD`; a longer backoff fails it (see `resolution`).
fn schedule_local_activity(message: &Message) -> Result<Variant, CommandError> {
    let seq = seq_of(message.id)?;
    let named: NamedOptions<LocalActivityOptions> = options_of(message)?;
    let options = named.options;
    Ok(Variant::ScheduleLocalActivity(ScheduleLocalActivity {
        seq,
        activity_id: seq.to_string(),
        activity_type: named.name,
        attempt: 1,
        headers: header_of(message)?,
        arguments: payloads_of(message)?,
        schedule_to_close_timeout: go_duration(options.schedule_to_close_timeout),
        start_to_close_timeout: go_duration(options.start_to_close_timeout),
        retry_policy: options.retry_policy.map(|policy| policy.to_proto()),
        local_retry_threshold: Some(super::payloads::proto_duration(LOCAL_RETRY_THRESHOLD)),
        ..ScheduleLocalActivity::default()
    }))
}

/// The answer the core gets for `UpdateValidated` / `UpdateCompleted` (rr's handler): a
/// failed validation rejects the update (outside replay), a passed one accepts it; a
/// completion completes it with its value, or rejects it with its failure. An id the run
/// never got is ignored with a warning, as rr does.
fn answer_update(
    message: &Message,
    run: &mut RunState,
) -> Result<Option<UpdateResponse>, CommandError> {
    let validated = message.command == "UpdateValidated";
    let options: UpdateOptions = options_of(message)?;
    if options.id.is_empty() {
        return Err(CommandError::EmptyUpdateId(if validated {
            "validate"
        } else {
            "complete"
        }));
    }
    let Some(update) = run.updates.get(&options.id).cloned() else {
        tracing::warn!(
            update_id = options.id.as_str(),
            command = message.command.as_str(),
            "no such update ID, can't answer the update"
        );
        return Ok(None);
    };
    let failure = failure_of(message)?;
    let response = match (validated, failure) {
        (true, Some(failure)) if update.run_validator => {
            run.updates.remove(&options.id);
            UpdateAnswer::Rejected(failure)
        }
        (true, _) => UpdateAnswer::Accepted(()),
        (false, Some(failure)) => {
            run.updates.remove(&options.id);
            UpdateAnswer::Rejected(failure)
        }
        (false, None) => {
            run.updates.remove(&options.id);
            UpdateAnswer::Completed(
                payloads_of(message)?
                    .into_iter()
                    .next()
                    .unwrap_or_else(super::payloads::null_payload),
            )
        }
    };
    Ok(Some(UpdateResponse {
        protocol_instance_id: update.protocol_instance_id,
        response: Some(response),
    }))
}

fn continue_as_new(message: &Message) -> Result<Variant, CommandError> {
    let named: NamedOptions<ChildOptions> = options_of(message)?;
    Ok(Variant::ContinueAsNewWorkflowExecution(
        ContinueAsNewWorkflowExecution {
            workflow_type: named.name,
            task_queue: named.options.task_queue_name,
            arguments: payloads_of(message)?,
            workflow_run_timeout: go_duration(named.options.workflow_run_timeout),
            workflow_task_timeout: go_duration(named.options.workflow_task_timeout),
            headers: header_of(message)?,
            ..ContinueAsNewWorkflowExecution::default()
        },
    ))
}

/// `SignalExternalWorkflow` or `CancelExternalWorkflow`.
fn external_command(message: &Message, context: RunContext<'_>) -> Result<Variant, CommandError> {
    let options: ExternalOptions = options_of(message)?;
    let seq = seq_of(message.id)?;
    if message.command == "CancelExternalWorkflow" {
        return Ok(Variant::RequestCancelExternalWorkflowExecution(
            RequestCancelExternalWorkflowExecution {
                seq,
                workflow_execution: Some(external(&options, context)),
                reason: String::new(),
            },
        ));
    }
    let target = if options.child_workflow_only {
        Target::ChildWorkflowId(options.workflow_id)
    } else {
        Target::WorkflowExecution(external(&options, context))
    };
    Ok(Variant::SignalExternalWorkflowExecution(
        SignalExternalWorkflowExecution {
            seq,
            signal_name: options.signal,
            args: payloads_of(message)?,
            headers: header_of(message)?,
            target: Some(target),
        },
    ))
}

fn complete_workflow(message: &Message) -> Result<Variant, CommandError> {
    if let Some(failure) = failure_of(message)? {
        return Ok(Variant::FailWorkflowExecution(FailWorkflowExecution {
            failure: Some(failure),
        }));
    }
    Ok(Variant::CompleteWorkflowExecution(
        CompleteWorkflowExecution {
            result: payloads_of(message)?.into_iter().next(),
        },
    ))
}

fn start_child(
    message: &Message,
    context: RunContext<'_>,
) -> Result<StartChildWorkflowExecution, CommandError> {
    let named: NamedOptions<ChildOptions> = options_of(message)?;
    let options = named.options;
    let or = |value: String, default: &str| {
        if value.is_empty() {
            default.to_owned()
        } else {
            value
        }
    };
    Ok(StartChildWorkflowExecution {
        seq: seq_of(message.id)?,
        namespace: or(options.namespace, context.namespace),
        workflow_id: or(
            options.workflow_id,
            &format!("{}-child-{}", context.workflow_id, message.id),
        ),
        workflow_type: named.name,
        task_queue: or(options.task_queue_name, context.task_queue),
        input: payloads_of(message)?,
        workflow_execution_timeout: go_duration(options.workflow_execution_timeout),
        workflow_run_timeout: go_duration(options.workflow_run_timeout),
        workflow_task_timeout: go_duration(options.workflow_task_timeout),
        parent_close_policy: options.parent_close_policy,
        workflow_id_reuse_policy: options.workflow_id_reuse_policy,
        retry_policy: options.retry_policy.map(|policy| policy.to_proto()),
        cron_schedule: options.cron_schedule,
        headers: header_of(message)?,
        ..StartChildWorkflowExecution::default()
    })
}

fn external(options: &ExternalOptions, context: RunContext<'_>) -> NamespacedWorkflowExecution {
    NamespacedWorkflowExecution {
        namespace: if options.namespace.is_empty() {
            context.namespace.to_owned()
        } else {
            options.namespace.clone()
        },
        workflow_id: options.workflow_id.clone(),
        run_id: options.run_id.clone(),
    }
}

/// The answer to `GetChildWorkflowExecution` once the child started.
#[must_use]
pub fn child_execution(id: u64, (workflow_id, run_id): &(String, String)) -> Message {
    answer(
        id,
        super::payloads::encode_payloads(vec![json_payload(
            &serde_json::json!({"ID": workflow_id, "RunID": run_id}),
        )]),
    )
}

/// The failure the SDK gets for a command cancelled before it resolved.
#[must_use]
pub fn canceled_failure() -> Failure {
    Failure {
        message: "canceled".to_owned(),
        source: super::payloads::FAILURE_SOURCE.to_owned(),
        failure_info: Some(failure::FailureInfo::CanceledFailureInfo(
            CanceledFailureInfo::default(),
        )),
        ..Failure::default()
    }
}

fn cancel(target: u64, run: &mut RunState, out: &mut Translated) -> Result<(), CommandError> {
    match run.pending.get(&target).cloned() {
        Some(Pending::Timer) => {
            run.pending.remove(&target);
            out.commands.push(Variant::CancelTimer(CancelTimer {
                seq: seq_of(target)?,
            }));
            // The core resolves nothing for a cancelled timer: the SDK's promise gets its
            // cancellation here, as rr gives it.
            out.immediate.push(Message {
                id: target,
                failure: Some(prost::Message::encode_to_vec(&canceled_failure())),
                ..Message::default()
            });
        }
        Some(Pending::Activity) => {
            out.commands
                .push(Variant::RequestCancelActivity(RequestCancelActivity {
                    seq: seq_of(target)?,
                }));
        }
        Some(Pending::LocalActivity) => {
            out.commands.push(Variant::RequestCancelLocalActivity(
                RequestCancelLocalActivity {
                    seq: seq_of(target)?,
                },
            ));
        }
        Some(Pending::Child(_)) => {
            out.commands.push(Variant::CancelChildWorkflowExecution(
                CancelChildWorkflowExecution {
                    child_workflow_seq: seq_of(target)?,
                    reason: String::new(),
                },
            ));
        }
        Some(Pending::External) | None => {}
    }
    Ok(())
}

/// A failure for the workflow task made from `error`.
#[must_use]
pub fn task_failure(error: &dyn std::fmt::Display) -> Failure {
    application_failure(error.to_string(), "RoadRunnerError")
}

#[cfg(test)]
#[path = "commands_tests.rs"]
mod tests;
