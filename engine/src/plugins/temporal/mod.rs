//! The `temporal` plugin (spec temporal): the PHP SDK's workflows and activities on
//! Temporal's Rust core. Two pools run `server.command` with `RR_MODE=temporal` and
//! `RR_CODEC=protobuf`: the workflow pool (one worker) and the activity pool
//! (`temporal.activities`). The core runs on a runtime of its own; the bridge turns its
//! activations into the SDK's commands and back (modules `workflow` and `activity`). The shards only
//! run the pools' execs.

mod activity;
mod command_options;
mod commands;
pub mod config;
#[cfg(test)]
mod config_tests;
mod core;
mod markers;
mod payloads;
mod relay;
mod replay;
mod resolutions;
mod rpc;
mod worker_info;
mod workflow;

use super::server::{PoolSection, ServerPlugin};
use super::{LocalFuture, Plugin, SectionContext, Service, StartContext};
use crate::config::ConfigError;
use crate::pool::{Pool, WorkerInfo};
use config::{TemporalSection, WORKFLOW_ALLOCATE_TIMEOUT};
use relay::Relay;
use std::any::Any;
use std::sync::Arc;

/// Decodes a workflow worker's reply and translates its commands as a workflow task would
/// (for the fuzz target and tests): the number of core commands and answers it gives.
///
/// # Errors
/// Why the workflow task would fail: a reply that is not a `Frame`, a message that does not
/// decode, options that are not the command's JSON, an unknown command.
pub fn translate_reply(body: &[u8]) -> Result<usize, String> {
    let frame = ringrunner_protocol::temporal::decode_frame(body).map_err(|e| e.to_string())?;
    let mut run = commands::RunState::default();
    let context = commands::RunContext {
        namespace: "default",
        task_queue: "fuzz",
        workflow_id: "fuzz",
    };
    let translated =
        commands::translate(&frame.messages, &mut run, context).map_err(|e| e.to_string())?;
    Ok(translated.commands.len() + translated.immediate.len())
}

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "temporal",
    configure,
};

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("temporal") {
        return Ok(None);
    }
    Ok(Some(Box::new(TemporalPlugin {
        section: TemporalSection::read(ctx.reader, ctx.warnings)?,
    })))
}

/// `temporal`, configured.
#[derive(Debug)]
pub struct TemporalPlugin {
    section: TemporalSection,
}

/// The running plugin.
#[derive(Debug)]
pub struct TemporalService {
    workflow_pool: Pool,
    activity_pool: Pool,
    core: core::TemporalCore,
    bridges: core::Bridges,
    info: worker_info::WorkerInfoSet,
    section: TemporalSection,
}

/// The help texts of the workflow pool's gauges.
const WORKFLOW_POOL_HELP: super::metrics::pool::PoolHelp = super::metrics::pool::PoolHelp {
    prefix: "rr_temporal_workflow",
    total: "Workflow workers (one) of the temporal plugin",
    memory: "Memory usage by the workflow worker.",
    ready: "Workflow workers currently in ready state",
    working: "Workflow workers currently in working state",
    invalid: "Workflow workers currently in invalid,killing,destroyed,errored,inactive states",
};

/// The help texts of the activity pool's gauges.
const ACTIVITY_POOL_HELP: super::metrics::pool::PoolHelp = super::metrics::pool::PoolHelp {
    prefix: "rr_temporal_activity",
    total: "Activity workers of the temporal plugin",
    memory: "Memory usage by activity workers.",
    ready: "Activity workers currently in ready state",
    working: "Activity workers currently in working state",
    invalid: "Activity workers currently in invalid,killing,destroyed,errored,inactive states",
};

/// The env every temporal worker gets besides the pool's (spec "Pools and worker
/// environment"): the SDK picks its protobuf codec from it.
const CODEC_ENV: (&str, &str) = ("RR_CODEC", "protobuf");

impl TemporalPlugin {
    /// The workflow pool's section: one worker, waited for as long as it takes, no
    /// supervisor (rr's `initPool`).
    fn workflow_section(&self) -> PoolSection {
        PoolSection {
            command: self.section.activities.command.clone(),
            num_workers: 1,
            allocate_timeout: WORKFLOW_ALLOCATE_TIMEOUT,
            destroy_timeout: self.section.activities.destroy_timeout,
            ..PoolSection::default()
        }
    }

    /// Starts a pool called `name` (in logs and metrics; its workers' `RR_MODE` is
    /// `temporal` either way).
    fn start_pool(
        name: &str,
        section: &PoolSection,
        ctx: &StartContext<'_>,
    ) -> Result<Pool, String> {
        let server = ctx.get::<ServerPlugin>().ok_or_else(|| {
            "temporal plugin needs the server section (server.command)".to_owned()
        })?;
        let mut config = section
            .pool_config("temporal", &server.section, server.rpc_listen.as_deref())
            .map_err(|error| format!("temporal_plugin_serve: {error}"))?;
        config
            .command
            .env
            .push((CODEC_ENV.0.into(), CODEC_ENV.1.into()));
        name.clone_into(&mut config.name);
        let shards = Arc::clone(ctx.shards);
        ctx.shards
            .block_on(0, move |_| Pool::start(config, shards))
            .map_err(|error| format!("temporal_plugin_serve: {error}"))
    }
}

impl Plugin for TemporalPlugin {
    fn name(&self) -> &'static str {
        "temporal"
    }

    /// rr's order (`initPool`): activity pool, workflow pool, `GetWorkerInfo`, dial, then
    /// one core worker per task queue. Whatever started is stopped again on a failure.
    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        let mut activities = self.section.activities.clone();
        if self.section.disable_activity_workers {
            activities.num_workers = 0;
        }
        let activity_pool = Self::start_pool("temporal", &activities, ctx)?;
        let destroy = |pools: Vec<Pool>| {
            ctx.shards.block_on(0, move |_| async move {
                for pool in pools {
                    pool.destroy().await;
                }
            });
        };
        let workflow_pool =
            match Self::start_pool("temporal_workflow", &self.workflow_section(), ctx) {
                Ok(pool) => pool,
                Err(error) => {
                    destroy(vec![activity_pool]);
                    return Err(error);
                }
            };
        let pools = vec![workflow_pool.clone(), activity_pool.clone()];
        let relay = Relay::new(Arc::clone(ctx.shards));
        match start_core(&self.section, &relay, &workflow_pool, &activity_pool) {
            Ok((core, bridges, info)) => Ok(Arc::new(TemporalService {
                workflow_pool,
                activity_pool,
                core,
                bridges,
                info,
                section: self.section,
            })),
            Err(error) => {
                destroy(pools);
                Err(format!("temporal_plugin_serve: {error}"))
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `GetWorkerInfo`, the dial, the core workers.
fn start_core(
    section: &TemporalSection,
    relay: &Relay,
    workflow_pool: &Pool,
    activity_pool: &Pool,
) -> Result<
    (
        core::TemporalCore,
        core::Bridges,
        worker_info::WorkerInfoSet,
    ),
    String,
> {
    let (core, info) = core::TemporalCore::connect(section, relay, workflow_pool)?;
    let activities_enabled =
        activity_pool.config().num_workers > 0 && !section.disable_activity_workers;
    let bridges = core::Bridges {
        workflows: Arc::new(workflow::WorkflowBridge::new(
            relay.clone(),
            workflow_pool.clone(),
            section.namespace.clone(),
        )),
        activities: activities_enabled.then(|| {
            Arc::new(activity::ActivityBridge::new(
                relay.clone(),
                activity_pool.clone(),
            ))
        }),
        max_activities: activity_pool.config().num_workers,
    };
    core.start_workers(section, &info.task_queues, &bridges)?;
    Ok((core, bridges, info))
}

impl Service for TemporalService {
    fn name(&self) -> &'static str {
        "temporal"
    }

    fn has_workers(&self) -> bool {
        true
    }

    /// The workflow worker first, then the activity workers (rr's `Workers()`).
    fn workers(&self) -> Option<Vec<WorkerInfo>> {
        let mut workers = self.workflow_pool.workers();
        workers.extend(self.activity_pool.workers());
        Some(workers)
    }

    /// `rr reset temporal` (spec "Pools and worker environment"): both pools restarted, the
    /// cached workflows evicted so they replay in the new workflow worker.
    fn reset(&self) -> Option<LocalFuture<'_, ()>> {
        Some(Box::pin(async move {
            tracing::info!("reset signal received, resetting activity and workflow worker pools");
            self.workflow_pool.reset().await;
            tracing::info!("workflow pool restarted");
            self.activity_pool.reset().await;
            tracing::info!("activity pool restarted");
            let runs = self.bridges.workflows.forget_runs();
            self.core.evict(&runs);
        }))
    }

    fn rpc_services(&self) -> Vec<&dyn super::rpc::RpcService> {
        vec![self]
    }

    fn collect(&self, families: &mut Vec<super::metrics::exposition::Family>) {
        use super::metrics::exposition::{Family, Kind};
        use super::metrics::pool::collect_pool;
        collect_pool(&WORKFLOW_POOL_HELP, &self.workflow_pool, families);
        collect_pool(&ACTIVITY_POOL_HELP, &self.activity_pool, families);
        let outcome = |name: &str| vec![("outcome".to_owned(), name.to_owned())];
        let mut tasks = Family::new(
            "rr_temporal_workflow_tasks_total",
            "Workflow activations the workflow worker completed or failed.",
            Kind::Counter,
        );
        let (ok, failed) = self.bridges.workflows.outcomes();
        tasks.push(outcome("completed"), ok as f64);
        tasks.push(outcome("failed"), failed as f64);
        families.push(tasks);
        if let Some(activities) = &self.bridges.activities {
            let mut runs = Family::new(
                "rr_temporal_activities_total",
                "Activities the activity workers completed or failed.",
                Kind::Counter,
            );
            let (ok, failed) = activities.outcomes();
            runs.push(outcome("completed"), ok as f64);
            runs.push(outcome("failed"), failed as f64);
            families.push(runs);
        }
    }

    fn kill(&self) {
        self.workflow_pool.kill_all();
        self.activity_pool.kill_all();
    }

    fn stop(self: Arc<Self>) -> LocalFuture<'static, ()> {
        Box::pin(async move {
            self.core
                .stop_workers(self.section.activities.destroy_timeout)
                .await;
            self.workflow_pool.destroy().await;
            self.activity_pool.destroy().await;
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
