//! The exporter thread (rr's Go BatchSpanProcessor): records arrive over a bounded channel
//! from the shards, are batched, and go out every schedule delay or when a batch is full;
//! on stop the pending ones are flushed within [`FLUSH_DEADLINE`]. Exports block this
//! thread only: while one waits on a slow collector, the queue fills and the shards drop
//! (and count) spans instead of waiting.

use super::config::{Client, Exporter, OtelSection, EXPORT_TIMEOUT};
use super::encode;
use super::http_client::{HttpTarget, PostError};
use super::span::{FinishedRequest, SpanCounters};
use ringrunner_protocol::otlp::Resource;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};

/// The longest the stop waits for the pending spans to go out.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(10);

/// The exporter thread's nice value: under a saturated CPU the shards and workers come
/// first, the queue fills and spans are dropped (and counted), requests are not slowed.
const EXPORTER_NICE: i32 = 10;

/// Where a batch goes.
#[derive(Debug)]
enum Destination {
    Http(HttpTarget),
    Grpc(super::grpc_client::GrpcTarget),
    Stdout,
    Stderr,
}

/// The thread's state.
#[derive(Debug)]
struct BatchExporter {
    destination: Destination,
    resource: Resource,
    tracer_name: String,
    /// Records (two spans each) per export.
    batch_records_max: usize,
    schedule_delay: Duration,
    counters: Arc<SpanCounters>,
    /// The protobuf encoding's reused buffers.
    scratch: super::wire::Scratch,
}

/// The running thread's handles: wake it to flush and stop, and hear when it has.
#[derive(Debug)]
pub struct ExporterHandle {
    /// Notified once to flush and stop.
    pub stop: Arc<Notify>,
    /// Fires when the thread has flushed (or given up at its deadline).
    pub flushed: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

/// Starts the exporter thread for `config`, reading records from `queue`.
///
/// # Errors
/// A destination that cannot be set up (TLS roots), or no thread.
pub fn spawn(
    config: &OtelSection,
    queue: mpsc::Receiver<FinishedRequest>,
    counters: Arc<SpanCounters>,
    batch_ready: Arc<Notify>,
) -> Result<ExporterHandle, String> {
    let destination = match (config.exporter, config.client) {
        (Exporter::Stdout, _) => Destination::Stdout,
        (Exporter::Stderr, _) => Destination::Stderr,
        (Exporter::Otlp, Client::Http) => Destination::Http(HttpTarget::new(config)?),
        (Exporter::Otlp, Client::Grpc) => {
            Destination::Grpc(super::grpc_client::GrpcTarget::new(config)?)
        }
    };
    let exporter = BatchExporter {
        destination,
        resource: encode::resource(config),
        tracer_name: config.tracer_name.clone(),
        batch_records_max: (config.batch_spans_max / 2).max(1),
        schedule_delay: config.schedule_delay,
        counters,
        scratch: super::wire::Scratch::default(),
    };
    let stop = Arc::new(Notify::new());
    let (flushed_tx, flushed_rx) = oneshot::channel();
    let thread_stop = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("otel-export".into())
        .spawn(move || {
            // Linux: PRIO_PROCESS with a thread id sets that thread's nice value alone.
            if let Err(error) =
                rustix::process::setpriority_process(Some(rustix::thread::gettid()), EXPORTER_NICE)
            {
                tracing::debug!(target: "otel", %error, "otel exporter keeps its priority");
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(exporter.run(queue, &thread_stop, &batch_ready)),
                Err(error) => {
                    tracing::error!(target: "otel", %error, "otel exporter: no runtime, spans are not exported");
                }
            }
            let _ = flushed_tx.send(());
        })
        .map_err(|error| format!("otel: exporter thread: {error}"))?;
    Ok(ExporterHandle {
        stop,
        flushed: std::sync::Mutex::new(Some(flushed_rx)),
    })
}

impl BatchExporter {
    /// Exports every schedule delay, or as soon as the shards say a whole batch waits; the
    /// queue is only ever drained with `try_recv` (no waker on it: a send wakes no one).
    async fn run(
        mut self,
        mut queue: mpsc::Receiver<FinishedRequest>,
        stop: &Notify,
        batch_ready: &Notify,
    ) {
        let mut batch = Vec::with_capacity(self.batch_records_max);
        let mut next_export = tokio::time::Instant::now() + self.schedule_delay;
        loop {
            tokio::select! {
                biased;
                () = stop.notified() => break,
                () = batch_ready.notified() => {}
                () = tokio::time::sleep_until(next_export) => {}
            }
            while let Ok(record) = queue.try_recv() {
                batch.push(record);
                if batch.len() >= self.batch_records_max {
                    self.export(&mut batch, Instant::now() + EXPORT_TIMEOUT)
                        .await;
                }
            }
            if tokio::time::Instant::now() >= next_export {
                if !batch.is_empty() {
                    self.export(&mut batch, Instant::now() + EXPORT_TIMEOUT)
                        .await;
                }
                next_export = tokio::time::Instant::now() + self.schedule_delay;
            }
        }
        // spec devops § otel: Stop flushes what is pending (ForceFlush + Shutdown).
        let deadline = Instant::now() + FLUSH_DEADLINE;
        queue.close();
        while let Ok(record) = queue.try_recv() {
            batch.push(record);
            if batch.len() >= self.batch_records_max {
                self.export(&mut batch, deadline).await;
            }
        }
        if !batch.is_empty() {
            self.export(&mut batch, deadline).await;
        }
    }

    /// Sends `batch` (then empties it), bounded by `deadline`.
    async fn export(&mut self, batch: &mut Vec<FinishedRequest>, deadline: Instant) {
        let spans = batch.len() * 2;
        if Instant::now() >= deadline {
            batch.clear();
            tracing::warn!(target: "otel", spans, "span export skipped: past the flush deadline");
            self.count_failed(spans);
            return;
        }
        // The batch is encoded only once the collector has accepted a connection: a
        // collector that is down costs a refused connect per batch, not an encoding.
        let Self {
            destination,
            resource,
            tracer_name,
            scratch,
            ..
        } = self;
        let tracer_name = tracer_name.as_str();
        let encode = || encode::export_bytes(resource, tracer_name, batch, scratch);
        let result = match destination {
            Destination::Http(target) => target.post(encode, deadline),
            Destination::Grpc(target) => target.export(encode, deadline).await,
            Destination::Stdout => {
                write_lines(std::io::stdout().lock(), resource, tracer_name, batch)
            }
            Destination::Stderr => {
                write_lines(std::io::stderr().lock(), resource, tracer_name, batch)
            }
        };
        batch.clear();
        match result {
            Ok(()) => tracing::debug!(target: "otel", spans, "spans exported"),
            Err(error) => {
                tracing::warn!(target: "otel", spans, %error, "span export failed");
                self.count_failed(spans);
            }
        }
    }

    fn count_failed(&self, spans: usize) {
        let spans = u64::try_from(spans).unwrap_or(u64::MAX);
        self.counters
            .export_failed
            .fetch_add(spans, std::sync::atomic::Ordering::Relaxed);
    }
}

fn write_lines(
    mut out: impl Write,
    resource: &Resource,
    tracer_name: &str,
    batch: &[FinishedRequest],
) -> Result<(), PostError> {
    let request = encode::export_request(resource, tracer_name, batch);
    out.write_all(encode::json_lines(&request).as_bytes())
        .and_then(|()| out.flush())
        .map_err(PostError::Io)
}
