//! The `service` plugin (spec service): long-running side processes and PID-file daemons,
//! supervised (restart policies, backoff, start limits), started by priority and stopped in
//! reverse, controlled over RPC (`service.Create`, `Terminate`, `Restart`, `Status`,
//! `Statuses`, `List` as rr, and `Start`, `Stop`, `Describe` for `rr service`).

pub mod config;
mod daemon;
mod output;
mod process;
mod proto;
mod record;
mod rpc;
mod stop;
mod supervisor;

use super::rpc::RpcService;
use super::{LocalFuture, Plugin, SectionContext, Service, StartContext};
use crate::config::yaml::Value;
use crate::config::ConfigError;
use crate::pool::{WorkerInfo, WorkerState};
use crate::runtime::Shards;
use config::ServiceSpec;
use record::{Phase, ProcessRecord};
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "service",
    configure,
};

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("service") {
        return Ok(None);
    }
    let names: Vec<String> = match ctx.reader.node("service").map(|node| &node.value) {
        Some(Value::Map(entries)) => entries.iter().map(|(name, _)| name.clone()).collect(),
        _ => Vec::new(),
    };
    let mut specs = Vec::with_capacity(names.len());
    for name in names {
        let mut spec = ServiceSpec::read(ctx.reader, &name, ctx.env)?;
        // rr's environment after the dotenv file, then the service's own.
        spec.env.splice(0..0, ctx.inherited_env.iter().cloned());
        specs.push(spec);
    }
    Ok(Some(Box::new(ServiceSection { specs })))
}

/// `service`: the configured services.
#[derive(Debug)]
pub struct ServiceSection {
    specs: Vec<ServiceSpec>,
}

/// A service running (or stopped but known): its spec and its processes.
#[derive(Debug)]
struct ServiceRun {
    spec: Arc<ServiceSpec>,
    processes: Vec<Arc<ProcessRecord>>,
}

/// The running plugin.
#[derive(Debug)]
pub struct ServicePlugin {
    shards: Arc<Shards>,
    /// Services by name (configured and created over RPC).
    services: Mutex<BTreeMap<String, ServiceRun>>,
    /// The configured specs, for `Start` after a `Stop`.
    configured: BTreeMap<String, Arc<ServiceSpec>>,
    /// Set (under the `services` lock) when rr's stop has taken the list of processes to
    /// stop: a launch after it would start processes nobody stops.
    closed: AtomicBool,
}

impl Plugin for ServiceSection {
    fn name(&self) -> &'static str {
        "service"
    }

    /// Starts the services by `priority`, lowest first, a group at a time: the next group
    /// starts when every process of this one has passed its start check. A start that
    /// fails stops what started and fails `rr serve`.
    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        let configured = self
            .specs
            .iter()
            .map(|spec| (spec.name.clone(), Arc::new(spec.clone())))
            .collect();
        let plugin = Arc::new(ServicePlugin {
            shards: Arc::clone(ctx.shards),
            services: Mutex::new(BTreeMap::new()),
            configured,
            closed: AtomicBool::new(false),
        });
        let mut specs = self.specs;
        specs.sort_by_key(|spec| spec.priority);
        let mut index = 0;
        while index < specs.len() {
            let priority = specs[index].priority;
            let mut waits = Vec::new();
            while index < specs.len() && specs[index].priority == priority {
                let spec = Arc::new(specs[index].clone());
                // Configured names are the keys of one map: each is new.
                waits.extend(plugin.launch(spec, Launch::New)?);
                index += 1;
            }
            for wait in waits {
                if let Err(error) = wait
                    .blocking_recv()
                    .unwrap_or_else(|_| Err("service start was abandoned".into()))
                {
                    let stopping = Arc::clone(&plugin);
                    ctx.shards
                        .block_on(0, move |_| async move { stopping.stop_all().await });
                    return Err(error);
                }
            }
        }
        Ok(plugin)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What a launch may find registered under its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Launch {
    /// A new name (configured, or `service.Create`): one registered already is an error.
    New,
    /// Again (`Start`, `Restart`): a service whose processes are all finished gets new
    /// ones; one still supervised is left as it is.
    Again,
}

impl ServicePlugin {
    /// Registers `spec`'s processes and starts them (supervised on the shards), the check of
    /// what is registered and the registration in one step under the map's lock, so two
    /// concurrent launches for one name cannot both start processes; gives a receiver per
    /// process for how its first start went (none when `Again` found it supervised).
    ///
    /// # Errors
    /// rr's text when `New` finds the name registered; an error once rr's stop has begun.
    fn launch(
        &self,
        spec: Arc<ServiceSpec>,
        launch: Launch,
    ) -> Result<Vec<oneshot::Receiver<Result<(), String>>>, String> {
        let mut services = self.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(format!("service {}: rr is stopping", spec.name));
        }
        if let Some(run) = services.get(&spec.name) {
            if launch == Launch::New {
                return Err(format!(
                    "the service with {} name already exists",
                    spec.name
                ));
            }
            if run.processes.iter().any(|record| !record.is_finished()) {
                return Ok(Vec::new());
            }
        }
        let mut waits = Vec::with_capacity(spec.process_num);
        let mut processes = Vec::with_capacity(spec.process_num);
        for copy in 0..spec.process_num {
            let record = ProcessRecord::new(&spec.command);
            let (sender, receiver) = oneshot::channel();
            let (task_spec, task_record) = (Arc::clone(&spec), Arc::clone(&record));
            // spawn_on only queues the task: nothing here waits on the shards under the lock.
            let started = self.shards.spawn_on(copy, move |shard| {
                supervisor::supervise(task_spec, task_record, Some(sender), shard.backend())
            });
            if started {
                processes.push(record);
                waits.push(receiver);
            }
        }
        services.insert(spec.name.clone(), ServiceRun { spec, processes });
        Ok(waits)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ServiceRun>> {
        self.services.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops every service: by priority, highest first, each group's processes at once.
    async fn stop_all(&self) {
        let mut groups: BTreeMap<i64, Vec<Arc<ProcessRecord>>> = BTreeMap::new();
        {
            let services = self.lock();
            self.closed.store(true, Ordering::Release);
            for run in services.values() {
                groups
                    .entry(run.spec.priority)
                    .or_default()
                    .extend(run.processes.iter().cloned());
            }
        }
        let (mut stopped, mut failed) = (0, 0);
        for (_, records) in groups.into_iter().rev() {
            for record in &records {
                record.request_stop();
            }
            for record in &records {
                record.finished().await;
                if record.info().phase == Phase::Error {
                    failed += 1;
                } else {
                    stopped += 1;
                }
            }
        }
        tracing::info!(target: "service", stopped, failed, "stop all finished");
    }

    /// Stops the processes of `name` and waits for them; the service stays registered.
    async fn stop_service(&self, name: &str) -> Result<(), String> {
        let records = self.records(name)?;
        for record in &records {
            record.request_stop();
        }
        for record in &records {
            record.finished().await;
        }
        Ok(())
    }

    fn records(&self, name: &str) -> Result<Vec<Arc<ProcessRecord>>, String> {
        self.lock()
            .get(name)
            .map(|run| run.processes.clone())
            .ok_or_else(|| format!("the service with {name} name doesn't exist"))
    }

    /// Stops and starts `name` again with its stored spec.
    async fn restart(&self, name: &str) -> Result<(), String> {
        let spec = self
            .lock()
            .get(name)
            .map(|run| Arc::clone(&run.spec))
            .ok_or_else(|| format!("the service with {name} name doesn't exist"))?;
        self.stop_service(name).await?;
        self.start_spec(spec, Launch::Again).await
    }

    /// Starts `spec` and waits for the first start of each process; a failure stops the
    /// others and unregisters the service.
    ///
    /// # Errors
    /// As [`ServicePlugin::launch`], or the first start's error.
    async fn start_spec(&self, spec: Arc<ServiceSpec>, launch: Launch) -> Result<(), String> {
        let name = spec.name.clone();
        for wait in self.launch(spec, launch)? {
            if let Err(error) = wait
                .await
                .unwrap_or_else(|_| Err("service start was abandoned".into()))
            {
                let _ = self.stop_service(&name).await;
                self.lock().remove(&name);
                return Err(error);
            }
        }
        Ok(())
    }
}

impl Service for ServicePlugin {
    fn name(&self) -> &'static str {
        "service"
    }

    fn has_workers(&self) -> bool {
        true
    }

    fn workers(&self) -> Option<Vec<WorkerInfo>> {
        let services = self.lock();
        Some(
            services
                .values()
                .flat_map(|run| run.processes.iter())
                .map(|record| record.info())
                .filter(|info| info.phase.is_up() && info.pid != 0)
                .map(|info| WorkerInfo {
                    pid: info.pid,
                    state: WorkerState::Ready,
                    num_execs: 0,
                    created_unix_ns: 0,
                    memory_usage: crate::worker::process::rss_bytes(info.pid).unwrap_or(0),
                    cpu_percent: cpu_percent(info.pid, info.since),
                    command: info.command,
                })
                .collect(),
        )
    }

    fn reset(&self) -> Option<LocalFuture<'_, ()>> {
        Some(Box::pin(async move {
            let names: Vec<String> = self.lock().keys().cloned().collect();
            for name in names {
                if let Err(error) = self.restart(&name).await {
                    tracing::error!(target: "service", name, %error, "unable to start the service");
                }
            }
        }))
    }

    fn stop(self: Arc<Self>) -> LocalFuture<'static, ()> {
        Box::pin(async move { self.stop_all().await })
    }

    fn kill(&self) {
        for run in self.lock().values() {
            for record in &run.processes {
                let info = record.info();
                if info.phase.is_up() && info.pid != 0 {
                    let _ = process::signal_pid(
                        info.pid,
                        rustix::process::Signal::KILL,
                        run.spec.kill_group,
                    );
                }
            }
        }
    }

    fn rpc_services(&self) -> Vec<&dyn RpcService> {
        vec![self]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// CPU over the process's life, percent of one core.
pub(super) fn cpu_percent(pid: u32, since: Option<std::time::Instant>) -> f64 {
    let lived = since.map_or(0.0, |since| since.elapsed().as_secs_f64());
    crate::worker::process::cpu_seconds(pid)
        .filter(|_| lived > 0.0)
        .map_or(0.0, |spent| spent / lived * 100.0)
}
