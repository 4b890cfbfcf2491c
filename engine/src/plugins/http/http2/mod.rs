//! HTTP/2 (`http.http2`): over TLS when ALPN agrees on `h2`, and in clear text with prior
//! knowledge when `h2c` is on. The h2 crate speaks the protocol on the shard, over the
//! connection's own socket ([`PollStream`]); each stream is served on the shard by the
//! request core ([`stream`]): the same middleware, limits, timeouts, error answers, logs
//! and metrics as HTTP/1.1 requests, no socket or task of its own beyond the stream's, and
//! the worker sees `HTTP/2.0`.
//!
//! Bounds: `max_concurrent_streams` open streams per connection (more are refused with
//! REFUSED_STREAM), a flow-control window per stream and per connection (what a client
//! may send before the stream's body is taken, within `max_request_size`), header lists as large as an HTTP/1.1 head,
//! and the h2 crate's guards against the known floods (rapid reset: streams reset before
//! they were accepted end the connection past a small count; CONTINUATION and header-list
//! floods: bounded by the header-list size; PING and SETTINGS: each answered once, the
//! answers bounded by the send buffer). An idle connection closes after
//! `read_header_timeout`, as an idle HTTP/1.1 one does.

mod stream;
mod writer;

use super::HttpShared;
use crate::aio::{PollStream, Stream};
use crate::runtime::ShardContext;
use bytes::Bytes;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Bytes a client may send on one stream before the worker's side takes them.
const STREAM_WINDOW: u32 = 256 * 1024;
/// Bytes a client may send on all streams of a connection before they are taken.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Response bytes h2 may hold per stream for a client that has not opened its window.
const SEND_BUFFER: usize = 128 * 1024;
/// Streams the client may reset before we accepted them, before the connection ends
/// (CVE-2023-44487, rapid reset).
const PENDING_ACCEPT_RESETS: usize = 20;

/// How long a connection that said GOAWAY and has no stream left is given to close.
const CLOSING_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The streams open on a connection and when the last one ended.
struct OpenStreams {
    count: Cell<usize>,
    idle_since: Cell<Instant>,
    drained: Notify,
}

impl OpenStreams {
    fn opened(&self) {
        self.count.set(self.count.get() + 1);
    }

    fn closed(&self) {
        self.count.set(self.count.get() - 1);
        if self.count.get() == 0 {
            self.idle_since.set(Instant::now());
            self.drained.notify_waiters();
        }
    }
}

/// Serves an HTTP/2 connection until it closes; `seed`: bytes already read off `stream`
/// (the cleartext preface); `https`: it came over TLS.
pub(super) async fn serve(
    stream: Stream,
    seed: Vec<u8>,
    peer: SocketAddr,
    https: bool,
    shared: Arc<HttpShared>,
    shard: Rc<ShardContext>,
) {
    let stream = Rc::new(stream);
    let io = PollStream::new(Rc::clone(&stream), seed, shared.config.write_timeout);
    let header_list = u32::try_from(ringrunner_protocol::http1::MAX_HEAD_BYTES).unwrap_or(u32::MAX);
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(shared.config.http2.max_concurrent_streams)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(header_list)
        .max_send_buffer_size(SEND_BUFFER)
        .max_pending_accept_reset_streams(PENDING_ACCEPT_RESETS);
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut connection = match tokio::time::timeout(shared.read_header_timeout, handshake).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::debug!(target: "http", %peer, %error, "http/2 handshake failed");
            stream.shut_down();
            return;
        }
        Err(_) => {
            tracing::debug!(target: "http", %peer, "http/2 handshake timed out");
            stream.shut_down();
            return;
        }
    };
    let site = Rc::new(stream::StreamSite::new(
        peer,
        https,
        Arc::clone(&shared),
        shard,
    ));
    let open = Rc::new(OpenStreams {
        count: Cell::new(0),
        idle_since: Cell::new(Instant::now()),
        drained: Notify::new(),
    });
    let stop = shared.lifecycle.stop.notified();
    tokio::pin!(stop);
    // Registered now: a stop that begins from here on wakes the loop.
    stop.as_mut().enable();
    let mut closing = false;
    let mut closing_since = Instant::now();
    loop {
        if !closing && shared.lifecycle.is_stopping() {
            connection.graceful_shutdown();
            closing = true;
        }
        if !closing {
            closing_since = Instant::now();
        }
        let idle_deadline = open.idle_since.get() + shared.read_header_timeout;
        let idle = !closing && open.count.get() == 0;
        // Once GOAWAY went out and the last stream ended, the client has a moment to close
        // (h2 waits for a PING's answer a client may never send).
        let closed_deadline = closing_since.max(open.idle_since.get()) + CLOSING_GRACE;
        let closed = closing && open.count.get() == 0;
        tokio::select! {
            accepted = connection.accept() => match accepted {
                Some(Ok((_, mut respond))) if open.count.get() >= site.max_streams() => {
                    // Streams reset mid-request count as open until their request is done
                    // (h2 no longer does): no more work for now (CVE-2023-44487).
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                }
                Some(Ok((request, respond))) => {
                    if site.reset_flood() {
                        tracing::warn!(target: "http", %peer,
                            "http/2 client resets streams mid-request in a flood: connection closed");
                        connection.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                        closing = true;
                        continue;
                    }
                    open.opened();
                    let (site, open) = (Rc::clone(&site), Rc::clone(&open));
                    tokio::task::spawn_local(async move {
                        stream::serve(request, respond, &site).await;
                        open.closed();
                    });
                }
                Some(Err(error)) => {
                    tracing::debug!(target: "http", %peer, %error, "http/2 connection ended");
                    break;
                }
                None => break,
            },
            () = &mut stop, if !closing => {
                connection.graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep_until(idle_deadline), if idle => {
                connection.graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep_until(closed_deadline), if closed => break,
            () = open.drained.notified(), if !idle => {}
        }
    }
    drop(connection);
    stream.shut_down();
}
