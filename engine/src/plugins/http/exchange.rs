//! The request core's relay: one request, however it arrived (an HTTP/1 connection, an
//! HTTP/2 stream), run on the pool and answered through its front end's
//! [`AnswerWriter`]: the form body parsed (or refused with rr's text), the worker's context
//! built, the exec (a large raw body lent to the worker write), rr's answers for errors,
//! the `http_metrics` counters, the `otel` spans and the `http log` record.

use super::answer::AnswerWriter;
use super::chain::{answer_in_chain, ChainRequest};
use super::head::Head;
use super::request::{self, BodyClass, RequestScratch};
use super::sink::{HttpSink, RequestFacts};
use super::uploads::{self, FormRefusal};
use super::wire::DateCache;
use super::HttpShared;
use crate::pool::{ExecError, LentBody, Request};
use crate::runtime::ShardContext;
use ringrunner_protocol::http::{check_field_count, parse_urlencoded, FormError, RequestContext};
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;

/// A raw body from this size on is lent to the worker write instead of copied into the
/// frame (below it, one write of a small copy is cheaper than two writes).
const LEND_BODY_MIN_BYTES: usize = 64 * 1024;

/// Where a request's body is.
#[derive(Debug, Clone)]
pub(super) enum BodyAt {
    /// In the head's buffer, at this range (an HTTP/1 Content-Length body).
    InBuf(Range<usize>),
    /// In the body buffer, whole (a chunked HTTP/1 body, an HTTP/2 stream's DATA).
    Apart,
}

/// One request, read whole: its head and body and the buffers reused to relay it.
pub(super) struct Exchange<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// When its head was read.
    pub started: std::time::Instant,
    /// The bytes `head` indexes (and an HTTP/1 Content-Length body).
    pub buf: &'a mut Vec<u8>,
    /// The head: method, target, headers, version.
    pub head: &'a Head,
    /// A body read apart from `buf`.
    pub body: &'a mut Vec<u8>,
    /// Where the body is.
    pub body_at: BodyAt,
    /// The worker's request context, encoded here.
    pub context: &'a mut Vec<u8>,
    /// The parts the context is built from (reused between requests).
    pub scratch: &'a mut RequestScratch,
    /// The shard the request runs on.
    pub shard: &'a Rc<ShardContext>,
}

/// Runs the request on the pool and answers it through `sink`; the body's length (the
/// `read_bytes` of its record).
pub(super) async fn relay<W: AnswerWriter>(
    exchange: Exchange<'_>,
    shared: &HttpShared,
    sink: &mut HttpSink<'_, W>,
) -> usize {
    let (peer, started, shard) = (exchange.peer, exchange.started, exchange.shard);
    let (buf, head, body) = (exchange.buf, exchange.head, exchange.body);
    let (body_at, context, scratch) = (exchange.body_at, exchange.context, exchange.scratch);
    if let Some(metrics) = &shared.metrics {
        metrics.begin(shard.index());
    }
    let raw_body: &[u8] = match &body_at {
        BodyAt::Apart => body,
        BodyAt::InBuf(range) => &buf[range.clone()],
    };
    let method = &buf[head.method.clone()];
    let class = request::body_class(method, head.value(buf, "content-type"));
    // The worker's body: parsed form, raw bytes, or nothing. A multipart form's files live
    // until this function returns, after the last response byte.
    let mut parsed_body = Vec::new();
    let mut stored_form = None;
    let parses_form =
        matches!(class, BodyClass::UrlEncoded | BodyClass::Multipart) && !shared.config.raw_body;
    // rr's ParseForm counts the query's fields too (Go's limit) before the body's.
    let query = request::raw_query(&buf[head.target.clone()]);
    let parsed_form = match class {
        _ if parses_form && check_field_count(query).is_err() => {
            Err(FormRefusal::from(FormError::TooManyFields))
        }
        BodyClass::UrlEncoded if parses_form => parse_urlencoded(raw_body)
            .map(|tree| tree.write_json(&mut parsed_body))
            .map_err(FormRefusal::from),
        BodyClass::Multipart if parses_form => {
            let content_type = head.value(buf, "content-type").unwrap_or_default();
            uploads::store_multipart(raw_body, content_type, &shared.uploads, shard.backend())
                .await
                .map(|form| stored_form = Some(form))
        }
        _ => Ok(()),
    };
    if let Err(FormRefusal { status, text }) = parsed_form {
        tracing::warn!(target: "http", %peer, status, error = %text, "malformed form body");
        let text = format!("serve_http: {text}\n");
        sink.send_plain(status, &[], text.as_bytes());
        sink.flush_pending().await;
        if let Some(metrics) = &shared.metrics {
            metrics.end(shard.index(), status, started.elapsed(), false);
        }
        return raw_body.len();
    }
    let (worker_body, parsed, uploads_json): (&[u8], bool, Option<&[u8]>) =
        match (&class, &stored_form) {
            (BodyClass::None, _) => (&[], false, None),
            (_, Some(form)) => (&form.body, true, Some(&form.uploads)),
            (BodyClass::UrlEncoded, None) if !shared.config.raw_body => (&parsed_body, true, None),
            _ => (raw_body, false, None),
        };
    // A large raw body goes to the worker straight from the buffer it was read into.
    let lend = !parsed && !worker_body.is_empty() && worker_body.len() >= LEND_BODY_MIN_BYTES;
    let raw_len = raw_body.len();
    scratch.fill(head, buf, peer.ip(), &shared.trusted);
    if let Some(headers) = &shared.config.headers {
        for (name, value) in &headers.request {
            scratch
                .headers
                .push_owned(name.as_bytes(), value.as_bytes());
        }
    }
    let trace = (shared.otel.as_ref())
        .map(|otel| otel.begin(shard.index(), head, buf, &mut scratch.headers));
    encode_context(
        context,
        scratch,
        (head, buf),
        (parsed, uploads_json),
        shared,
    );
    let codec = shared.config.context_codec.flags();
    let result = if lend {
        let (apart, lent) = match body_at {
            BodyAt::Apart => (true, LentBody::new(std::mem::take(body), 0..raw_len)),
            BodyAt::InBuf(range) => (false, LentBody::new(std::mem::take(buf), range)),
        };
        let request = Request {
            codec,
            context,
            body: &[],
            lent: Some(&lent),
        };
        let result = shared.pool.exec_streamed(shard, request, sink).await;
        match (lent.into_buffer(), apart) {
            (Some(returned), true) => *body = returned,
            (Some(returned), false) => *buf = returned,
            (None, _) => {
                // The write that had it was abandoned (exec_ttl): so is the connection.
                sink.close = true;
            }
        }
        result
    } else {
        let request = Request {
            codec,
            context,
            body: worker_body,
            lent: None,
        };
        shared.pool.exec_streamed(shard, request, sink).await
    };
    let no_workers = matches!(result, Err(ExecError::NoFreeWorkers));
    sink.finish(
        result,
        shared.config.internal_error_code,
        shared.config.pool.debug,
    )
    .await;
    let done = Done {
        peer,
        started,
        shard: shard.index(),
        read_bytes: raw_len,
        no_workers,
        status: sink.status,
        written: sink.written,
    };
    done.account(shared, (head, buf), scratch, trace);
    raw_len
}

/// The worker's request context into `context` (cleared first): one codec per server, so
/// a worker sees one shape for its whole life.
fn encode_context(
    context: &mut Vec<u8>,
    scratch: &RequestScratch,
    (head, buf): (&Head, &[u8]),
    (parsed, uploads): (bool, Option<&[u8]>),
    shared: &HttpShared,
) {
    let method_text = String::from_utf8_lossy(&buf[head.method.clone()]);
    let request_context = RequestContext {
        remote_addr: &scratch.remote_addr,
        protocol: match (scratch.http2, head.minor_version) {
            (true, _) => "HTTP/2.0",
            (false, 0) => "HTTP/1.0",
            (false, _) => "HTTP/1.1",
        },
        method: &method_text,
        uri: &scratch.uri,
        headers: scratch.headers.view(buf),
        cookies: &scratch.cookies,
        raw_query: &scratch.raw_query,
        parsed,
        uploads,
    };
    context.clear();
    request_context.encode(shared.config.context_codec, context);
}

/// A request answered, as its counters, spans and log record see it.
struct Done {
    peer: SocketAddr,
    started: std::time::Instant,
    shard: usize,
    read_bytes: usize,
    no_workers: bool,
    status: u16,
    written: u64,
}

impl Done {
    /// The `http_metrics` counters, the `otel` spans and the `http log` record.
    fn account(
        &self,
        shared: &HttpShared,
        (head, buf): (&Head, &[u8]),
        scratch: &RequestScratch,
        trace: Option<crate::plugins::otel::RequestTrace>,
    ) {
        let Self {
            peer,
            started,
            status,
            written,
            read_bytes,
            ..
        } = *self;
        if let Some(metrics) = &shared.metrics {
            metrics.end(self.shard, status, started.elapsed(), self.no_workers);
        }
        if let (Some(otel), Some(trace)) = (&shared.otel, trace) {
            let answered = crate::plugins::otel::Answered {
                head,
                buf,
                peer,
                https: scratch.https,
                http2: scratch.http2,
                status,
                response_bytes: written,
                request_bytes: read_bytes,
            };
            otel.end(trace, &answered);
        }
        // The record's fields are only built when it is written (rr's default logs write
        // it; `level: error` and above do not).
        if tracing::enabled!(target: "http", tracing::Level::INFO) {
            let record = RequestRecord {
                method: buf.get(head.method.clone()),
                target: buf.get(head.target.clone()),
                status,
                written,
                peer,
                read_bytes,
                started,
            };
            record.emit(shared.config.access_logs);
        }
    }
}

/// What the `http log` record of a request says.
struct RequestRecord<'a> {
    method: Option<&'a [u8]>,
    target: Option<&'a [u8]>,
    status: u16,
    written: u64,
    peer: SocketAddr,
    read_bytes: usize,
    started: std::time::Instant,
}

impl RequestRecord<'_> {
    /// Writes it with rr's fields and types (Laravel Octane parses them): `elapsed` in whole
    /// milliseconds, `start` in Unix nanoseconds, `URI` the request target,
    /// `remote_address` with its port.
    fn emit(&self, access_logs: bool) {
        let (method, target) = (lossy(self.method), lossy(self.target));
        let took = self.started.elapsed();
        let elapsed = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let start =
            u64::try_from(crate::clock::unix_now().saturating_sub(took).as_nanos()).unwrap_or(0);
        let (status, peer, read_bytes, written) =
            (self.status, self.peer, self.read_bytes, self.written);
        if access_logs {
            tracing::info!(target: "http", status, method = %method, URI = %target,
                URL = %target, remote_address = %peer, read_bytes,
                write_bytes = written, start, elapsed, "http access log");
        } else {
            tracing::info!(target: "http", status, method = %method, URI = %target,
                URL = %target, remote_address = %peer, read_bytes,
                write_bytes = written, start, elapsed, "http log");
        }
    }
}

/// Request-line bytes as log text ("?" when missing).
fn lossy(bytes: Option<&[u8]>) -> std::borrow::Cow<'_, str> {
    bytes.map_or(std::borrow::Cow::Borrowed("?"), String::from_utf8_lossy)
}

/// Builds an exchange's head in a byte arena from fields that came by another protocol
/// (an HTTP/2 stream's head, FastCGI's parameters): nothing is parsed, the head's ranges
/// index the arena.
pub(super) struct HeadBuilder<'a> {
    buf: &'a mut Vec<u8>,
    head: &'a mut Head,
}

impl<'a> HeadBuilder<'a> {
    /// A head of `method` and `target` (HTTP/1.1 rules: the version a worker is told is
    /// the front end's own) in `buf`, both cleared first.
    pub(super) fn new(
        buf: &'a mut Vec<u8>,
        head: &'a mut Head,
        method: &[u8],
        target: &[u8],
    ) -> Self {
        buf.clear();
        head.headers.clear();
        head.minor_version = 1;
        head.method = push_range(buf, method);
        head.target = push_range(buf, target);
        head.len = buf.len();
        Self { buf, head }
    }

    /// Adds a field.
    pub(super) fn field(&mut self, name: &[u8], value: &[u8]) {
        let name = push_range(self.buf, name);
        let value = push_range(self.buf, value);
        self.head.headers.push((name, value));
        self.head.len = self.buf.len();
    }

    /// Adds a field whose name and value `write` appends to the arena (a name converted,
    /// values joined); `write` returns where the value starts.
    pub(super) fn field_with(&mut self, write: impl FnOnce(&mut Vec<u8>) -> usize) {
        let start = self.buf.len();
        let value_start = write(self.buf);
        debug_assert!((start..=self.buf.len()).contains(&value_start));
        self.head
            .headers
            .push((start..value_start, value_start..self.buf.len()));
        self.head.len = self.buf.len();
    }
}

fn push_range(buf: &mut Vec<u8>, bytes: &[u8]) -> Range<usize> {
    let start = buf.len();
    buf.extend_from_slice(bytes);
    start..buf.len()
}

/// A request's buffers, for the front ends that read a request whole apart from any
/// connection buffer (an HTTP/2 stream, a FastCGI request): one set per request.
#[derive(Debug, Default)]
pub(super) struct Buffers {
    /// The head's arena ([`HeadBuilder`]).
    pub buf: Vec<u8>,
    /// The head.
    pub head: Head,
    /// The body, whole.
    pub body: Vec<u8>,
    context: Vec<u8>,
    /// The answer buffer.
    pub out: Vec<u8>,
    chain_head: Vec<u8>,
    scratch: RequestScratch,
    /// The Date header cache.
    pub date: DateCache,
}

/// How a request read whole arrived.
#[derive(Debug, Clone, Copy)]
pub(super) struct Arrival {
    /// The client's address.
    pub peer: SocketAddr,
    /// When its head was read.
    pub started: std::time::Instant,
    /// It came over TLS (here or at a front server).
    pub https: bool,
    /// It came as an HTTP/2 stream (the worker's `protocol` is `HTTP/2.0`).
    pub http2: bool,
}

/// A sink for one request with the chain's part of the answer (its header lines, gzip,
/// sendfile).
pub(super) fn sink_for<'a, W: AnswerWriter>(
    writer: W,
    (out, date): (&'a mut Vec<u8>, &'a mut DateCache),
    facts: RequestFacts,
    shared: &'a HttpShared,
    chain_head: &'a [u8],
    compress: bool,
) -> HttpSink<'a, W> {
    let lifecycle = (&*shared.lifecycle, shared.config.write_timeout);
    let mut sink = HttpSink::new(writer, out, facts, lifecycle, date);
    sink.set_middleware_head(chain_head);
    sink.set_compress(compress);
    sink.set_sendfile(shared.config.sendfile);
    sink
}

/// Serves a request read whole into `buffers` (its body in `body`): the middleware chain,
/// then the relay, answered through `writer`.
pub(super) async fn serve_whole<W: AnswerWriter>(
    buffers: &mut Buffers,
    arrival: Arrival,
    (shared, shard): (&HttpShared, &Rc<ShardContext>),
    writer: &mut W,
) {
    let mut compress = false;
    let Buffers {
        buf,
        head,
        body,
        context,
        out,
        chain_head,
        scratch,
        date,
    } = buffers;
    let mut chain_request = ChainRequest {
        buf: buf.as_slice(),
        head,
        chain_head,
        compress: &mut compress,
        out,
        date,
        keep_alive: true,
    };
    if answer_in_chain(&mut chain_request, shared, &mut *writer)
        .await
        .is_some()
    {
        return;
    }
    let facts = RequestFacts {
        minor_version: 1,
        is_head: &buf[head.method.clone()] == b"HEAD",
        keep_alive: true,
    };
    let mut sink = sink_for(writer, (out, date), facts, shared, chain_head, compress);
    scratch.https = arrival.https;
    scratch.http2 = arrival.http2;
    let exchange = Exchange {
        peer: arrival.peer,
        started: arrival.started,
        buf,
        head,
        body,
        body_at: BodyAt::Apart,
        context,
        scratch,
        shard,
    };
    relay(exchange, shared, &mut sink).await;
}
