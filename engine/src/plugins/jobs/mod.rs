//! The `jobs` plugin (spec tcp-jobs Part B) with the `memory` and `amqp` drivers: pipelines
//! from the config and declared over RPC, a shared priority queue, pollers that run jobs on
//! the jobs pool (`RR_MODE=jobs`) and apply the worker's ack, nack or requeue, the RPC
//! service `jobs` (`jobs.v1` protobuf), the informer's jobs table and `rr jobs`.

mod amqp;
mod memory;
mod pipeline;
mod poller;
pub mod proto;
mod queue;
mod rpc;

use super::server::{PoolSection, ServerPlugin};
use super::{Lifecycle, LocalFuture, Plugin, SectionContext, Service, StartContext};
use crate::config::values::Reader;
use crate::config::yaml::Value;
use crate::config::ConfigError;
use crate::pool::Pool;
use pipeline::Pipeline;
use queue::SharedQueue;
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "jobs",
    configure,
};

/// The `amqp` section's entry: the jobs plugin reads it; alone it starts nothing.
pub const AMQP_ENTRY: super::Entry = super::Entry {
    section: "amqp",
    configure: |ctx| amqp::config::read_connection(ctx.reader).map(|_| None),
};

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("jobs") {
        return Ok(None);
    }
    Ok(Some(Box::new(JobsSection::read(ctx.reader, ctx.warnings)?)))
}

/// A pipeline as configured.
#[derive(Debug, Clone)]
enum PipelineSpec {
    Memory {
        name: String,
        priority: i64,
        prefetch: u64,
    },
    Amqp {
        name: String,
        options: Box<amqp::config::Options>,
    },
}

impl PipelineSpec {
    fn name(&self) -> &str {
        match self {
            Self::Memory { name, .. } | Self::Amqp { name, .. } => name,
        }
    }
}

/// `jobs`.
#[derive(Debug)]
pub struct JobsSection {
    pool: PoolSection,
    pipeline_size: usize,
    consume: Vec<String>,
    pipelines: Vec<PipelineSpec>,
    /// Configured pipelines whose driver is missing or not ours: listed, pushes fail.
    unregistered: BTreeMap<String, String>,
    /// The broker (the `amqp` section) when it is there.
    amqp: Option<amqp::config::Connection>,
    /// `jobs.timeout`: how long a push may wait for a broker.
    timeout: Duration,
}

impl JobsSection {
    /// Reads `jobs`.
    ///
    /// # Errors
    /// A memory pipeline without `config`, a value of the wrong type.
    pub fn read(reader: &Reader<'_>, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        let pool = PoolSection::read(reader, "jobs.pool", warnings)?;
        let _ = reader.has("jobs.num_pollers");
        let timeout = reader
            .seconds("jobs.timeout")?
            .filter(|timeout| !timeout.is_zero())
            .unwrap_or(Duration::from_secs(60));
        let amqp = amqp::config::read_connection(reader)?;
        let _ = reader.has("jobs.options.parallelism");
        let pipeline_size = reader
            .unsigned("jobs.pipeline_size")?
            .filter(|n| *n > 0)
            .unwrap_or(1_000_000);
        let consume = reader.strings("jobs.consume")?.unwrap_or_default();
        let names: Vec<(String, usize)> =
            match reader.node("jobs.pipelines").map(|node| &node.value) {
                Some(Value::Map(entries)) => entries
                    .iter()
                    .map(|(name, node)| (name.clone(), node.line))
                    .collect(),
                _ => Vec::new(),
            };
        let mut pipelines = Vec::new();
        let mut unregistered = BTreeMap::new();
        for (name, line) in names {
            let key = |k: &str| format!("jobs.pipelines.{name}.{k}");
            let driver = reader.string(&key("driver"))?.unwrap_or_default();
            let supported = match driver.as_str() {
                "memory" => true,
                "amqp" => amqp.is_some(),
                _ => false,
            };
            if !supported {
                let why = if driver == "amqp" {
                    "can't find driver constructor for the pipeline (the amqp section is missing)"
                        .to_owned()
                } else {
                    format!("driver {driver:?} is not supported by ringrunner yet (memory and amqp are)")
                };
                warnings.push(format!("jobs.pipelines.{name}: {why}; pushes to it fail"));
                let _ = reader.has(&key("config"));
                unregistered.insert(name, driver);
                continue;
            }
            if !reader.has(&key("config")) {
                return Err(ConfigError {
                    path: key("config"),
                    line,
                    message: format!(
                        "config not found by provided key: jobs.pipelines.{name}.config"
                    ),
                });
            }
            if let Some(broker) = amqp.as_ref().filter(|_| driver == "amqp") {
                let options = amqp::config::Options::read(reader, &name, &broker.addr)?;
                pipelines.push(PipelineSpec::Amqp {
                    name,
                    options: Box::new(options),
                });
                continue;
            }
            let priority = reader
                .unsigned(&key("config.priority"))?
                .or(reader.unsigned(&key("priority"))?)
                .unwrap_or(10);
            let prefetch = reader.unsigned(&key("config.prefetch"))?.unwrap_or(100_000);
            pipelines.push(PipelineSpec::Memory {
                name,
                priority: i64::try_from(priority).unwrap_or(i64::MAX),
                prefetch,
            });
        }
        Ok(Self {
            pool,
            pipeline_size: usize::try_from(pipeline_size).unwrap_or(usize::MAX),
            consume,
            pipelines,
            unregistered,
            amqp,
            timeout,
        })
    }
}

/// The help texts of the jobs pool's gauges, as rr words them.
const JOBS_POOL_HELP: super::metrics::pool::PoolHelp = super::metrics::pool::PoolHelp {
    prefix: "rr_jobs",
    total: "Total number of workers used by the plugin",
    memory: "Memory usage by workers.",
    ready: "Workers currently in ready state",
    working: "Workers currently in working state",
    invalid: "Workers currently in invalid,killing,destroyed,errored,inactive states",
};

/// rr's jobs counters (`rr_jobs_*`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Jobs the workers acknowledged.
    pub jobs_ok: AtomicU64,
    /// Jobs that failed (worker error, nack, protocol error).
    pub jobs_err: AtomicU64,
    /// Pushes accepted.
    pub push_ok: AtomicU64,
    /// Pushes refused.
    pub push_err: AtomicU64,
    /// Per (pipeline, source): pushes attempted and the latency of those accepted (rr's
    /// `requests_total` and `push_latency`, labelled `job`, `driver`, `source`). Pushes come
    /// over RPC, not on the hot path: a lock is fine.
    pub pushes: Mutex<BTreeMap<(String, &'static str, &'static str), PushSeries>>,
}

/// Prometheus' default buckets, for `rr_jobs_push_latency`.
const PUSH_LATENCY_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One (pipeline, source)'s push figures.
#[derive(Debug, Default)]
pub struct PushSeries {
    requests: u64,
    per_bucket: [u64; PUSH_LATENCY_BOUNDS.len()],
    count: u64,
    sum: f64,
}

impl Counters {
    /// Records a push attempt to `pipeline` (on `driver`) from `source` (`single`,
    /// `batch`); `took` when it was accepted.
    pub fn push(
        &self,
        pipeline: &str,
        driver: &'static str,
        source: &'static str,
        took: Option<Duration>,
    ) {
        let mut pushes = self.pushes.lock().unwrap_or_else(PoisonError::into_inner);
        let series = pushes
            .entry((pipeline.to_owned(), driver, source))
            .or_default();
        series.requests += 1;
        if let Some(took) = took {
            let seconds = took.as_secs_f64();
            if let Some(bucket) = PUSH_LATENCY_BOUNDS
                .iter()
                .position(|bound| seconds <= *bound)
            {
                series.per_bucket[bucket] += 1;
            }
            series.count += 1;
            series.sum += seconds;
        }
    }

    fn collect(&self, families: &mut Vec<super::metrics::exposition::Family>) {
        use super::metrics::exposition::{Family, Kind};
        for (name, help, counter) in [
            (
                "rr_jobs_jobs_ok",
                "Number of successfully processed jobs",
                &self.jobs_ok,
            ),
            (
                "rr_jobs_jobs_err",
                "Number of jobs error while processing in the worker",
                &self.jobs_err,
            ),
            ("rr_jobs_push_ok", "Number of job push", &self.push_ok),
            (
                "rr_jobs_push_err",
                "Number of jobs push which was failed",
                &self.push_err,
            ),
        ] {
            families.push(Family::single(
                name,
                help,
                Kind::Counter,
                counter.load(Ordering::Relaxed) as f64,
            ));
        }
        let mut requests = Family::new(
            "rr_jobs_requests_total",
            "The total number of requests sent to the JOBS plugin",
            Kind::Counter,
        );
        let mut latency = Family::new(
            "rr_jobs_push_latency",
            "Histogram represents latency for pushed operation",
            Kind::Histogram,
        );
        for ((pipeline, driver, source), series) in self
            .pushes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let labels = vec![
                ("driver".to_owned(), (*driver).to_owned()),
                ("job".to_owned(), pipeline.clone()),
                ("source".to_owned(), (*source).to_owned()),
            ];
            requests.push(labels.clone(), series.requests as f64);
            if series.count > 0 {
                let cumulative = crate::stats::running_sums(&series.per_bucket);
                latency.push_histogram(
                    &labels,
                    &PUSH_LATENCY_BOUNDS,
                    &cumulative,
                    series.sum,
                    series.count,
                );
            }
        }
        families.push(requests);
        families.push(latency);
    }
}

/// What the RPC service, the pollers and the plugin share.
#[derive(Debug)]
pub struct JobsShared {
    pool: Pool,
    queue: Arc<SharedQueue>,
    pipelines: Mutex<BTreeMap<String, Arc<Pipeline>>>,
    unregistered: Mutex<BTreeMap<String, String>>,
    consume: Vec<String>,
    stopping: AtomicBool,
    stop: Notify,
    in_flight: AtomicUsize,
    idle: Notify,
    counters: Counters,
    lifecycle: Arc<Lifecycle>,
    /// The AMQP client's runtime, when the `amqp` section is there.
    amqp: Option<AmqpBroker>,
}

/// The broker's address and the runtime its client runs on.
#[derive(Debug)]
struct AmqpBroker {
    addr: String,
    /// Why no pipeline may dial it (see [`amqp::config::Connection::refusal`]).
    refusal: Option<String>,
    timeout: Duration,
    runtime: amqp::AmqpRuntime,
}

impl JobsShared {
    fn pipelines(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Pipeline>>> {
        self.pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Creates a configured pipeline, consuming when `jobs.consume` lists it; an amqp one dials
/// its broker first (rr's serve fails when it cannot).
fn start_pipeline(
    shared: &Arc<JobsShared>,
    ctx: &StartContext<'_>,
    spec: PipelineSpec,
) -> Result<(), String> {
    let name = spec.name().to_owned();
    let consume = shared.consume.contains(&name);
    let pipeline = match spec {
        PipelineSpec::Memory {
            name,
            priority,
            prefetch,
        } => {
            let pipeline = Pipeline::memory(&name, priority, prefetch);
            if consume {
                let queue = Arc::clone(&shared.queue);
                let running = Arc::clone(&pipeline);
                ctx.shards
                    .block_on(0, move |_| async move { running.run(&queue).await })?;
            }
            pipeline
        }
        PipelineSpec::Amqp { name, options } => {
            let Some(broker) = &shared.amqp else {
                return Err(format!("jobs.pipelines.{name}: no amqp section"));
            };
            if let Some(refusal) = &broker.refusal {
                return Err(format!("jobs.pipelines.{name}: {refusal}"));
            }
            let pipeline = amqp::Amqp::pipeline(
                &name,
                *options,
                broker.timeout,
                &shared.queue,
                broker.runtime.handle(),
            );
            if let pipeline::Driver::Amqp(driver) = &pipeline.driver {
                broker
                    .runtime
                    .block_on(driver.connect(consume))
                    .map_err(|error| format!("jobs.pipelines.{name}: {error}"))?;
            }
            pipeline
        }
    };
    shared.pipelines().insert(name, pipeline);
    Ok(())
}

/// Stops every pipeline (a failed start's, before the error is returned).
fn stop_pipelines(shared: &Arc<JobsShared>, ctx: &StartContext<'_>) {
    let shared = Arc::clone(shared);
    ctx.shards.block_on(0, move |_| async move {
        let pipelines: Vec<_> = std::mem::take(&mut *shared.pipelines())
            .into_values()
            .collect();
        for pipeline in pipelines {
            pipeline.stop(&shared.queue).await;
        }
    });
}

/// The running plugin.
#[derive(Debug)]
pub struct JobsPlugin {
    shared: Arc<JobsShared>,
}

impl Plugin for JobsSection {
    fn name(&self) -> &'static str {
        "jobs"
    }

    /// Creates the pipelines (consuming those in `consume`), the pool, then the pollers.
    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        let section = self.pool.clone();
        ServerPlugin::run_with_pool("jobs", &section, ctx, |pool| {
            let pollers = pool.config().num_workers + 2;
            let amqp = match self.amqp {
                Some(connection) => Some(AmqpBroker {
                    addr: connection.addr,
                    refusal: connection.refusal,
                    timeout: self.timeout,
                    runtime: amqp::AmqpRuntime::start()?,
                }),
                None => None,
            };
            let shared = Arc::new(JobsShared {
                pool,
                queue: Arc::new(SharedQueue::new(self.pipeline_size)),
                pipelines: Mutex::new(BTreeMap::new()),
                unregistered: Mutex::new(self.unregistered),
                consume: self.consume,
                stopping: AtomicBool::new(false),
                stop: Notify::new(),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
                counters: Counters::default(),
                lifecycle: Arc::clone(ctx.lifecycle),
                amqp,
            });
            let started = self
                .pipelines
                .into_iter()
                .try_for_each(|spec| start_pipeline(&shared, ctx, spec));
            if let Err(error) = started {
                stop_pipelines(&shared, ctx);
                return Err(error);
            }
            for index in 0..pollers {
                let shared = Arc::clone(&shared);
                ctx.shards
                    .spawn_on(index, move |shard| poller::poll(shared, shard));
            }
            Ok(Arc::new(JobsPlugin { shared }) as Arc<dyn Service>)
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Service for JobsPlugin {
    fn name(&self) -> &'static str {
        "jobs"
    }

    fn pool(&self) -> Option<&Pool> {
        Some(&self.shared.pool)
    }

    fn jobs(&self) -> Option<LocalFuture<'_, serde_json::Value>> {
        Some(Box::pin(async move {
            let stats = rpc::stats(&self.shared).await;
            serde_json::Value::Array(
                stats
                    .iter()
                    .filter_map(|stat| {
                        stat.as_ref()
                            .inspect_err(|error| {
                                tracing::warn!(target: "jobs", %error, "a pipeline's state is not known");
                            })
                            .ok()
                    })
                    .map(rpc::stat_json)
                    .collect(),
            )
        }))
    }

    /// Stops the pollers (each finishes the job in hand), the pipelines (what they still
    /// hold is lost: memory is not persistent), then the pool.
    fn stop(self: Arc<Self>) -> LocalFuture<'static, ()> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.stopping.store(true, Ordering::Release);
            shared.stop.notify_waiters();
            // Each poller wakes `idle` when it puts a job down; a waiter made before the
            // check hears it.
            loop {
                let idle = shared.idle.notified();
                if shared.in_flight.load(Ordering::Acquire) == 0 {
                    break;
                }
                idle.await;
            }
            let pipelines: Vec<_> = shared.pipelines().values().cloned().collect();
            for pipeline in pipelines {
                pipeline.stop(&shared.queue).await;
            }
            shared.pool.destroy().await;
        })
    }

    fn collect(&self, families: &mut Vec<super::metrics::exposition::Family>) {
        super::metrics::pool::collect_pool(&JOBS_POOL_HELP, &self.shared.pool, families);
        self.shared.counters.collect(families);
    }

    fn rpc_services(&self) -> Vec<&dyn super::rpc::RpcService> {
        vec![self]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
