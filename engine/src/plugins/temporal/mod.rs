//! The `temporal` plugin (spec temporal): the PHP SDK's workflows and activities on
//! Temporal's Rust core. Two pools run `server.command` with `RR_MODE=temporal` and
//! `RR_CODEC=protobuf`: the workflow pool (one worker) and the activity pool
//! (`temporal.activities`). The core runs on a runtime of its own; the bridge turns its
//! activations into the SDK's commands and back ([`workflow`], [`activity`]). The shards only
//! run the pools' execs.

mod activity;
mod commands;
pub mod config;
#[cfg(test)]
mod config_tests;
mod core;
mod payloads;
mod relay;
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

    fn start_pool(section: &PoolSection, ctx: &StartContext<'_>) -> Result<Pool, String> {
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
        let activity_pool = Self::start_pool(&activities, ctx)?;
        let destroy = |pools: Vec<Pool>| {
            ctx.shards.block_on(0, move |_| async move {
                for pool in pools {
                    pool.destroy().await;
                }
            });
        };
        let workflow_pool = match Self::start_pool(&self.workflow_section(), ctx) {
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
