//! The workflow side of the bridge: a core activation becomes one frame to the workflow
//! worker (rr's requests `StartWorkflow`, `InvokeSignal`, `InvokeQuery`, `CancelWorkflow`,
//! `DestroyWorkflow`, and the responses to the SDK's open commands), the worker's commands
//! become the activation's completion. Anything wrong with the worker's answer fails this
//! workflow task only (the core retries it), never the server.

use super::commands::{self, CommandError, OpenUpdate, RunContext, RunState};
use super::payloads::{encode_header, encode_payloads, failure_of, nanos_of, MessageError};
use super::relay::{Relay, RelayError};
use super::resolutions::{query_answer, resolution};
use crate::pool::Pool;
use ringrunner_protocol::temporal::{Context, Frame, Message};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use temporalio_common::protos::coresdk::workflow_activation::{
    workflow_activation_job::Variant as Job, DoUpdate, InitializeWorkflow, QueryWorkflow,
    WorkflowActivation,
};
use temporalio_common::protos::coresdk::workflow_commands::workflow_command::Variant;
use temporalio_common::protos::coresdk::workflow_completion::WorkflowActivationCompletion;

/// Exchanges with the worker within one activation: the first frame and the rounds that
/// answer commands at once (`GetVersion`, `SideEffect`, …). A workflow that asks for more
/// in one task is failed instead of looping.
const MAX_ROUNDS_PER_ACTIVATION: usize = 1_000;
/// Temporal's default workflow task timeout: the longest a workflow worker may take over one
/// activation when the run does not say (then it is killed and replaced, and the run
/// replays).
const DEFAULT_WORKFLOW_TASK_TIMEOUT: Duration = Duration::from_secs(10);

/// Temporal's built-in query for a workflow's stack (`temporal workflow stack`).
const STACK_TRACE_QUERY: &str = "__stack_trace";
/// rr's `InvokeUpdate.type`: validate the update, then run its handler.
const UPDATE_TYPE: &str = "validate_execute";

/// Why an activation failed.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// The exchange with the worker.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// A command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A response's content.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The worker answered a request with a failure.
    #[error("{command} failed: {message}")]
    Refused {
        /// rr's request.
        command: &'static str,
        /// The failure's message.
        message: String,
    },
    /// An activation for a run the workflow worker does not have (it was replaced): failing
    /// the task makes the core evict the run and replay it from history.
    #[error("workflow run {0} is not in the workflow worker (replaced); it replays from history")]
    UnknownRun(String),
    /// Commands answered at once, round after round.
    #[error("more than {MAX_ROUNDS_PER_ACTIVATION} rounds of commands in one workflow task")]
    TooManyRounds,
}

/// One run's state, with what is fixed for the run.
#[derive(Debug, Default)]
struct Run {
    state: RunState,
    workflow_id: String,
    /// The workflow task timeout: how long the worker may take over one activation.
    task_timeout: Option<Duration>,
}

/// The workflow side, shared by the core workers of every task queue.
#[derive(Debug)]
pub struct WorkflowBridge {
    relay: Relay,
    pool: Pool,
    namespace: String,
    /// rr's request ids: one counter for every request rr makes (spec §5).
    next_request_id: AtomicU64,
    runs: Mutex<HashMap<String, Run>>,
    /// The workflow worker the runs live in: another PID means it was replaced (killed,
    /// reset) and holds none of them.
    worker_pid: AtomicU32,
    /// Activations completed, and failed (for the metrics).
    completed: AtomicU64,
    failed: AtomicU64,
}

/// rr's requests open within an activation, by id, oldest first.
type OpenRequests = Vec<(u64, Asked)>;

/// A request of rr's in flight within an activation, and what its answer means.
#[derive(Debug)]
enum Asked {
    Query(String),
    Other(&'static str),
}

impl WorkflowBridge {
    /// A bridge to the workflow worker of `pool`.
    #[must_use]
    pub fn new(relay: Relay, pool: Pool, namespace: String) -> Self {
        Self {
            relay,
            namespace,
            worker_pid: AtomicU32::new(workflow_worker_pid(&pool)),
            pool,
            next_request_id: AtomicU64::new(1),
            runs: Mutex::new(HashMap::new()),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Forgets every run and names them (after a reset: the new worker replays them from
    /// history once the core evicted them).
    pub fn forget_runs(&self) -> Vec<String> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.drain().map(|(run_id, _)| run_id).collect()
    }

    /// Runs `activation` through the workflow worker and gives the core its completion; a
    /// failure fails the workflow task (logged), as rr fails it.
    pub async fn activate(
        &self,
        task_queue: &str,
        activation: WorkflowActivation,
    ) -> WorkflowActivationCompletion {
        let run_id = activation.run_id.clone();
        match self.try_activate(task_queue, activation).await {
            Ok(commands) => {
                self.completed.fetch_add(1, Ordering::Relaxed);
                WorkflowActivationCompletion::from_cmds(run_id, commands)
            }
            Err(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    run_id = run_id.as_str(),
                    task_queue,
                    error = %error,
                    "workflow task failed"
                );
                WorkflowActivationCompletion::fail(run_id, commands::task_failure(&error), None)
            }
        }
    }

    /// Activations completed and failed so far.
    pub fn outcomes(&self) -> (u64, u64) {
        (
            self.completed.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Forgets every run when the workflow worker is another process than before.
    fn notice_replaced_worker(&self) {
        let pid = workflow_worker_pid(&self.pool);
        let before = self.worker_pid.swap(pid, Ordering::AcqRel);
        if before != pid {
            let runs = self.forget_runs();
            tracing::warn!(
                old_pid = before,
                new_pid = pid,
                runs = runs.len(),
                "workflow worker replaced, its workflows replay from history"
            );
        }
    }

    fn request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    fn with_run<T>(&self, run_id: &str, f: impl FnOnce(&mut Run) -> T) -> T {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        f(runs.entry(run_id.to_owned()).or_default())
    }

    async fn try_activate(
        &self,
        task_queue: &str,
        activation: WorkflowActivation,
    ) -> Result<Vec<Variant>, ActivationError> {
        let context = context_of(task_queue, &activation);
        let run_id = activation.run_id.clone();
        if activation
            .jobs
            .iter()
            .any(|job| matches!(job.variant, Some(Job::RemoveFromCache(_))))
        {
            self.destroy(&context, &run_id).await;
            return Ok(Vec::new());
        }
        self.notice_replaced_worker();
        let starts = activation
            .jobs
            .iter()
            .any(|job| matches!(job.variant, Some(Job::InitializeWorkflow(_))));
        let known = self
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&run_id);
        if !starts && !known {
            return Err(ActivationError::UnknownRun(run_id));
        }
        let (mut outgoing, mut asked) = self.requests_of(&activation, &context);
        let mut completion = Vec::new();
        for _ in 0..MAX_ROUNDS_PER_ACTIVATION {
            if outgoing.is_empty() {
                return Ok(completion);
            }
            for message in &mut outgoing {
                context.stamp(message);
            }
            let frame = Frame { messages: outgoing };
            let limit = self
                .with_run(&run_id, |run| run.task_timeout)
                .unwrap_or(DEFAULT_WORKFLOW_TASK_TIMEOUT);
            let reply = self
                .relay
                .exchange(&self.pool, &context, &frame, limit)
                .await?;
            self.answers(&reply.messages, &mut asked, &mut completion)?;
            let translated = self.with_run(&run_id, |run| {
                commands::translate(
                    &reply.messages,
                    &mut run.state,
                    RunContext {
                        namespace: &self.namespace,
                        task_queue,
                        workflow_id: &run.workflow_id,
                    },
                )
            })?;
            completion.extend(translated.commands);
            outgoing = translated.immediate;
        }
        Err(ActivationError::TooManyRounds)
    }

    /// Sends `DestroyWorkflow` for an evicted run; its answer does not matter (a worker that
    /// never had the run answers a failure, as after a reset).
    async fn destroy(&self, context: &Context, run_id: &str) {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(run_id);
        let mut message = request(
            self.request_id(),
            "DestroyWorkflow",
            &json!({ "runId": run_id }),
        );
        context.stamp(&mut message);
        let frame = Frame {
            messages: vec![message],
        };
        let exchange =
            self.relay
                .exchange(&self.pool, context, &frame, DEFAULT_WORKFLOW_TASK_TIMEOUT);
        if let Err(error) = exchange.await {
            tracing::debug!(run_id, error = %error, "DestroyWorkflow");
        }
    }

    /// The responses to rr's requests in a reply: query answers become query results; a
    /// failed `StartWorkflow` fails the task. A response without an id (id 0, as SDK 2.8
    /// sends) answers the oldest request still open.
    fn answers(
        &self,
        messages: &[Message],
        asked: &mut OpenRequests,
        completion: &mut Vec<Variant>,
    ) -> Result<(), ActivationError> {
        for message in messages.iter().filter(|message| !message.is_command()) {
            let position = asked
                .iter()
                .position(|(id, _)| *id == message.id)
                .or_else(|| (message.id == 0 && !asked.is_empty()).then_some(0));
            let Some(position) = position else {
                tracing::warn!(
                    id = message.id,
                    "temporal: a response to no open request, ignored"
                );
                continue;
            };
            let (_, what) = asked.remove(position);
            let failure = failure_of(message)?;
            match what {
                Asked::Query(query_id) => {
                    completion.push(query_answer(query_id, failure, message)?);
                }
                Asked::Other(command) => {
                    if let (Some(failure), "StartWorkflow") = (failure, command) {
                        return Err(ActivationError::Refused {
                            command,
                            message: failure.message,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// rr's requests and the responses to the SDK's commands for the jobs of `activation`.
    fn requests_of(
        &self,
        activation: &WorkflowActivation,
        context: &Context,
    ) -> (Vec<Message>, OpenRequests) {
        let run_id = activation.run_id.as_str();
        let mut out = Vec::new();
        let mut asked = Vec::new();
        let mut ask = |out: &mut Vec<Message>, message: Message, what: Asked| {
            asked.push((message.id, what));
            out.push(message);
        };
        self.with_run(run_id, |run| run.state.replaying = context.replay);
        for job in &activation.jobs {
            let Some(variant) = &job.variant else {
                continue;
            };
            match variant {
                Job::InitializeWorkflow(start) => {
                    self.with_run(run_id, |run| {
                        run.workflow_id.clone_from(&start.workflow_id);
                        run.task_timeout = start
                            .workflow_task_timeout
                            .as_ref()
                            .map(|timeout| {
                                Duration::from_nanos(
                                    u64::try_from(nanos_of(Some(timeout))).unwrap_or(0),
                                )
                            })
                            .filter(|timeout| !timeout.is_zero());
                    });
                    let message = start_workflow(self.request_id(), run_id, context, start);
                    ask(&mut out, message, Asked::Other("StartWorkflow"));
                }
                Job::SignalWorkflow(signal) => {
                    let mut message = request(
                        self.request_id(),
                        "InvokeSignal",
                        &json!({"runId": run_id, "name": signal.signal_name}),
                    );
                    message.payloads = encode_payloads(signal.input.clone());
                    message.header = encode_header(signal.headers.clone());
                    ask(&mut out, message, Asked::Other("InvokeSignal"));
                }
                Job::QueryWorkflow(query) => {
                    let message = self.query(run_id, query);
                    ask(&mut out, message, Asked::Query(query.query_id.clone()));
                }
                Job::DoUpdate(update) => {
                    // No answer comes to this request: the SDK sends `UpdateValidated` and
                    // `UpdateCompleted` commands instead (rr's handler).
                    out.push(self.update(run_id, update));
                }
                Job::CancelWorkflow(_) => {
                    let message = request(
                        self.request_id(),
                        "CancelWorkflow",
                        &json!({ "runId": run_id }),
                    );
                    ask(&mut out, message, Asked::Other("CancelWorkflow"));
                }
                Job::NotifyHasPatch(patch) => {
                    self.with_run(run_id, |run| {
                        run.state.patches.insert(patch.patch_id.clone());
                    });
                }
                other => {
                    if let Some(response) =
                        self.with_run(run_id, |run| resolution(other, &mut run.state))
                    {
                        out.extend(response);
                    }
                }
            }
        }
        (out, asked)
    }
}

impl WorkflowBridge {
    /// `InvokeQuery`, or for Temporal's built-in `__stack_trace` query `StackTrace` (rr
    /// asks the worker for its workflow's stack instead).
    fn query(&self, run_id: &str, query: &QueryWorkflow) -> Message {
        if query.query_type == STACK_TRACE_QUERY {
            return request(self.request_id(), "StackTrace", &json!({ "runId": run_id }));
        }
        let mut message = request(
            self.request_id(),
            "InvokeQuery",
            &json!({"runId": run_id, "name": query.query_type}),
        );
        message.payloads = encode_payloads(query.arguments.clone());
        message
    }

    /// `InvokeUpdate` (validate, then execute, as rr asks), remembered until the SDK
    /// answers it.
    fn update(&self, run_id: &str, update: &DoUpdate) -> Message {
        self.with_run(run_id, |run| {
            run.state.updates.insert(
                update.id.clone(),
                OpenUpdate {
                    protocol_instance_id: update.protocol_instance_id.clone(),
                    run_validator: update.run_validator,
                },
            );
        });
        let mut message = request(
            self.request_id(),
            "InvokeUpdate",
            &json!({
                "updateId": update.id,
                "runId": run_id,
                "name": update.name,
                "type": UPDATE_TYPE,
            }),
        );
        message.payloads = encode_payloads(update.input.clone());
        message.header = encode_header(update.headers.clone());
        message
    }
}

fn workflow_worker_pid(pool: &Pool) -> u32 {
    pool.workers().first().map_or(0, |worker| worker.pid)
}

fn request(id: u64, command: &str, options: &serde_json::Value) -> Message {
    Message {
        id,
        command: command.to_owned(),
        options: serde_json::to_vec(options).unwrap_or_default(),
        ..Message::default()
    }
}

/// The context of an activation (spec §4).
fn context_of(task_queue: &str, activation: &WorkflowActivation) -> Context {
    let seconds = activation
        .timestamp
        .as_ref()
        .map_or(0, |timestamp| u64::try_from(timestamp.seconds).unwrap_or(0));
    Context {
        task_queue: task_queue.to_owned(),
        tick_time: rfc3339_utc(seconds),
        replay: activation.is_replaying,
        history_length: i64::from(activation.history_length),
        history_size: i64::try_from(activation.history_size_bytes).unwrap_or(i64::MAX),
        rr_id: activation.run_id.clone(),
        continue_as_new_suggested: activation.continue_as_new_suggested,
    }
}

fn rfc3339_utc(unix_seconds: u64) -> String {
    let c = crate::clock::civil(unix_seconds);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `StartWorkflow` with Go's `workflow.Info` as rr sends it (the fields the SDK reads).
fn start_workflow(id: u64, run_id: &str, context: &Context, start: &InitializeWorkflow) -> Message {
    let info = json!({
        "WorkflowExecution": {"ID": start.workflow_id, "RunID": run_id},
        "OriginalRunID": start.first_execution_run_id,
        "FirstRunID": start.first_execution_run_id,
        "ContinuedExecutionRunID": start.continued_from_execution_run_id,
        "WorkflowType": {"Name": start.workflow_type},
        "TaskQueueName": context.task_queue,
        "WorkflowExecutionTimeout": nanos_of(start.workflow_execution_timeout.as_ref()),
        "WorkflowRunTimeout": nanos_of(start.workflow_run_timeout.as_ref()),
        "WorkflowTaskTimeout": nanos_of(start.workflow_task_timeout.as_ref()),
        "Namespace": "",
        "Attempt": start.attempt,
        "CronSchedule": start.cron_schedule,
        "ParentWorkflowExecution": start.parent_workflow_info.as_ref().map(|parent| json!({"ID": parent.workflow_id, "RunID": parent.run_id})),
        "ParentWorkflowNamespace": start.parent_workflow_info.as_ref().map(|parent| parent.namespace.clone()),
    });
    let mut message = request(
        id,
        "StartWorkflow",
        &json!({"info": info, "lastCompletion": null, "search_attributes": null}),
    );
    message.payloads = encode_payloads(start.arguments.clone());
    message.header = encode_header(start.headers.clone());
    message
}
