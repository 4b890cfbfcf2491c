//! The `otel` plugin (spec devops § otel): the `otel` section, the exporter thread that
//! batches spans and sends them to an OTLP collector (HTTP or gRPC) or writes them as JSON
//! lines, and the [`Tracer`] the `otel` HTTP middleware uses on the shards.
//!
//! The shards hand each finished request to the exporter with a `try_send` on a channel of
//! `OTEL_BSP_MAX_QUEUE_SIZE` spans (2048): a full queue (a collector down or slow) drops the
//! spans and counts them in `rr_otel_spans_dropped_total`, and the request never waits. The
//! plugin starts before `http` (which looks it up) and so stops after it: the last
//! requests' spans are flushed on stop, within `export::FLUSH_DEADLINE` (10 s).

mod config;
#[cfg(test)]
mod config_tests;
mod encode;
mod export;
mod grpc_client;
mod http_client;
mod ids;
mod span;
mod wire;

pub use config::{Client, Exporter, OtelSection, ResourceSection};
pub use encode::OTELHTTP_SCOPE;
/// Span and trace ids, for the grpc plugin's `Traceparent` and `Uber-Trace-Id` too.
pub(crate) use ids::IdSource;
pub use span::{Answered, RequestTrace, SpanCounters, Tracer};

use super::metrics::exposition::{Family, Kind};
use super::{LocalFuture, Plugin, SectionContext, Service, StartContext};
use crate::config::ConfigError;
use std::any::Any;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "otel",
    configure,
};

/// The dropped spans' counter as the metrics plugin shows it.
pub const DROPPED_SPANS_METRIC: &str = "rr_otel_spans_dropped_total";

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("otel") {
        return Ok(None);
    }
    let section = OtelSection::read(ctx.reader, ctx.env, ctx.warnings)?;
    Ok(Some(Box::new(section)))
}

impl Plugin for OtelSection {
    fn name(&self) -> &'static str {
        "otel"
    }

    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        let queue_records = (self.queue_spans_max / 2).max(1);
        let (sender, receiver) = tokio::sync::mpsc::channel(queue_records);
        let counters = Arc::new(SpanCounters::default());
        let batch_ready = Arc::new(tokio::sync::Notify::new());
        let exporter = export::spawn(
            &self,
            receiver,
            Arc::clone(&counters),
            Arc::clone(&batch_ready),
        )?;
        let batch_records = (self.batch_spans_max / 2).max(1);
        tracing::debug!(target: "otel", endpoint = %self.endpoint, client = ?self.client,
            exporter = ?self.exporter, "otel exporter started");
        Ok(Arc::new(OtelPlugin {
            tracer: Arc::new(Tracer::new(
                ctx.shards.count(),
                sender,
                Arc::clone(&counters),
                (batch_ready, batch_records),
            )),
            counters,
            exporter,
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The running plugin.
#[derive(Debug)]
pub struct OtelPlugin {
    tracer: Arc<Tracer>,
    counters: Arc<SpanCounters>,
    exporter: export::ExporterHandle,
}

impl OtelPlugin {
    /// The shards' handle (the `otel` middleware's).
    #[must_use]
    pub fn tracer(&self) -> Arc<Tracer> {
        Arc::clone(&self.tracer)
    }
}

impl Service for OtelPlugin {
    fn name(&self) -> &'static str {
        "otel"
    }

    fn collect(&self, families: &mut Vec<Family>) {
        let mut family = Family::new(
            DROPPED_SPANS_METRIC,
            "Spans that never reached the collector: the export queue was full (collector slow or hanging) or their export failed (collector down).",
            Kind::Counter,
        );
        for (reason, counter) in [
            ("queue_full", &self.counters.queue_full),
            ("export_failed", &self.counters.export_failed),
        ] {
            let value = counter.load(std::sync::atomic::Ordering::Relaxed) as f64;
            family.push(vec![("reason".to_owned(), reason.to_owned())], value);
        }
        families.push(family);
    }

    /// Flushes the pending spans (the exporter thread's own deadline bounds it).
    fn stop(self: Arc<Self>) -> LocalFuture<'static, ()> {
        Box::pin(async move {
            self.exporter.stop.notify_one();
            let flushed = self
                .exporter
                .flushed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            let Some(flushed) = flushed else { return };
            let wait = export::FLUSH_DEADLINE + Duration::from_secs(1);
            if tokio::time::timeout(wait, flushed).await.is_err() {
                tracing::warn!(target: "otel", "otel exporter did not flush in time; pending spans lost");
            }
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
