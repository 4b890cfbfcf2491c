//! One client connection on its shard: read a head, read the body within limits, run the
//! request on the pool, write the reply, repeat while keep-alive holds. Pipelined requests
//! wait in the read buffer and are answered in order.
//!
//! Every wait is bounded: the head by `read_header_timeout` from its first byte, each body
//! read by the same, the whole body by `body_min_rate`, each write by `write_timeout`. An
//! answer sent before the request was read to its end is followed by a lingering close.

mod chain;
mod read;

use super::head::{BodyKind, Head};
use super::request::{self, BodyClass, RequestScratch};
use super::sink::{HttpSink, RequestFacts, RETAINED_BUFFER_BYTES_MAX};
use super::uploads::{self, FormRefusal};
use super::wire::DateCache;
use super::HttpShared;
use crate::aio::Stream;
use crate::memory::LARGE_REQUEST_BYTES;
use crate::plugins::client_io::{linger_close, write_all_within};
use crate::pool::{ExecError, LentBody, Request};
use crate::runtime::ShardContext;
use chain::answer_in_chain;
use read::{read_request, ReadRequest};
use ringrunner_protocol::http::{check_field_count, parse_urlencoded, FormError, RequestContext};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use tokio::time::Instant as Deadline;
use tokio_uring::buf::BoundedBuf;

/// A raw body from this size on is lent to the worker write instead of copied into the
/// frame (below it, one write of a small copy is cheaper than two writes).
const LEND_BODY_MIN_BYTES: usize = 64 * 1024;

/// Smallest free space asked of the kernel per read.
const READ_CHUNK: usize = 16 * 1024;

/// Why reading stopped.
enum ReadEnd {
    /// The client closed, or the read failed.
    Closed,
    /// No bytes within the timeout.
    TimedOut,
    /// The server is shutting down and the connection is idle.
    Stopping,
}

/// Why a request ended the connection before reaching the pool.
enum Refusal {
    /// Close without an answer (the client is gone, or the server stops).
    Silent,
    /// Answer, then close at once.
    Close(Vec<u8>),
    /// Answer, then close lingeringly: the client may still be sending.
    Linger(Vec<u8>),
}

/// A connection's reused buffers.
struct Connection {
    stream: Stream,
    buf: Vec<u8>,
    head: Head,
    body: Vec<u8>,
    context: Vec<u8>,
    out: Vec<u8>,
    scratch: RequestScratch,
    /// Body and reply bytes of the request just served (to know when it was a large one).
    moved_bytes: usize,
    date: DateCache,
    /// The shard the connection lives on (its relay handles and frame buffers).
    shard: Rc<ShardContext>,
    /// Header lines the `headers` middleware puts on this request's answer.
    chain_head: Vec<u8>,
    /// `gzip` wraps this request's answer and the client accepts gzip.
    compress: bool,
}

impl Connection {
    /// Reads more bytes into `buf`, before `deadline`; when `idle`, shutdown interrupts.
    async fn read_more(
        &mut self,
        deadline: Deadline,
        shared: &HttpShared,
        idle: bool,
    ) -> Result<(), ReadEnd> {
        let spare = self.buf.capacity() - self.buf.len();
        if spare == 0 || (spare < READ_CHUNK / 2 && self.buf.capacity() < READ_CHUNK * 4) {
            self.buf.reserve(READ_CHUNK);
        }
        let buf = std::mem::take(&mut self.buf);
        let filled = buf.len();
        let read = self.stream.read(buf.slice(filled..));
        let stopping = shared.lifecycle.stop.notified();
        // A relayed HTTP/2 stream's pair is never idle to a stop: its request may be on
        // the way, and the HTTP/2 connection closes the pair itself.
        let idle = idle && !self.scratch.http2;
        let outcome = if idle {
            if shared.lifecycle.is_stopping() {
                return Err(ReadEnd::Stopping);
            }
            tokio::select! {
                result = tokio::time::timeout_at(deadline, read) => Some(result),
                () = stopping => None,
            }
        } else {
            Some(tokio::time::timeout_at(deadline, read).await)
        };
        let Some(outcome) = outcome else {
            self.buf = Vec::with_capacity(READ_CHUNK);
            return Err(ReadEnd::Stopping);
        };
        let Ok((result, slice)) = outcome else {
            // The cancelled read keeps its buffer; the connection is closed anyway.
            self.buf = Vec::with_capacity(READ_CHUNK);
            return Err(ReadEnd::TimedOut);
        };
        self.buf = slice.into_inner();
        match result {
            Ok(0) | Err(_) => Err(ReadEnd::Closed),
            Ok(_) => Ok(()),
        }
    }

    /// Writes one of our own answers, bounded by `write_timeout`; false when it did not go out.
    async fn write(&mut self, bytes: Vec<u8>, shared: &HttpShared) -> bool {
        let (result, _) = write_all_within(&self.stream, bytes, shared.config.write_timeout).await;
        result.is_ok()
    }

    /// Sends `100 Continue` when `pending` (then clears it); a client that cannot take it
    /// is refused silently.
    async fn continue_once(
        &mut self,
        pending: &mut bool,
        shared: &HttpShared,
    ) -> Result<(), Refusal> {
        if std::mem::take(pending)
            && !self
                .write(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(), shared)
                .await
        {
            return Err(Refusal::Silent);
        }
        Ok(())
    }

    /// Sends a refusal's answer and closes as it says.
    async fn refuse(&mut self, refusal: Refusal, shared: &HttpShared) {
        match refusal {
            Refusal::Silent => {}
            Refusal::Close(answer) => {
                self.write(answer, shared).await;
            }
            Refusal::Linger(answer) => {
                if self.write(answer, shared).await {
                    linger_close(&self.stream, std::mem::take(&mut self.body)).await;
                }
            }
        }
    }

    /// After a request: a buffer grown by a large body or reply goes back to the allocator
    /// instead of staying with an idle keep-alive connection, and after a multi-megabyte
    /// one the freed pages go back to the OS at once.
    fn shrink_buffers(&mut self) {
        let mut released = 0;
        if self.body.capacity() > RETAINED_BUFFER_BYTES_MAX {
            released += self.body.capacity();
            self.body = Vec::new();
        }
        if self.buf.capacity() > RETAINED_BUFFER_BYTES_MAX && self.buf.len() < READ_CHUNK {
            released += self.buf.capacity();
            let mut kept = Vec::with_capacity(READ_CHUNK);
            kept.extend_from_slice(&self.buf);
            self.buf = kept;
        }
        if self.context.capacity() > RETAINED_BUFFER_BYTES_MAX {
            released += self.context.capacity();
            self.context = Vec::new();
        }
        if released + self.moved_bytes > LARGE_REQUEST_BYTES {
            crate::memory::release_freed_pages_now_and_later(&self.shard);
        }
        self.moved_bytes = 0;
    }
}

/// How a connection's requests reached us.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Origin {
    /// The client came over TLS (here, or at the FastCGI front server).
    pub https: bool,
    /// The requests are HTTP/2 streams relayed over this connection.
    pub http2: bool,
}

/// The first bytes of a cleartext HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one connection until it closes: HTTP/1.1, or HTTP/2 when TLS's ALPN agreed on
/// `h2` or (with `http2.h2c`) a cleartext client opens with the HTTP/2 preface.
pub(super) async fn serve(
    stream: Stream,
    peer: SocketAddr,
    origin: Origin,
    shared: Arc<HttpShared>,
    shard: Rc<ShardContext>,
) {
    let _counted = shared.lifecycle.connection_opened();
    let _ = stream.set_nodelay(true);
    let https = origin.https;
    if stream.is_tls() {
        let handshake = tokio::time::timeout(shared.read_header_timeout, stream.handshake());
        match handshake.await {
            Ok(Ok(Some(protocol))) if protocol == b"h2" => {
                let shared = Arc::clone(&shared);
                return super::http2::serve(stream, Vec::new(), peer, true, shared, shard).await;
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::debug!(target: "http", %peer, %error, "tls handshake failed");
                stream.shut_down();
                return;
            }
            Err(_) => {
                tracing::debug!(target: "http", %peer, "tls handshake timed out");
                stream.shut_down();
                return;
            }
        }
    }
    let mut conn = Connection {
        stream,
        buf: Vec::with_capacity(READ_CHUNK),
        head: Head::default(),
        body: Vec::new(),
        context: Vec::new(),
        out: Vec::new(),
        scratch: RequestScratch::default(),
        moved_bytes: 0,
        date: DateCache::default(),
        shard,
        chain_head: Vec::new(),
        compress: false,
    };
    conn.scratch.https = https;
    conn.scratch.http2 = origin.http2;
    if shared.config.http2.h2c && !origin.http2 && !https {
        match opens_with_preface(&mut conn, &shared).await {
            None => return,
            Some(true) => {
                let Connection {
                    stream, buf, shard, ..
                } = conn;
                let shared = Arc::clone(&shared);
                return super::http2::serve(stream, buf, peer, false, shared, shard).await;
            }
            Some(false) => {}
        }
    }
    let redirect_port = shared.redirect_port.filter(|_| !https);
    loop {
        let keep_open = match read_request(&mut conn, peer, &shared).await {
            Ok(_) if redirect_port.is_some() => {
                let mut date_line = Vec::with_capacity(40);
                conn.date
                    .header(&mut date_line, crate::clock::unix_seconds());
                let answer = super::tls::redirect_answer(
                    &conn.buf[conn.head.method.clone()],
                    &conn.buf[conn.head.target.clone()],
                    conn.head.value(&conn.buf, "host"),
                    redirect_port.unwrap_or(443),
                    &date_line,
                );
                conn.refuse(Refusal::Close(answer), &shared).await;
                false
            }
            Ok(request) => match answer_in_chain(&mut conn, &shared, &request).await {
                Some(keep_open) => keep_open,
                None => relay(&mut conn, peer, &shared, request).await,
            },
            Err(refusal) => {
                conn.refuse(refusal, &shared).await;
                false
            }
        };
        if !keep_open {
            break;
        }
        conn.shrink_buffers();
    }
    // A read cancelled by a timeout still holds the socket inside the ring until it
    // completes; shutdown completes it, so the client sees the close now.
    let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    let large = conn.moved_bytes > LARGE_REQUEST_BYTES || conn.buf.capacity() > LARGE_REQUEST_BYTES;
    let shard = Rc::clone(&conn.shard);
    drop(conn);
    if large {
        crate::memory::release_freed_pages_now_and_later(&shard);
    }
}

/// Reads until the connection's first bytes tell HTTP/2's preface from an HTTP/1 request
/// (most often the first read tells); None when the client left or went quiet.
async fn opens_with_preface(conn: &mut Connection, shared: &HttpShared) -> Option<bool> {
    let deadline = Deadline::now() + shared.read_header_timeout;
    loop {
        let seen = conn.buf.len().min(H2_PREFACE.len());
        if conn.buf[..seen] != H2_PREFACE[..seen] {
            return Some(false);
        }
        if seen == H2_PREFACE.len() {
            return Some(true);
        }
        if conn
            .read_more(deadline, shared, conn.buf.is_empty())
            .await
            .is_err()
        {
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
            return None;
        }
    }
}

/// Runs a read request on the pool and answers it; false when the connection is done.
async fn relay(
    conn: &mut Connection,
    peer: SocketAddr,
    shared: &HttpShared,
    request: ReadRequest,
) -> bool {
    let ReadRequest {
        started,
        body_kind,
        consumed,
        close_after,
    } = request;
    let head_len = conn.head.len;
    let minor_version = conn.head.minor_version;
    let keep_alive = conn.head.keep_alive(&conn.buf) && !close_after;
    let facts = RequestFacts {
        minor_version,
        is_head: &conn.buf[conn.head.method.clone()] == b"HEAD",
        keep_alive,
    };
    let Connection {
        stream,
        buf,
        head,
        body,
        context,
        out,
        scratch,
        moved_bytes,
        date,
        shard,
        chain_head,
        compress,
    } = conn;
    if let Some(metrics) = &shared.metrics {
        metrics.begin(shard.index());
    }
    let raw_body: &[u8] = match body_kind {
        BodyKind::Chunked => body,
        _ => &buf[head_len..consumed],
    };
    let method = &buf[head.method.clone()];
    let class = request::body_class(method, head.value(buf, "content-type"));
    let mut sink = HttpSink::new(
        stream,
        out,
        facts,
        (&shared.lifecycle, shared.config.write_timeout),
        date,
    );
    sink.set_middleware_head(chain_head);
    sink.set_compress(*compress);
    sink.set_sendfile(shared.config.sendfile);
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
        let close = sink.close;
        buf.drain(..consumed);
        return !close;
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
    let (uri, remote_addr) = (&scratch.uri, &scratch.remote_addr);
    {
        let method_text = String::from_utf8_lossy(method);
        let request_context = RequestContext {
            remote_addr,
            protocol: match (scratch.http2, minor_version) {
                (true, _) => "HTTP/2.0",
                (false, 0) => "HTTP/1.0",
                (false, _) => "HTTP/1.1",
            },
            method: &method_text,
            uri,
            headers: scratch.headers.view(buf),
            cookies: &scratch.cookies,
            raw_query: &scratch.raw_query,
            parsed,
            uploads: uploads_json,
        };
        context.clear();
        // One codec per server, so a worker sees one shape for its whole life.
        request_context.encode(shared.config.context_codec, context);
    }
    let codec = shared.config.context_codec.flags();
    let result = if lend {
        let chunked = body_kind == BodyKind::Chunked;
        let lent = if chunked {
            LentBody::new(std::mem::take(body), 0..raw_len)
        } else {
            LentBody::new(std::mem::take(buf), head_len..consumed)
        };
        let request = Request {
            codec,
            context,
            body: &[],
            lent: Some(&lent),
        };
        let result = shared.pool.exec_streamed(shard, request, &mut sink).await;
        match (lent.into_buffer(), chunked) {
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
        shared.pool.exec_streamed(shard, request, &mut sink).await
    };
    let no_workers = matches!(result, Err(ExecError::NoFreeWorkers));
    sink.finish(
        result,
        shared.config.internal_error_code,
        shared.config.pool.debug,
    )
    .await;
    if let Some(metrics) = &shared.metrics {
        metrics.end(shard.index(), sink.status, started.elapsed(), no_workers);
    }
    if let (Some(otel), Some(trace)) = (&shared.otel, trace) {
        let (status, response_bytes, request_bytes) = (sink.status, sink.written, raw_len);
        let (https, http2) = (scratch.https, scratch.http2);
        let answered = crate::plugins::otel::Answered {
            head,
            buf,
            peer,
            https,
            http2,
            status,
            response_bytes,
            request_bytes,
        };
        otel.end(trace, &answered);
    }
    // The record's fields are only built when it is written (rr's default logs write it;
    // `level: error` and above do not).
    if tracing::enabled!(target: "http", tracing::Level::INFO) {
        let record = RequestRecord {
            method: buf.get(head.method.clone()),
            target: buf.get(head.target.clone()),
            status: sink.status,
            written: sink.written,
            peer,
            read_bytes: raw_len,
            started,
        };
        record.emit(shared.config.access_logs);
    }
    let close = sink.close;
    *moved_bytes = raw_len + usize::try_from(sink.written).unwrap_or(usize::MAX);
    if buf.len() >= consumed {
        buf.drain(..consumed);
    }
    !close
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
