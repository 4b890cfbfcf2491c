//! The pollers (`num_workers + 2`, spread over the shards): each takes the next job from the
//! shared queue, sends it to a worker (context JSON and the payload, codec RAW), and applies
//! the worker's reply (spec tcp-jobs B.5, B.6).

use super::pipeline::Job;
use super::JobsShared;
use crate::pool::Request;
use crate::runtime::ShardContext;
use ringrunner_protocol::Flags;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Takes and runs jobs until shutdown begins (the job in hand is finished first).
pub async fn poll(shared: Arc<JobsShared>, shard: std::rc::Rc<ShardContext>) {
    let mut context = Vec::with_capacity(256);
    let mut response = Vec::new();
    loop {
        let stopping = shared.stop.notified();
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let job = tokio::select! {
            job = shared.queue.take() => job,
            () = stopping => return,
        };
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        run(&shared, &shard, job, &mut context, &mut response).await;
        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        shared.idle.notify_waiters();
    }
}

/// The worker's reply body.
#[derive(Debug, Deserialize)]
struct Reply {
    #[serde(rename = "type")]
    kind: i64,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReplyData {
    message: String,
    requeue: bool,
    delay_seconds: i64,
    headers: BTreeMap<String, Vec<String>>,
}

async fn run(
    shared: &JobsShared,
    shard: &ShardContext,
    job: Job,
    context: &mut Vec<u8>,
    response: &mut Vec<u8>,
) {
    context.clear();
    let headers: serde_json::Map<String, serde_json::Value> = job
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::json!(v)))
        .collect();
    // rr's keys, in rr's order.
    let value = serde_json::json!({
        "id": job.id, "job": job.name, "driver": "memory", "headers": headers, "pipeline": job.pipeline.name,
    });
    let _ = serde_json::to_writer(&mut *context, &value);
    let request = Request {
        codec: Flags::CODEC_RAW,
        context,
        body: &job.payload,
        lent: None,
    };
    let result = shared.pool.exec(shard, request, response).await;
    let reply = match result {
        Ok(meta) => serde_json::from_slice::<Reply>(&response[meta.context_len..])
            .map_err(|error| format!("response handler error: {error}"))
            .map(Ok),
        Err(error) => Ok(Err(error.to_string())),
    };
    let pipeline = std::sync::Arc::clone(&job.pipeline);
    match reply {
        // A worker error, a crash, the pool failing: nack (the memory driver drops it).
        Ok(Err(error)) => {
            tracing::error!(target: "jobs", id = %job.id, pipeline = %pipeline.name, %error, "job failed");
            shared.counters.jobs_err.fetch_add(1, Ordering::Relaxed);
            pipeline.release(&job, &shared.queue);
        }
        Err(error) => {
            // Not the protocol's JSON: acknowledged, or it would come back forever.
            tracing::error!(target: "jobs", id = %job.id, pipeline = %pipeline.name, %error, "response handler error");
            shared.counters.jobs_err.fetch_add(1, Ordering::Relaxed);
            pipeline.release(&job, &shared.queue);
        }
        Ok(Ok(reply)) => apply(shared, job, reply),
    }
}

fn apply(shared: &JobsShared, job: Job, reply: Reply) {
    let pipeline = std::sync::Arc::clone(&job.pipeline);
    let data = || serde_json::from_value::<ReplyData>(reply.data.clone()).unwrap_or_default();
    match reply.kind {
        0 | 2 => {
            shared.counters.jobs_ok.fetch_add(1, Ordering::Relaxed);
            pipeline.release(&job, &shared.queue);
        }
        1 => {
            let data = data();
            tracing::error!(target: "jobs", message = %data.message, delay = data.delay_seconds, requeue = data.requeue, "jobs protocol error");
            shared.counters.jobs_err.fetch_add(1, Ordering::Relaxed);
            if data.requeue {
                requeue(shared, job, data);
            } else {
                pipeline.release(&job, &shared.queue);
            }
        }
        3 => {
            let data = data();
            shared.counters.jobs_err.fetch_add(1, Ordering::Relaxed);
            if data.requeue {
                requeue(
                    shared,
                    job,
                    ReplyData {
                        headers: BTreeMap::new(),
                        ..data
                    },
                );
            } else {
                // No dead-letter queue in memory: dropped.
                pipeline.release(&job, &shared.queue);
            }
        }
        4 => requeue(shared, job, data()),
        other => {
            tracing::warn!(target: "jobs", kind = other, "unknown response type, acknowledging the JOB");
            pipeline.release(&job, &shared.queue);
        }
    }
}

/// Frees the job's slot and pushes it again with the reply's delay and headers.
fn requeue(shared: &JobsShared, job: Job, data: ReplyData) {
    let pipeline = std::sync::Arc::clone(&job.pipeline);
    pipeline.release(&job, &shared.queue);
    let mut again = job;
    again.headers.extend(data.headers);
    again.delay = u64::try_from(data.delay_seconds).unwrap_or(0);
    let id = again.id.clone();
    match pipeline.push(again, &shared.queue) {
        Ok(()) => {
            tracing::info!(target: "jobs", %id, pipeline = %pipeline.name, "job was re-queued")
        }
        Err(error) => {
            tracing::error!(target: "jobs", %id, pipeline = %pipeline.name, %error, "job could not be re-queued")
        }
    }
}
