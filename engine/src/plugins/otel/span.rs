//! The `otel` middleware's part on the shard (spec devops § otel): per request, read the
//! caller's trace context (`traceparent`, then Jaeger's `uber-trace-id`, which wins when
//! both are valid, as in rr's composite propagator), make the ids of rr's two spans
//! (otelhttp's server span and the http plugin's child `http` span), hand the worker the
//! `http` span's context in `Traceparent` and `Uber-Trace-Id`; when the answer is out, pack
//! what the spans need into one record and hand it to the exporter thread with a
//! `try_send`: a full queue drops the spans and counts them, the request never waits.

use super::ids::IdSource;
use ringrunner_protocol::http::HeaderTable;
use ringrunner_protocol::http1::Head;
use ringrunner_protocol::otlp::{self, SpanContext};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// The least time between two "spans dropped" warnings.
const DROP_WARNING_INTERVAL_SECONDS: u64 = 10;

/// A request's trace, from its head to its answer.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    /// The caller's span, when its headers carried one.
    parent: Option<SpanContext>,
    /// otelhttp's server span.
    server: SpanContext,
    /// The http plugin's `http` span (the worker's parent).
    http_span_id: [u8; 8],
    start_unix_nanos: u64,
}

/// The texts of a finished request, back to back in one buffer (one allocation per
/// request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// The method.
    Method,
    /// The request target (path and query).
    Target,
    /// The `Host` header.
    Host,
    /// The `User-Agent` header.
    UserAgent,
    /// The caller's `tracestate`.
    TraceState,
}

const TEXTS: usize = 5;

/// What the exporter needs of a served request to write its two spans.
#[derive(Debug)]
pub struct FinishedRequest {
    /// The caller's span id, when continued.
    pub parent_span_id: Option<[u8; 8]>,
    /// Trace and server span ids.
    pub server: SpanContext,
    /// The `http` span.
    pub http_span_id: [u8; 8],
    /// Unix nanoseconds.
    pub start_unix_nanos: u64,
    /// Unix nanoseconds.
    pub end_unix_nanos: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Came over TLS.
    pub https: bool,
    /// `1.0`, `1.1` or `2`.
    pub protocol_version: &'static str,
    /// The answer's status.
    pub status: u16,
    /// Bytes answered.
    pub response_bytes: u64,
    /// Request body bytes.
    pub request_bytes: u64,
    texts: Vec<u8>,
    text_ends: [u32; TEXTS],
}

impl FinishedRequest {
    /// One of its texts (lossy UTF-8).
    #[must_use]
    pub fn text(&self, which: Text) -> std::borrow::Cow<'_, str> {
        let index = which as usize;
        let start = if index == 0 {
            0
        } else {
            self.text_ends[index - 1] as usize
        };
        let end = self.text_ends[index] as usize;
        String::from_utf8_lossy(self.texts.get(start..end).unwrap_or_default())
    }
}

#[cfg(test)]
impl FinishedRequest {
    /// A request for the encoders' tests: `texts` are method, target, host, user agent and
    /// tracestate.
    pub fn for_test(texts: [&str; TEXTS], status: u16, parent: Option<[u8; 8]>) -> Self {
        let mut joined = Vec::new();
        let mut text_ends = [0u32; TEXTS];
        for (end, text) in text_ends.iter_mut().zip(texts) {
            joined.extend_from_slice(text.as_bytes());
            *end = joined.len() as u32;
        }
        Self {
            parent_span_id: parent,
            server: SpanContext {
                trace_id: [7; 16],
                span_id: [8; 8],
                sampled: true,
            },
            http_span_id: [9; 8],
            start_unix_nanos: 1_000,
            end_unix_nanos: 2_000,
            peer: SocketAddr::from(([127, 0, 0, 1], 40_000)),
            https: false,
            protocol_version: "1.1",
            status,
            response_bytes: 321,
            request_bytes: 5,
            texts: joined,
            text_ends,
        }
    }
}

/// What the connection knows once the answer is out.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    /// The request's head and the buffer it points into.
    pub head: &'a Head,
    /// The buffer.
    pub buf: &'a [u8],
    /// The client's address.
    pub peer: SocketAddr,
    /// Came over TLS.
    pub https: bool,
    /// A relayed HTTP/2 stream.
    pub http2: bool,
    /// The status answered.
    pub status: u16,
    /// Bytes answered.
    pub response_bytes: u64,
    /// Request body bytes.
    pub request_bytes: usize,
}

/// Spans that never reached the collector, by why.
#[derive(Debug, Default)]
pub struct SpanCounters {
    /// The export queue was full (the collector slow or hanging): dropped on the shard.
    pub queue_full: AtomicU64,
    /// Their export failed (the collector down or refusing).
    pub export_failed: AtomicU64,
}

/// The shards' handle on the otel plugin.
#[derive(Debug)]
pub struct Tracer {
    ids: IdSource,
    queue: mpsc::Sender<FinishedRequest>,
    /// Wakes the exporter when a batch is waiting (the exporter never parks on the queue
    /// itself, so a send is a few atomics and never a wake-up of another thread).
    batch_ready: Arc<Notify>,
    /// Records per batch.
    batch_records: usize,
    counters: Arc<SpanCounters>,
    last_drop_warning: AtomicU64,
}

impl Tracer {
    /// A tracer for `shards` shards handing records to `queue`.
    #[must_use]
    pub fn new(
        shards: usize,
        queue: mpsc::Sender<FinishedRequest>,
        counters: Arc<SpanCounters>,
        (batch_ready, batch_records): (Arc<Notify>, usize),
    ) -> Self {
        Self {
            ids: IdSource::new(shards),
            queue,
            batch_ready,
            batch_records,
            counters,
            last_drop_warning: AtomicU64::new(0),
        }
    }

    /// Starts a request's trace on `shard` and sets the worker's `Traceparent` and
    /// `Uber-Trace-Id` in `headers` (replacing the caller's, as Go's `Header.Set`).
    pub fn begin(
        &self,
        shard: usize,
        head: &Head,
        buf: &[u8],
        headers: &mut HeaderTable,
    ) -> RequestTrace {
        let parent = incoming_context(head, buf);
        let server = SpanContext {
            trace_id: parent.map_or_else(|| self.ids.trace_id(shard), |p| p.trace_id),
            span_id: self.ids.span_id(shard),
            // rr's sampler: parent-based, always on for a root.
            sampled: parent.is_none_or(|p| p.sampled),
        };
        let http = SpanContext {
            span_id: self.ids.span_id(shard),
            ..server
        };
        headers.set_owned(b"Traceparent", &otlp::format_traceparent(&http));
        headers.set_owned(b"Uber-Trace-Id", &otlp::format_uber_trace_id(&http));
        RequestTrace {
            parent,
            server,
            http_span_id: http.span_id,
            start_unix_nanos: unix_nanos(),
        }
    }

    /// Ends a request's trace: its record goes to the exporter, or is dropped and counted
    /// when the queue is full.
    pub fn end(&self, trace: RequestTrace, answered: &Answered<'_>) {
        if !trace.server.sampled {
            return;
        }
        let record = record(trace, answered);
        if self.queue.try_send(record).is_err() {
            self.count_dropped();
        } else if self.queue.max_capacity() - self.queue.capacity() >= self.batch_records {
            self.batch_ready.notify_one();
        }
    }

    fn count_dropped(&self) {
        // Two spans per request.
        let total = self.counters.queue_full.fetch_add(2, Ordering::Relaxed) + 2;
        let now = crate::clock::unix_seconds();
        let last = self.last_drop_warning.load(Ordering::Relaxed);
        if now >= last + DROP_WARNING_INTERVAL_SECONDS
            && self
                .last_drop_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(target: "otel", dropped_spans_total = total,
                "span export queue is full (collector down or slow): spans dropped");
        }
    }
}

fn unix_nanos() -> u64 {
    u64::try_from(crate::clock::unix_now().as_nanos()).unwrap_or(u64::MAX)
}

/// The caller's span: `traceparent`, overridden by a valid `uber-trace-id` (rr's
/// propagators run TraceContext, Baggage, then Jaeger; each valid one replaces the last).
fn incoming_context(head: &Head, buf: &[u8]) -> Option<SpanContext> {
    let w3c = head
        .value(buf, "traceparent")
        .and_then(otlp::parse_traceparent);
    let jaeger = head
        .value(buf, "uber-trace-id")
        .and_then(otlp::parse_uber_trace_id);
    jaeger.or(w3c)
}

fn record(trace: RequestTrace, answered: &Answered<'_>) -> FinishedRequest {
    let (head, buf) = (answered.head, answered.buf);
    // A buffer lent to an abandoned worker write is gone: the head's ranges point nowhere.
    let parts: [&[u8]; TEXTS] = if buf.len() >= head.len {
        [
            &buf[head.method.clone()],
            &buf[head.target.clone()],
            head.value(buf, "host").unwrap_or_default(),
            head.value(buf, "user-agent").unwrap_or_default(),
            if trace.parent.is_some() {
                head.value(buf, "tracestate").unwrap_or_default()
            } else {
                b""
            },
        ]
    } else {
        [b""; TEXTS]
    };
    let mut texts = Vec::with_capacity(parts.iter().map(|part| part.len()).sum());
    let mut text_ends = [0u32; TEXTS];
    for (end, part) in text_ends.iter_mut().zip(parts) {
        texts.extend_from_slice(part);
        *end = u32::try_from(texts.len()).unwrap_or(u32::MAX);
    }
    FinishedRequest {
        parent_span_id: trace.parent.map(|parent| parent.span_id),
        server: trace.server,
        http_span_id: trace.http_span_id,
        start_unix_nanos: trace.start_unix_nanos,
        end_unix_nanos: unix_nanos().max(trace.start_unix_nanos),
        peer: answered.peer,
        https: answered.https,
        protocol_version: match (answered.http2, head.minor_version) {
            (true, _) => "2",
            (false, 0) => "1.0",
            (false, _) => "1.1",
        },
        status: answered.status,
        response_bytes: answered.response_bytes,
        request_bytes: answered.request_bytes as u64,
        texts,
        text_ends,
    }
}
