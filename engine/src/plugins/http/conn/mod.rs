//! One client connection on its shard: read a head, read the body within limits, run the
//! request on the pool, write the reply, repeat while keep-alive holds. Pipelined requests
//! wait in the read buffer and are answered in order.
//!
//! Every wait is bounded: the head by `read_header_timeout` from its first byte, each body
//! read by the same, the whole body by `body_min_rate`, each write by `write_timeout`. An
//! answer sent before the request was read to its end is followed by a lingering close.

mod read;

use super::answer::{Http1Writer, RETAINED_BUFFER_BYTES_MAX};
use super::chain::{answer_in_chain, ChainRequest};
use super::exchange::{self, BodyAt, Exchange};
use super::head::{BodyKind, Head};
use super::request::RequestScratch;
use super::sink::RequestFacts;
use super::wire::DateCache;
use super::HttpShared;
use crate::aio::Stream;
use crate::memory::LARGE_REQUEST_BYTES;
use crate::plugins::client_io::{linger_close, write_all_within};
use crate::runtime::ShardContext;
pub(super) use read::BodyClock;
use read::{read_request, ReadRequest};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use tokio::time::Instant as Deadline;
use tokio_uring::buf::BoundedBuf;

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
    if shared.config.http2.h2c && !https {
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
            Ok(request) => match run_chain(&mut conn, &shared, &request).await {
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

/// The middleware that may answer before a worker does ([`answer_in_chain`]), on an
/// HTTP/1 request; Some(keep_open) when one answered (the request is then consumed).
async fn run_chain(
    conn: &mut Connection,
    shared: &HttpShared,
    request: &ReadRequest,
) -> Option<bool> {
    let keep_alive = conn.head.keep_alive(&conn.buf) && !request.close_after;
    let write_timeout = shared.config.write_timeout;
    let mut writer = Http1Writer::new(&conn.stream, conn.head.minor_version, write_timeout);
    let mut chain_request = ChainRequest {
        buf: &conn.buf,
        head: &conn.head,
        chain_head: &mut conn.chain_head,
        compress: &mut conn.compress,
        out: &mut conn.out,
        date: &mut conn.date,
        keep_alive,
    };
    let answered = answer_in_chain(&mut chain_request, shared, &mut writer).await;
    if answered.is_some() && conn.buf.len() >= request.consumed {
        conn.buf.drain(..request.consumed);
    }
    answered
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
    let writer = Http1Writer::new(stream, minor_version, shared.config.write_timeout);
    let mut sink = exchange::sink_for(writer, (out, date), facts, shared, chain_head, *compress);
    let body_at = match body_kind {
        BodyKind::Chunked => BodyAt::Apart,
        _ => BodyAt::InBuf(head.len..consumed),
    };
    let exchange = Exchange {
        peer,
        started,
        buf,
        head,
        body,
        body_at,
        context,
        scratch,
        shard,
    };
    let read_bytes = exchange::relay(exchange, shared, &mut sink).await;
    let close = sink.close;
    *moved_bytes = read_bytes + usize::try_from(sink.written).unwrap_or(usize::MAX);
    if buf.len() >= consumed {
        buf.drain(..consumed);
    }
    !close
}
