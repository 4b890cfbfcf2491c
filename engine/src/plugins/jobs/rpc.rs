//! The RPC service `jobs` (spec tcp-jobs B.7): `Push`, `PushBatch`, `Pause`, `Resume`,
//! `List`, `Declare`, `Destroy`, `Stat`, with the `jobs.v1` protobuf messages rr's PHP
//! client and `rr jobs` send, and rr's error texts.

use super::amqp;
use super::pipeline::{Job, Pipeline, Receipt};
use super::proto;
use super::{JobsPlugin, JobsShared};
use crate::plugins::rpc::{Reply, RpcService};
use crate::plugins::LocalFuture;
use prost::Message;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl RpcService for JobsPlugin {
    fn service(&self) -> &'static str {
        "jobs"
    }

    /// JSON with the proto field names (the payload as base64, as Go's JSON writes bytes):
    /// read into the protobuf message, run as `call_proto`, the reply written back as JSON.
    fn call<'a>(
        &'a self,
        method: &'a str,
        arg: serde_json::Value,
    ) -> Option<LocalFuture<'a, Result<Reply, String>>> {
        let message = match json_to_proto(method, &arg)? {
            Ok(message) => message,
            Err(error) => {
                return Some(crate::plugins::rpc::services::ready(Err(format!(
                    "jobs.{method}: {error}"
                ))))
            }
        };
        Some(Box::pin(async move {
            let bytes = match self.call_proto(method, &message) {
                Some(reply) => reply.await?,
                None => return Err(format!("jobs.{method}: no such method")),
            };
            proto_to_json(method, &bytes).map(Reply::Json)
        }))
    }

    fn call_proto<'a>(
        &'a self,
        method: &'a str,
        message: &'a [u8],
    ) -> Option<LocalFuture<'a, Result<Vec<u8>, String>>> {
        if !matches!(
            method,
            "Push" | "PushBatch" | "Pause" | "Resume" | "List" | "Declare" | "Destroy" | "Stat"
        ) {
            return None;
        }
        Some(Box::pin(call(&self.shared, method, message)))
    }
}

async fn call(shared: &JobsShared, method: &str, message: &[u8]) -> Result<Vec<u8>, String> {
    match method {
        "Push" => {
            let request = decode::<proto::PushRequest>(message)?;
            let job = request.job.ok_or_else(|| "job is required".to_owned())?;
            push(shared, vec![job], "single").await.map(|()| empty())
        }
        "PushBatch" => {
            let jobs = decode::<proto::PushBatchRequest>(message)?.jobs;
            push(shared, jobs, "batch").await.map(|()| empty())
        }
        "Pause" => {
            for name in &decode::<proto::Pipelines>(message)?.pipelines {
                find(shared, name)?.pause().await?;
            }
            Ok(empty())
        }
        "Resume" => {
            for name in &decode::<proto::Pipelines>(message)?.pipelines {
                find(shared, name)?.run(&shared.queue).await?;
            }
            Ok(empty())
        }
        "List" => {
            let mut names: Vec<String> = shared.pipelines().keys().cloned().collect();
            names.extend(
                shared
                    .unregistered
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .keys()
                    .cloned(),
            );
            Ok(proto::Pipelines { pipelines: names }.encode_to_vec())
        }
        "Declare" => {
            let request = decode::<proto::DeclareRequest>(message)?;
            declare(shared, &request.pipeline).await.map(|()| empty())
        }
        "Destroy" => {
            let mut destroyed = Vec::new();
            for name in &decode::<proto::Pipelines>(message)?.pipelines {
                let pipeline = find(shared, name)?;
                shared.pipelines().remove(name);
                pipeline.stop(&shared.queue).await;
                destroyed.push(name.clone());
            }
            Ok(proto::Pipelines {
                pipelines: destroyed,
            }
            .encode_to_vec())
        }
        _ => {
            let stats = stats(shared)
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            Ok(proto::Stats { stats }.encode_to_vec())
        }
    }
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, String> {
    M::decode(bytes).map_err(|error| error.to_string())
}

fn empty() -> Vec<u8> {
    proto::Empty {}.encode_to_vec()
}

fn find(shared: &JobsShared, name: &str) -> Result<Arc<Pipeline>, String> {
    shared
        .pipelines()
        .get(name)
        .cloned()
        .ok_or_else(|| format!("no such pipeline, requested: {name}"))
}

/// `jobs.Push` and `jobs.PushBatch` (from `source`: `single` or `batch`): rr's checks, then
/// the pipelines, in order, each run of jobs for one pipeline handed over at once (an amqp
/// pipeline publishes a run and waits for its confirms together). The first job refused
/// ends the call; those before it were accepted, as with rr's one-by-one pushes. Counted
/// as rr counts: a push to a pipeline that exists is a request, timed when accepted.
async fn push(
    shared: &JobsShared,
    jobs: Vec<proto::Job>,
    source: &'static str,
) -> Result<(), String> {
    let mut run: Vec<Job> = Vec::new();
    for job in jobs {
        match prepare(shared, job) {
            Ok(job) => {
                if run
                    .last()
                    .is_some_and(|last| !Arc::ptr_eq(&last.pipeline, &job.pipeline))
                {
                    hand_over(shared, std::mem::take(&mut run), source).await?;
                }
                run.push(job);
            }
            Err((pipeline, error)) => {
                hand_over(shared, run, source).await?;
                if let Some(pipeline) = pipeline {
                    let driver = pipeline.driver_name();
                    shared.counters.push(&pipeline.name, driver, source, None);
                }
                shared.counters.push_err.fetch_add(1, Ordering::Relaxed);
                return Err(error);
            }
        }
    }
    hand_over(shared, run, source).await
}

/// Pushes a run of jobs of one pipeline.
async fn hand_over(shared: &JobsShared, run: Vec<Job>, source: &'static str) -> Result<(), String> {
    let Some(first) = run.first() else {
        return Ok(());
    };
    let pipeline = Arc::clone(&first.pipeline);
    let count = run.len() as u64;
    let started = std::time::Instant::now();
    let pushed = pipeline.push(run, &shared.queue).await;
    let took = pushed.is_ok().then(|| started.elapsed());
    for _ in 0..count {
        shared
            .counters
            .push(&pipeline.name, pipeline.driver_name(), source, took);
    }
    let counter = if pushed.is_ok() {
        &shared.counters.push_ok
    } else {
        &shared.counters.push_err
    };
    counter.fetch_add(count, Ordering::Relaxed);
    pushed
}

/// A pushed job checked and resolved to its pipeline; the error with the pipeline when it
/// exists.
fn prepare(shared: &JobsShared, job: proto::Job) -> Result<Job, (Option<Arc<Pipeline>>, String)> {
    let options = job.options.unwrap_or_default();
    let pipeline = shared.pipelines().get(&options.pipeline).cloned();
    if job.id.is_empty() {
        return Err((pipeline, "empty ID field not allowed".into()));
    }
    if shared.stopping.load(Ordering::Acquire) || shared.lifecycle.is_stopping() {
        return Err((pipeline, "the jobs plugin is stopping".into()));
    }
    let Some(pipeline) = pipeline else {
        let unregistered = shared
            .unregistered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        return Err((
            None,
            match unregistered.get(&options.pipeline) {
                Some(driver) => {
                    format!("consumer not registered for the requested driver: {driver}")
                }
                None => format!("no such pipeline, requested: {}", options.pipeline),
            },
        ));
    };
    let headers = job
        .headers
        .into_iter()
        .map(|(key, value)| (key, value.value))
        .collect();
    Ok(Job {
        id: job.id,
        name: job.job,
        payload: job.payload,
        headers,
        priority: options.priority,
        delay: u64::try_from(options.delay).unwrap_or(0),
        auto_ack: options.auto_ack,
        pipeline,
        receipt: Receipt::None,
    })
}

/// `jobs.Declare` from rr's string map (spec tcp-jobs B.7.3, jobs-amqp §8): an amqp
/// pipeline dials its broker before it is listed.
async fn declare(
    shared: &JobsShared,
    map: &std::collections::HashMap<String, String>,
) -> Result<(), String> {
    let name = map
        .get("name")
        .or_else(|| map.get("queue"))
        .cloned()
        .unwrap_or_default();
    let driver = map.get("driver").cloned().unwrap_or_default();
    if driver.is_empty() {
        return Err(format!(
            "no associated driver with the pipeline, pipeline name: {name}"
        ));
    }
    let broker = match (driver.as_str(), &shared.amqp) {
        ("memory", _) => None,
        ("amqp", Some(broker)) => Some(broker),
        _ => {
            return Err(format!(
                "can't find driver constructor for the pipeline: {driver}"
            ))
        }
    };
    if shared.pipelines().contains_key(&name) {
        return Err(format!(
            "pipeline already exists, name: {name}, driver: {driver}"
        ));
    }
    let priority = match map.get("priority") {
        None => 10,
        Some(text) => text.parse().unwrap_or_else(|_| {
            tracing::warn!(target: "jobs", pipeline = %name, priority = %text, "priority is not a number, 0 is used");
            0
        }),
    };
    let consume = shared.consume.contains(&name);
    let pipeline = match broker {
        None => {
            let prefetch = match map.get("prefetch") {
                None => 100_000,
                Some(text) => text
                    .parse()
                    .map_err(|_| format!("prefetch: {text:?} is not a number"))?,
            };
            let pipeline = Pipeline::memory(&name, priority, prefetch);
            if consume {
                pipeline.run(&shared.queue).await?;
            }
            pipeline
        }
        Some(broker) => {
            if let Some(refusal) = &broker.refusal {
                return Err(refusal.clone());
            }
            let mut options = amqp::config::Options::from_declare(map, &broker.addr)?;
            options.priority = priority;
            let pipeline = amqp::Amqp::pipeline(
                &name,
                options,
                broker.timeout,
                &shared.queue,
                broker.runtime.handle(),
            );
            if let super::pipeline::Driver::Amqp(driver) = &pipeline.driver {
                driver.connect(consume).await?;
            }
            pipeline
        }
    };
    // A declare of the same name that finished meanwhile wins; this one is undone.
    let previous = {
        let mut pipelines = shared.pipelines();
        if pipelines.contains_key(&name) {
            Some(pipeline)
        } else {
            pipelines.insert(name.clone(), pipeline);
            None
        }
    };
    if let Some(pipeline) = previous {
        pipeline.stop(&shared.queue).await;
        return Err(format!(
            "pipeline already exists, name: {name}, driver: {driver}"
        ));
    }
    Ok(())
}

/// One `Stat` per pipeline (an amqp one asks its broker).
pub(super) async fn stats(shared: &JobsShared) -> Vec<Result<proto::Stat, String>> {
    let pipelines: Vec<Arc<Pipeline>> = shared.pipelines().values().cloned().collect();
    let mut stats = Vec::with_capacity(pipelines.len());
    for pipeline in pipelines {
        stats.push(pipeline.stat().await.map(|stat| proto::Stat {
            pipeline: pipeline.name.clone(),
            driver: pipeline.driver_name().into(),
            queue: stat.queue,
            active: i64::try_from(stat.active).unwrap_or(i64::MAX),
            delayed: i64::try_from(stat.delayed).unwrap_or(i64::MAX),
            reserved: 0,
            ready: stat.ready,
            priority: u64::try_from(pipeline.priority).unwrap_or(0),
        }));
    }
    stats
}

/// A `Stat` as `informer.Jobs` lists it.
pub(super) fn stat_json(stat: &proto::Stat) -> serde_json::Value {
    serde_json::json!({
        "pipeline": stat.pipeline, "driver": stat.driver, "queue": stat.queue,
        "active": stat.active, "delayed": stat.delayed, "reserved": stat.reserved,
        "ready": stat.ready, "priority": stat.priority,
    })
}

/// A JSON argument as the method's protobuf message; None for a method the service lacks.
fn json_to_proto(method: &str, arg: &serde_json::Value) -> Option<Result<Vec<u8>, String>> {
    let names = || proto::Pipelines {
        pipelines: arg["pipelines"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|name| name.as_str().map(str::to_owned))
            .collect(),
    };
    Some(match method {
        "Push" => {
            json_job(&arg["job"]).map(|job| proto::PushRequest { job: Some(job) }.encode_to_vec())
        }
        "PushBatch" => arg["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(json_job)
            .collect::<Result<Vec<_>, _>>()
            .map(|jobs| proto::PushBatchRequest { jobs }.encode_to_vec()),
        "Pause" | "Resume" | "Destroy" => Ok(names().encode_to_vec()),
        "List" | "Stat" => Ok(Vec::new()),
        "Declare" => Ok(proto::DeclareRequest {
            pipeline: arg["pipeline"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(key, value)| {
                    (
                        key.clone(),
                        value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_owned),
                    )
                })
                .collect(),
        }
        .encode_to_vec()),
        _ => return None,
    })
}

fn json_job(job: &serde_json::Value) -> Result<proto::Job, String> {
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    let payload = match &job["payload"] {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::String(encoded) => crate::plugins::rpc::services::base64_decode(encoded)
            .ok_or_else(|| "payload: not base64".to_owned())?,
        _ => return Err("payload: expected a base64 string".into()),
    };
    let headers = job["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let values = value["value"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            (key.clone(), proto::HeaderValue { value: values })
        })
        .collect();
    let options = &job["options"];
    Ok(proto::Job {
        job: text(&job["job"]),
        id: text(&job["id"]),
        payload,
        headers,
        options: Some(proto::Options {
            priority: options["priority"].as_i64().unwrap_or(0),
            pipeline: text(&options["pipeline"]),
            delay: options["delay"].as_i64().unwrap_or(0),
            auto_ack: options["auto_ack"].as_bool().unwrap_or(false),
        }),
    })
}

/// A protobuf reply as JSON with the proto field names.
fn proto_to_json(method: &str, bytes: &[u8]) -> Result<serde_json::Value, String> {
    Ok(match method {
        "List" | "Destroy" => {
            serde_json::json!({ "pipelines": decode::<proto::Pipelines>(bytes)?.pipelines })
        }
        "Stat" => serde_json::json!({
            "stats": decode::<proto::Stats>(bytes)?.stats.iter().map(stat_json).collect::<Vec<_>>()
        }),
        _ => serde_json::json!({}),
    })
}
