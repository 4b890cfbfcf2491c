//! Temporal's Rust core on a runtime of its own (thread `temporal`): the client connection,
//! one core worker per task queue the PHP SDK registered, and their poll loops, which hand
//! activations and activity tasks to the bridge.

use super::activity::ActivityBridge;
use super::config::{MetricsSection, TemporalSection, TlsSection};
use super::relay::Relay;
use super::worker_info::WorkerInfoSet;
use super::workflow::WorkflowBridge;
use crate::pool::Pool;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use temporalio_client::{Connection, ConnectionOptions};
use temporalio_common::telemetry::{
    start_prometheus_metric_exporter, PrometheusExporterOptions, TelemetryOptions,
};
use temporalio_common::worker::WorkerTaskTypes;
use temporalio_sdk_core::{
    init_worker, CoreRuntime, PollError, RuntimeOptions, TlsOptions, Url, Worker, WorkerConfig,
    WorkerVersioningStrategy,
};

/// How long the first dial may take before rr's start fails (an unreachable address fails
/// at once; a black-holed one within this).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a poll error the core did not retry itself, before polling again.
const POLL_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Workflow tasks one core worker holds at once (the core asks for at least 2 with a sticky
/// cache); the one workflow worker runs them in turn.
const MAX_OUTSTANDING_WORKFLOW_TASKS: usize = 16;
/// rr's default `temporal.metrics.prometheus.address`.
const DEFAULT_PROMETHEUS_ADDRESS: &str = "127.0.0.1:9091";
/// The core's metric names' prefix (the Go SDK's names start the same).
const METRIC_PREFIX: &str = "temporal_";
/// The PHP SDK's name and version rr sends in gRPC metadata (spec "Startup order").
const CLIENT_NAME: &str = "temporal-php-2";
const DEFAULT_CLIENT_VERSION: &str = "2.5.0";

/// The runtime, the connection and the running core workers.
pub struct TemporalCore {
    runtime: Option<tokio::runtime::Runtime>,
    core_runtime: CoreRuntime,
    /// The `temporal.metrics` listener's task, when it runs.
    metrics_listener: Option<tokio::task::AbortHandle>,
    connection: Connection,
    /// Running workers by task queue.
    workers: Mutex<Vec<(String, Arc<Worker>)>>,
}

impl std::fmt::Debug for TemporalCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalCore").finish_non_exhaustive()
    }
}

/// What the core workers hand their work to.
#[derive(Debug, Clone)]
pub struct Bridges {
    /// Workflow activations.
    pub workflows: Arc<WorkflowBridge>,
    /// Activity tasks; None when the activity pool runs no worker.
    pub activities: Option<Arc<ActivityBridge>>,
    /// Activity tasks one core worker runs at once.
    pub max_activities: usize,
}

impl TemporalCore {
    /// Starts the runtime, asks the workflow worker for its `GetWorkerInfo` and dials the
    /// server (rr's order).
    ///
    /// # Errors
    /// The worker's failure to answer, or rr's text `failed reaching server: …`.
    pub fn connect(
        section: &TemporalSection,
        relay: &Relay,
        workflow_pool: &Pool,
    ) -> Result<(Self, WorkerInfoSet), String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("temporal")
            .enable_all()
            .build()
            .map_err(|error| format!("temporal runtime: {error}"))?;
        let (core_runtime, metrics_listener) = {
            let _entered = runtime.enter();
            let (telemetry, metrics_listener) = telemetry_options(section.metrics.as_ref())?;
            let options = RuntimeOptions::builder()
                .telemetry_options(telemetry)
                .heartbeat_interval(None)
                .build()
                .map_err(|error| format!("temporal runtime: {error}"))?;
            let core_runtime = CoreRuntime::new_assume_tokio(options)
                .map_err(|error| format!("temporal runtime: {error}"))?;
            (core_runtime, metrics_listener)
        };
        let info = runtime.block_on(super::worker_info::fetch(relay, workflow_pool))?;
        let options = connection_options(section, &info.php_sdk_version)?;
        let connection = runtime
            .block_on(async {
                tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(options)).await
            })
            .map_err(|_| {
                format!(
                    "failed reaching server: no answer from {} within {CONNECT_TIMEOUT:?}",
                    section.address
                )
            })?
            .map_err(|error| format!("failed reaching server: {error}"))?;
        tracing::info!(
            address = section.address.as_str(),
            "connected to temporal server"
        );
        let core = Self {
            runtime: Some(runtime),
            core_runtime,
            metrics_listener,
            connection,
            workers: Mutex::new(Vec::new()),
        };
        Ok((core, info))
    }

    /// A handle of the runtime.
    #[must_use]
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.core_runtime.tokio_handle()
    }

    /// Starts one core worker per task queue, polling into `bridges`.
    ///
    /// # Errors
    /// A worker the core refuses (bad options, unknown namespace).
    pub fn start_workers(
        &self,
        section: &TemporalSection,
        task_queues: &[String],
        bridges: &Bridges,
    ) -> Result<(), String> {
        let mut started = Vec::new();
        for task_queue in task_queues {
            let worker_id = crate::uuid::new_v4();
            let config = worker_config(section, task_queue, &worker_id, bridges)?;
            let worker = {
                let _entered = self.handle().enter();
                init_worker(&self.core_runtime, config, self.connection.clone())
                    .map_err(|error| format!("temporal worker for {task_queue}: {error}"))?
            };
            let worker = Arc::new(worker);
            self.spawn_pollers(task_queue, &worker, bridges);
            tracing::info!(
                Namespace = section.namespace.as_str(),
                TaskQueue = task_queue.as_str(),
                WorkerID = worker_id.as_str(),
                "Started Worker"
            );
            started.push((task_queue.clone(), worker));
        }
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(started);
        Ok(())
    }

    fn spawn_pollers(&self, task_queue: &str, worker: &Arc<Worker>, bridges: &Bridges) {
        let handle = self.handle();
        handle.spawn(poll_workflows(
            Arc::clone(worker),
            Arc::clone(&bridges.workflows),
            task_queue.to_owned(),
        ));
        if let Some(activities) = &bridges.activities {
            handle.spawn(poll_activities(
                Arc::clone(worker),
                Arc::clone(activities),
                task_queue.to_owned(),
            ));
        }
    }

    /// Asks the core to evict `run_ids` from its sticky cache, so their next workflow task
    /// replays from history (after the workflow worker was replaced).
    pub fn evict(&self, run_ids: &[String]) {
        for (_, worker) in self
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            for run_id in run_ids {
                worker.request_workflow_eviction(run_id);
            }
        }
    }

    /// The API key the connection sends from now on (`temporal.UpdateAPIKey`).
    pub fn set_api_key(&self, key: String) {
        self.connection.set_api_key(Some(key));
    }

    /// Hands an activity heartbeat to the core worker of `task_queue`.
    pub fn record_heartbeat(
        &self,
        task_queue: &str,
        heartbeat: temporalio_common::protos::coresdk::ActivityHeartbeat,
    ) {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, worker)) = workers.iter().find(|(queue, _)| queue == task_queue) {
            worker.record_activity_heartbeat(heartbeat);
        }
    }

    /// Stops every core worker (each within `timeout`) and forgets them.
    pub fn stop_workers(&self, timeout: Duration) -> impl Future<Output = ()> + Send + 'static {
        let workers: Vec<_> =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        let handle = self.handle();
        async move {
            let stopping = handle.spawn(async move {
                for (_, worker) in &workers {
                    worker.initiate_shutdown();
                }
                for (task_queue, worker) in &workers {
                    if tokio::time::timeout(timeout, worker.shutdown())
                        .await
                        .is_err()
                    {
                        tracing::warn!(
                            task_queue = task_queue.as_str(),
                            "temporal worker did not stop in time"
                        );
                    }
                }
            });
            let _ = stopping.await;
        }
    }
}

impl Drop for TemporalCore {
    fn drop(&mut self) {
        if let Some(listener) = self.metrics_listener.take() {
            listener.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The core's telemetry: with `temporal.metrics` (prometheus), the core's metrics served on
/// their own listener at `prometheus.address` (rr's: the Go SDK's metrics there), named
/// `temporal_*`, or `<prefix>_temporal_*` with a prefix (rr's tally scope joins with `_`).
/// Must run within the runtime.
fn telemetry_options(
    metrics: Option<&MetricsSection>,
) -> Result<(TelemetryOptions, Option<tokio::task::AbortHandle>), String> {
    let Some(metrics) = metrics.filter(|metrics| metrics.driver == "prometheus") else {
        return Ok((TelemetryOptions::builder().build(), None));
    };
    let address = if metrics.address.is_empty() {
        DEFAULT_PROMETHEUS_ADDRESS
    } else {
        metrics.address.as_str()
    };
    let socket_addr = address
        .parse()
        .map_err(|error| format!("temporal.metrics.prometheus.address {address}: {error}"))?;
    let started = start_prometheus_metric_exporter(
        PrometheusExporterOptions::builder()
            .socket_addr(socket_addr)
            .build(),
    )
    .map_err(|error| format!("temporal.metrics.prometheus.address {address}: {error}"))?;
    tracing::info!(address = %started.bound_addr, "temporal metrics listening");
    let prefix = if metrics.prefix.is_empty() {
        METRIC_PREFIX.to_owned()
    } else {
        format!("{}_{METRIC_PREFIX}", metrics.prefix)
    };
    let meter: std::sync::Arc<dyn temporalio_common::telemetry::metrics::CoreMeter> = started.meter;
    let options = TelemetryOptions::builder()
        .metrics(meter)
        .metric_prefix(prefix)
        .build();
    Ok((options, Some(started.abort_handle)))
}

fn connection_options(
    section: &TemporalSection,
    php_sdk_version: &str,
) -> Result<ConnectionOptions, String> {
    let scheme = if section.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let url = Url::parse(&format!("{scheme}://{}", section.address)).map_err(|error| {
        format!(
            "failed reaching server: address {}: {error}",
            section.address
        )
    })?;
    let version = if php_sdk_version.is_empty() {
        DEFAULT_CLIENT_VERSION
    } else {
        php_sdk_version
    };
    let headers = HashMap::from([
        ("client-name".to_owned(), CLIENT_NAME.to_owned()),
        ("client-version".to_owned(), version.to_owned()),
    ]);
    let tls = section.tls.as_ref().map(tls_options).transpose()?;
    Ok(ConnectionOptions::new(url)
        .identity(format!("roadrunner:{}", std::process::id()))
        .connect_timeout(CONNECT_TIMEOUT)
        .headers(headers)
        .maybe_tls_options(tls)
        .build())
}

fn tls_options(tls: &TlsSection) -> Result<TlsOptions, String> {
    let read =
        |path: &str| std::fs::read(path).map_err(|error| format!("temporal.tls: {path}: {error}"));
    let client = if tls.cert.is_empty() {
        None
    } else {
        Some(
            temporalio_sdk_core::ClientTlsOptions::builder()
                .client_cert(read(&tls.cert)?)
                .client_private_key(read(&tls.key)?)
                .build(),
        )
    };
    let root_ca = (!tls.root_ca.is_empty())
        .then(|| read(&tls.root_ca))
        .transpose()?;
    Ok(TlsOptions::builder()
        .maybe_server_root_ca_cert(root_ca)
        .maybe_domain((!tls.server_name.is_empty()).then(|| tls.server_name.clone()))
        .maybe_client_tls_options(client)
        .build())
}

fn worker_config(
    section: &TemporalSection,
    task_queue: &str,
    worker_id: &str,
    bridges: &Bridges,
) -> Result<WorkerConfig, String> {
    WorkerConfig::builder()
        .namespace(section.namespace.clone())
        .task_queue(task_queue.to_owned())
        .client_identity_override(format!("roadrunner:{task_queue}:{worker_id}"))
        .max_cached_workflows(section.cache_size)
        .max_outstanding_workflow_tasks(MAX_OUTSTANDING_WORKFLOW_TASKS)
        .max_outstanding_activities(bridges.max_activities.max(1))
        .max_outstanding_local_activities(bridges.max_activities.max(1))
        .max_outstanding_nexus_tasks(1_usize)
        .versioning_strategy(WorkerVersioningStrategy::None {
            build_id: String::new(),
        })
        .task_types(WorkerTaskTypes {
            enable_workflows: true,
            enable_local_activities: bridges.activities.is_some(),
            enable_remote_activities: bridges.activities.is_some(),
            enable_nexus: false,
        })
        .build()
        .map_err(|error| format!("temporal worker for {task_queue}: {error}"))
}

/// Polls with `poll` until the worker shuts down, running each task as its own task with
/// `handle` (the core bounds how many are out at once).
async fn poll_loop<T, P, PF, H, HF>(task_queue: String, kind: &'static str, poll: P, handle: H)
where
    P: Fn() -> PF,
    PF: Future<Output = Result<T, PollError>>,
    H: Fn(T) -> HF,
    HF: Future<Output = ()> + Send + 'static,
{
    loop {
        match poll().await {
            Ok(task) => {
                tokio::spawn(handle(task));
            }
            Err(PollError::ShutDown) => return,
            Err(error) => {
                tracing::error!(task_queue = task_queue.as_str(), kind, error = %error, "temporal: polling");
                tokio::time::sleep(POLL_ERROR_PAUSE).await;
            }
        }
    }
}

async fn poll_workflows(worker: Arc<Worker>, bridge: Arc<WorkflowBridge>, task_queue: String) {
    let poller = Arc::clone(&worker);
    let queue = task_queue.clone();
    poll_loop(
        task_queue,
        "workflow",
        move || {
            let poller = Arc::clone(&poller);
            async move { poller.poll_workflow_activation().await }
        },
        move |activation| {
            let (worker, bridge, queue) = (Arc::clone(&worker), Arc::clone(&bridge), queue.clone());
            async move {
                let completion = bridge.activate(&queue, activation).await;
                if let Err(error) = worker.complete_workflow_activation(completion).await {
                    tracing::error!(task_queue = queue.as_str(), error = %error, "temporal: completing a workflow activation");
                }
            }
        },
    )
    .await;
}

async fn poll_activities(worker: Arc<Worker>, bridge: Arc<ActivityBridge>, task_queue: String) {
    let poller = Arc::clone(&worker);
    let queue = task_queue.clone();
    poll_loop(
        task_queue,
        "activity",
        move || {
            let poller = Arc::clone(&poller);
            async move { poller.poll_activity_task().await }
        },
        move |task| {
            let (worker, bridge, queue) = (Arc::clone(&worker), Arc::clone(&bridge), queue.clone());
            async move {
                let Some(completion) = bridge.run(&queue, task).await else {
                    return;
                };
                if let Err(error) = worker.complete_activity_task(completion).await {
                    tracing::error!(task_queue = queue.as_str(), error = %error, "temporal: completing an activity task");
                }
            }
        },
    )
    .await;
}
