//! The pollers (`num_workers + 2`, spread over the shards): each takes the next job from the
//! shared queue, sends it to a worker (context JSON and the payload, codec RAW), and applies
//! the worker's reply (spec tcp-jobs B.5, B.6).

use super::pipeline::{Job, Verdict};
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
        if shared.queue.take_room_wanted() {
            pump_pipelines(&shared);
        }
        if !job.pipeline.is_live(&job) {
            // spec jobs-amqp §7: its connection is gone; the broker delivers it again.
            tracing::debug!(target: "jobs", id = %job.id, pipeline = %job.pipeline.name, "a delivery of a closed connection was dropped, the broker redelivers it");
            continue;
        }
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        run(&shared, &shard, job, &mut context, &mut response).await;
        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        shared.idle.notify_waiters();
    }
}

/// Room appeared in the shared queue that a pipeline found full: each memory pipeline moves
/// what waits in its local queue (spec tcp-jobs B.4: an insert waits until the length drops
/// below `pipeline_size`).
fn pump_pipelines(shared: &JobsShared) {
    let pipelines: Vec<_> = shared.pipelines().values().cloned().collect();
    for pipeline in pipelines {
        if let super::pipeline::Driver::Memory(memory) = &pipeline.driver {
            memory.pump(&shared.queue);
        }
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
    let pipeline = Arc::clone(&job.pipeline);
    let mut value = serde_json::json!({
        "id": job.id, "job": job.name, "driver": pipeline.driver_name(), "headers": headers, "pipeline": pipeline.name,
    });
    if let Some(queue) = pipeline.queue_name() {
        value["queue"] = serde_json::Value::from(queue);
    }
    let _ = serde_json::to_writer(&mut *context, &value);
    let request = Request {
        codec: Flags::CODEC_RAW,
        context,
        body: &job.payload,
        lent: None,
    };
    let result = shared.pool.exec(shard, request, response).await;
    let verdict = match result {
        Ok(meta) => match serde_json::from_slice::<Reply>(&response[meta.context_len..]) {
            Ok(reply) => verdict(shared, &job, reply),
            Err(error) => {
                // Not the protocol's JSON: acknowledged, or it would come back forever.
                tracing::error!(target: "jobs", id = %job.id, pipeline = %pipeline.name, %error, "response handler error");
                shared.counters.jobs_err.fetch_add(1, Ordering::Relaxed);
                Verdict::Ack
            }
        },
        // A worker error, a crash, the pool failing.
        Err(error) => {
            tracing::error!(target: "jobs", id = %job.id, pipeline = %pipeline.name, %error, "job failed");
            shared.counters.jobs_err.fetch_add(1, Ordering::Relaxed);
            Verdict::Nack
        }
    };
    let requeued = matches!(verdict, Verdict::Requeue { .. });
    let id = job.id.clone();
    match pipeline.settle(job, verdict, &shared.queue).await {
        Ok(()) if requeued => {
            tracing::info!(target: "jobs", %id, pipeline = %pipeline.name, "job was re-queued");
        }
        Ok(()) => {}
        Err(error) => {
            tracing::error!(target: "jobs", %id, pipeline = %pipeline.name, %error, "acknowledge error, job might be missed");
        }
    }
}

/// The verdict a reply asks for, counted as rr counts.
fn verdict(shared: &JobsShared, job: &Job, reply: Reply) -> Verdict {
    let data = || serde_json::from_value::<ReplyData>(reply.data.clone()).unwrap_or_default();
    let delay = |data: &ReplyData| u64::try_from(data.delay_seconds).unwrap_or(0);
    match reply.kind {
        0 | 2 => {
            shared.counters.jobs_ok.fetch_add(1, Ordering::Relaxed);
            Verdict::Ack
        }
        1 => {
            let data = data();
            tracing::error!(target: "jobs", id = %job.id, message = %data.message, delay = data.delay_seconds, requeue = data.requeue, "jobs protocol error");
            shared.counters.jobs_err.fetch_add(1, Ordering::Relaxed);
            if data.requeue {
                Verdict::Requeue {
                    delay: delay(&data),
                    headers: data.headers,
                }
            } else {
                Verdict::Ack
            }
        }
        3 => {
            let data = data();
            shared.counters.jobs_err.fetch_add(1, Ordering::Relaxed);
            Verdict::NackWith {
                requeue: data.requeue,
                delay: delay(&data),
            }
        }
        4 => {
            let data = data();
            Verdict::Requeue {
                delay: delay(&data),
                headers: data.headers,
            }
        }
        other => {
            tracing::warn!(target: "jobs", kind = other, "unknown response type, acknowledging the JOB");
            Verdict::Ack
        }
    }
}
