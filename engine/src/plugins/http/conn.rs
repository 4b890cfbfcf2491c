//! One client connection on its shard: read a head, read the body within limits, run the
//! request on the pool, write the reply, repeat while keep-alive holds. Pipelined requests
//! wait in the read buffer and are answered in order.

use super::head::{BodyKind, ChunkedDecoder, Head, HeadError};
use super::request::{self, BodyClass, RequestScratch};
use super::sink::{HttpSink, RequestFacts};
use super::uploads;
use super::{wire, HttpShared};
use crate::pool::Request;
use ringrunner_protocol::http::{parse_urlencoded, ContextCodec, RequestContext};
use ringrunner_protocol::Flags;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

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

/// A connection's reused buffers.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    head: Head,
    body: Vec<u8>,
    context: Vec<u8>,
    out: Vec<u8>,
    scratch: RequestScratch,
}

impl Connection {
    /// Reads more bytes into `buf`, before `deadline`; when `idle`, shutdown interrupts.
    async fn read_more(
        &mut self,
        deadline: tokio::time::Instant,
        shared: &HttpShared,
        idle: bool,
    ) -> Result<(), ReadEnd> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        let buf = std::mem::take(&mut self.buf);
        let filled = buf.len();
        let read = self.stream.read(buf.slice(filled..));
        let stopping = shared.lifecycle.stop.notified();
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

    async fn write(&mut self, bytes: Vec<u8>) {
        let _ = self.stream.write_all(bytes).await;
    }
}

/// Serves one connection until it closes.
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<HttpShared>) {
    let _counted = shared.lifecycle.connection_opened();
    let _ = stream.set_nodelay(true);
    let mut conn = Connection {
        stream,
        buf: Vec::with_capacity(READ_CHUNK),
        head: Head::default(),
        body: Vec::new(),
        context: Vec::new(),
        out: Vec::new(),
        scratch: RequestScratch::default(),
    };
    while serve_one(&mut conn, peer, &shared).await {}
    // A read cancelled by a timeout still holds the socket inside the ring until it
    // completes; shutdown completes it, so the client sees the close now.
    let _ = conn.stream.shutdown(std::net::Shutdown::Both);
}

/// Serves one request; false when the connection is done.
async fn serve_one(conn: &mut Connection, peer: SocketAddr, shared: &HttpShared) -> bool {
    let timeout = shared.read_header_timeout;
    // The head, whole within the timeout from its first byte (a slow client cannot hold the
    // connection by trickling); an idle keep-alive connection gets the same time.
    let mut head_deadline = None;
    loop {
        match Head::parse(&conn.buf, &mut conn.head) {
            Ok(Some(())) => break,
            Ok(None) => {
                let idle = conn.buf.is_empty();
                let now = tokio::time::Instant::now();
                let deadline = if idle {
                    now + timeout
                } else {
                    *head_deadline.get_or_insert(now + timeout)
                };
                match conn.read_more(deadline, shared, idle).await {
                    Ok(()) => {}
                    Err(ReadEnd::TimedOut) if !idle => {
                        tracing::debug!(target: "http", %peer, "request head timed out");
                        let reply = wire::plain_response(1, 408, "408 Request Timeout", true);
                        conn.write(reply).await;
                        return false;
                    }
                    Err(_) => return false,
                }
            }
            Err(error) => {
                refuse(conn, peer, error).await;
                return false;
            }
        }
    }
    let started = Instant::now();
    let head_len = conn.head.len;
    let minor_version = conn.head.minor_version;
    let body_kind = match conn.head.body_kind(&conn.buf) {
        Ok(kind) => kind,
        Err(error) => {
            refuse(conn, peer, error).await;
            return false;
        }
    };
    let limit = shared.config.max_request_size;
    let too_large = || {
        wire::plain_response(
            minor_version,
            413,
            "serve_http: http: request body too large\n",
            true,
        )
    };
    if matches!(body_kind, BodyKind::Length(n) if n > limit) {
        tracing::warn!(target: "http", %peer, "request body too large");
        conn.write(too_large()).await;
        return false;
    }
    let expects_continue = conn
        .head
        .value(&conn.buf, "expect")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    let mut continue_sent = false;
    // The body: Content-Length bytes stay in `buf`; chunked bodies are decoded into `body`.
    conn.body.clear();
    let consumed = match body_kind {
        BodyKind::Empty => head_len,
        BodyKind::Length(length) => {
            let end = head_len + length as usize;
            while conn.buf.len() < end {
                if expects_continue && !continue_sent && minor_version == 1 {
                    conn.write(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()).await;
                    continue_sent = true;
                }
                let deadline = tokio::time::Instant::now() + timeout;
                if conn.read_more(deadline, shared, false).await.is_err() {
                    tracing::debug!(target: "http", %peer, "client went away while sending the body");
                    return false;
                }
            }
            end
        }
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            let mut at = head_len;
            loop {
                match decoder.decode(&conn.buf[at..], &mut conn.body) {
                    Ok(used) => at += used,
                    Err(_) => {
                        refuse(
                            conn,
                            peer,
                            HeadError::BadRequest("malformed chunked encoding"),
                        )
                        .await;
                        return false;
                    }
                }
                if conn.body.len() as u64 > limit {
                    tracing::warn!(target: "http", %peer, "request body too large");
                    conn.write(too_large()).await;
                    return false;
                }
                if decoder.is_done() {
                    break at;
                }
                // Keep `buf` from growing with decoded chunks: drop what is consumed.
                conn.buf.drain(head_len..at);
                at = head_len;
                if expects_continue && !continue_sent {
                    conn.write(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()).await;
                    continue_sent = true;
                }
                let deadline = tokio::time::Instant::now() + timeout;
                if conn.read_more(deadline, shared, false).await.is_err() {
                    return false;
                }
            }
        }
    };
    let keep_alive = conn.head.keep_alive(&conn.buf) && !shared.lifecycle.is_stopping();
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
    } = conn;
    let raw_body: &[u8] = match body_kind {
        BodyKind::Chunked => body,
        _ => &buf[head_len..consumed],
    };
    let method = &buf[head.method.clone()];
    let class = request::body_class(method, head.value(buf, "content-type"));
    let mut sink = HttpSink::new(stream, out, facts);
    // The worker's body: parsed form, raw bytes, or nothing. A multipart form's files live
    // until this function returns, after the last response byte.
    let mut parsed_body = Vec::new();
    let mut stored_form = None;
    let parsed_form = match class {
        BodyClass::UrlEncoded if !shared.config.raw_body => parse_urlencoded(raw_body)
            .map(|tree| tree.write_json(&mut parsed_body))
            .map_err(|e| e.to_string()),
        BodyClass::Multipart if !shared.config.raw_body => {
            let content_type = head.value(buf, "content-type").unwrap_or_default();
            uploads::store_multipart(raw_body, content_type, &shared.uploads)
                .map(|form| stored_form = Some(form))
        }
        _ => Ok(()),
    };
    if let Err(error) = parsed_form {
        tracing::warn!(target: "http", %peer, %error, "malformed form body");
        let text = format!("serve_http: {error}\n");
        sink.send_plain(400, &[], text.as_bytes()).await;
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
    scratch.fill(head, buf, peer.ip(), &shared.trusted);
    let (uri, remote_addr) = (&scratch.uri, &scratch.remote_addr);
    let method_text = String::from_utf8_lossy(method);
    let request_context = RequestContext {
        remote_addr,
        protocol: if minor_version == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
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
    let codec = if shared.config.json_context {
        request_context.encode(ContextCodec::Json, context);
        Flags::CODEC_JSON
    } else {
        request_context.encode(ContextCodec::Proto, context);
        Flags::CODEC_PROTO
    };
    let result = shared
        .pool
        .exec_streamed(
            Request {
                codec,
                context,
                body: worker_body,
            },
            &mut sink,
        )
        .await;
    sink.finish(
        result,
        shared.config.internal_error_code,
        shared.config.pool.debug,
    )
    .await;
    if shared.config.access_logs {
        tracing::info!(target: "http", status = sink.status, method = %method_text, URI = %uri,
            remote_address = %remote_addr, read_bytes = raw_body.len(), write_bytes = sink.written,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "http access log");
    } else {
        tracing::info!(target: "http", status = sink.status, method = %method_text, URI = %uri,
            remote_address = %remote_addr, elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "http log");
    }
    let close = sink.close;
    buf.drain(..consumed);
    !close
}

/// Answers a request the parser refused and logs it; the connection then closes.
async fn refuse(conn: &mut Connection, peer: SocketAddr, error: HeadError) {
    let (status, text) = error.status();
    tracing::warn!(target: "http", %peer, status, ?error, "bad request");
    conn.write(wire::plain_response(1, status, text, true))
        .await;
}
