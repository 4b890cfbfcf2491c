//! The ceiling `benches/temporal/run` compares the temporal plugin with: the same workflow
//! and activity as the PHP test worker (`GreetWorkflow(name)` runs the activity
//! `Greet(name)` and returns its result, `"Hello, <name>!"`), written in Rust straight on
//! Temporal's core (`temporalio-sdk-core` 0.10, the version the plugin runs on) with no PHP
//! and no pipes. This is what the Rust SDK (`temporalio-sdk`) does under its workflow macros:
//! poll a workflow activation, answer it with commands; poll an activity task, complete it.
//! (`temporalio-sdk` 1.1.1, the only release, pins core 0.10.1: a second core in the
//! workspace's build for one benchmark binary.) The worker's limits match the plugin's:
//! the same sticky cache, 16 workflow tasks and `ACTIVITY_SLOTS` activities at once.
//!
//! Usage: `temporal-native-worker ADDRESS TASK_QUEUE [ACTIVITY_SLOTS]`; prints `ready` once
//! the worker polls, runs until killed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use temporalio_client::{Connection, ConnectionOptions};
use temporalio_common::protos::coresdk::activity_result::activity_resolution::Status as Resolution;
use temporalio_common::protos::coresdk::activity_result::{
    activity_execution_result, ActivityExecutionResult, Success,
};
use temporalio_common::protos::coresdk::activity_task::{activity_task, ActivityTask};
use temporalio_common::protos::coresdk::workflow_activation::{
    workflow_activation_job::Variant as Job, WorkflowActivation,
};
use temporalio_common::protos::coresdk::workflow_commands::{
    workflow_command::Variant as Command, CompleteWorkflowExecution, FailWorkflowExecution,
    ScheduleActivity,
};
use temporalio_common::protos::coresdk::workflow_completion::WorkflowActivationCompletion;
use temporalio_common::protos::coresdk::ActivityTaskCompletion;
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use temporalio_common::worker::WorkerTaskTypes;
use temporalio_sdk_core::{
    init_worker, CoreRuntime, RuntimeOptions, Url, Worker, WorkerConfig, WorkerVersioningStrategy,
};

/// The plugin's defaults (`temporal.cache_size`, its `MAX_OUTSTANDING_WORKFLOW_TASKS`).
const CACHE_SIZE: usize = 10_000;
const MAX_OUTSTANDING_WORKFLOW_TASKS: usize = 16;
/// The PHP worker's activity options (`Workflow::activity`): 10 s start to close.
const START_TO_CLOSE: Duration = Duration::from_secs(10);
/// The only activity's sequence number in a run.
const GREET_SEQ: u32 = 1;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(task_queue)) = (args.next(), args.next()) else {
        return Err("usage: temporal-native-worker ADDRESS TASK_QUEUE [ACTIVITY_SLOTS]".into());
    };
    let activity_slots: usize = args.next().map_or(Ok(4), |slots| slots.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let core_runtime = {
        let _entered = runtime.enter();
        CoreRuntime::new_assume_tokio(RuntimeOptions::builder().heartbeat_interval(None).build()?)?
    };
    runtime.block_on(async move {
        let url = Url::parse(&format!("http://{address}"))?;
        let connection = Connection::connect(
            ConnectionOptions::new(url)
                .identity(format!("native:{}", std::process::id()))
                .build(),
        )
        .await?;
        let config = WorkerConfig::builder()
            .namespace("default".to_owned())
            .task_queue(task_queue.clone())
            .max_cached_workflows(CACHE_SIZE)
            .max_outstanding_workflow_tasks(MAX_OUTSTANDING_WORKFLOW_TASKS)
            .max_outstanding_activities(activity_slots.max(1))
            .max_outstanding_local_activities(1_usize)
            .max_outstanding_nexus_tasks(1_usize)
            .versioning_strategy(WorkerVersioningStrategy::None {
                build_id: String::new(),
            })
            .task_types(WorkerTaskTypes {
                enable_workflows: true,
                enable_local_activities: false,
                enable_remote_activities: true,
                enable_nexus: false,
            })
            .build()?;
        let worker = Arc::new(init_worker(&core_runtime, config, connection)?);
        println!("ready");
        let activities = tokio::spawn(poll_activities(Arc::clone(&worker)));
        poll_workflows(worker, task_queue).await?;
        activities.await?
    })
}

async fn poll_workflows(worker: Arc<Worker>, task_queue: String) -> Result<(), Error> {
    loop {
        let activation = worker.poll_workflow_activation().await?;
        let (worker, task_queue) = (Arc::clone(&worker), task_queue.clone());
        tokio::spawn(async move {
            let completion = WorkflowActivationCompletion::from_cmds(
                activation.run_id.clone(),
                greet_workflow(&activation, &task_queue),
            );
            if let Err(error) = worker.complete_workflow_activation(completion).await {
                eprintln!("completing a workflow activation: {error}");
            }
        });
    }
}

/// `GreetWorkflow`'s commands for one activation: the activity when it starts, the
/// activity's result (or failure) as the workflow's when it resolves.
fn greet_workflow(activation: &WorkflowActivation, task_queue: &str) -> Vec<Command> {
    let mut commands = Vec::new();
    for job in activation
        .jobs
        .iter()
        .filter_map(|job| job.variant.as_ref())
    {
        match job {
            Job::InitializeWorkflow(start) => {
                commands.push(Command::ScheduleActivity(ScheduleActivity {
                    seq: GREET_SEQ,
                    activity_id: GREET_SEQ.to_string(),
                    activity_type: "Greet".to_owned(),
                    task_queue: task_queue.to_owned(),
                    arguments: start.arguments.clone(),
                    start_to_close_timeout: Some(prost_wkt_types::Duration {
                        seconds: i64::try_from(START_TO_CLOSE.as_secs()).unwrap_or(i64::MAX),
                        nanos: 0,
                    }),
                    ..ScheduleActivity::default()
                }));
            }
            Job::ResolveActivity(resolved) => {
                match resolved.result.as_ref().and_then(|r| r.status.as_ref()) {
                    Some(Resolution::Completed(success)) => {
                        commands.push(Command::CompleteWorkflowExecution(
                            CompleteWorkflowExecution {
                                result: success.result.clone(),
                            },
                        ));
                    }
                    Some(Resolution::Failed(failed)) => {
                        commands.push(Command::FailWorkflowExecution(FailWorkflowExecution {
                            failure: failed.failure.clone(),
                        }));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    commands
}

async fn poll_activities(worker: Arc<Worker>) -> Result<(), Error> {
    loop {
        let task = worker.poll_activity_task().await?;
        let worker = Arc::clone(&worker);
        tokio::spawn(async move {
            let Some(completion) = greet(task) else {
                return;
            };
            if let Err(error) = worker.complete_activity_task(completion).await {
                eprintln!("completing an activity task: {error}");
            }
        });
    }
}

/// The `Greet` activity: `"Hello, <name>!"` for its JSON string argument.
fn greet(task: ActivityTask) -> Option<ActivityTaskCompletion> {
    let Some(activity_task::Variant::Start(start)) = task.variant else {
        return None;
    };
    let name = start
        .input
        .first()
        .and_then(|payload| serde_json::from_slice::<String>(&payload.data).ok());
    let status = match name {
        Some(name) => activity_execution_result::Status::Completed(Success {
            result: Some(json_payload(&format!("Hello, {name}!"))),
        }),
        None => activity_execution_result::Status::Failed(
            temporalio_common::protos::coresdk::activity_result::Failure {
                failure: Some(Failure {
                    message: "Greet takes one JSON string".to_owned(),
                    ..Failure::default()
                }),
                ..Default::default()
            },
        ),
    };
    Some(ActivityTaskCompletion {
        task_token: task.task_token,
        result: Some(ActivityExecutionResult {
            status: Some(status),
        }),
    })
}

fn json_payload(value: &str) -> Payload {
    Payload {
        metadata: HashMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
        data: serde_json::to_vec(value).unwrap_or_default(),
        ..Payload::default()
    }
}
