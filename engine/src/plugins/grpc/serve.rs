//! One gRPC connection: HTTP/2 by the `h2` crate on the shard, over the connection's own
//! socket ([`PollStream`]); each stream is a call ([`call::handle`]) on a task of its own.
//!
//! Bounds: `max_concurrent_streams` calls per connection (more are refused by h2 with
//! REFUSED_STREAM), flow-control windows per stream and connection, a header list of at
//! most [`MAX_HEADER_LIST_BYTES`] (10,000 metadata entries are refused, not buffered),
//! h2's guards against reset, PING and SETTINGS floods, and the keepalive options:
//! `max_connection_idle`, `max_connection_age` (+ `_grace`), a ping every `ping_time` that
//! must be answered within `timeout`.

use super::call::{self, CallSite};
use super::metadata::Peer;
use super::GrpcShared;
use crate::aio::{PollStream, Stream};
use crate::runtime::ShardContext;
use bytes::Bytes;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Bytes a client may send on one stream before the call takes them.
const STREAM_WINDOW: u32 = 1024 * 1024;
/// Bytes a client may send on all streams of a connection before they are taken.
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;
/// Request header list bytes at most (grpc-go's default is 16 MB; ours keeps a metadata
/// flood small).
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// Answer bytes h2 may hold per stream for a client that has not opened its window.
const SEND_BUFFER: usize = 256 * 1024;
/// Streams the client may reset before we accepted them before the connection ends
/// (CVE-2023-44487, rapid reset).
const PENDING_ACCEPT_RESETS: usize = 20;
/// Time the TLS and HTTP/2 handshakes may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long each write to the socket may stall.
const WRITE_STALL: Duration = Duration::from_secs(60);
/// How long a connection that said GOAWAY and has no stream left is given to close.
const CLOSING_GRACE: Duration = Duration::from_secs(1);

/// Serves a gRPC connection until it closes.
pub(super) async fn serve(
    stream: Stream,
    peer: Option<SocketAddr>,
    shared: Arc<GrpcShared>,
    shard: Rc<ShardContext>,
) {
    let _connection_guard = shared.lifecycle.connection_opened();
    let stream = Rc::new(stream);
    let tls = stream.is_tls();
    let Some(mut connection) = handshake(&stream, &shared, peer).await else {
        stream.shut_down();
        return;
    };
    let site = Rc::new(CallSite {
        peer: Peer { address: peer, tls },
        shared: Arc::clone(&shared),
        shard,
    });
    let calls = Rc::new(OpenCalls {
        count: Cell::new(0),
        idle_since: Cell::new(Instant::now()),
        drained: tokio::sync::Notify::new(),
    });
    let limits = Limits::new(&shared);
    let mut ping = connection.ping_pong();
    let mut last_ping = Instant::now();
    // Set while a keepalive ping awaits its answer: the connection closes past it.
    let mut pong_deadline: Option<Instant> = None;
    let stop = shared.lifecycle.stop.notified();
    tokio::pin!(stop);
    stop.as_mut().enable();
    let mut closing_since: Option<Instant> = None;
    loop {
        if closing_since.is_none() && shared.lifecycle.is_stopping() {
            connection.graceful_shutdown();
            closing_since = Some(Instant::now());
        }
        let idle = calls.count.get() == 0;
        let idle_deadline = limits
            .idle
            .map(|idle_max| calls.idle_since.get() + idle_max);
        let ping_deadline = last_ping + shared.config.ping_time;
        let closed_deadline = closing_since.map(|since| {
            let grace = if idle {
                CLOSING_GRACE
            } else {
                limits.age_grace
            };
            since.max(calls.idle_since.get()) + grace
        });
        tokio::select! {
            accepted = connection.accept() => match accepted {
                Some(Ok((request, respond))) => spawn_call(request, respond, &site, &calls),
                Some(Err(error)) => {
                    tracing::debug!(target: "grpc", ?peer, %error, "http/2 connection ended");
                    break;
                }
                None => break,
            },
            // Shutdown, max_connection_idle or max_connection_age: GOAWAY, calls finish.
            () = goaway_due(stop.as_mut(), idle_deadline.filter(|_| idle), limits.age_deadline),
                if closing_since.is_none() => {
                connection.graceful_shutdown();
                closing_since = Some(Instant::now());
            }
            () = sleep_until(closed_deadline) => break,
            () = tokio::time::sleep_until(ping_deadline), if ping.is_some() && pong_deadline.is_none() => {
                let sent = ping.as_mut().is_some_and(|ping| ping.send_ping(h2::Ping::opaque()).is_ok());
                if !sent {
                    break;
                }
                pong_deadline = Some(Instant::now() + shared.config.timeout);
            }
            pong = poll_pong(ping.as_mut()), if pong_deadline.is_some() => {
                if !pong {
                    break;
                }
                pong_deadline = None;
                last_ping = Instant::now();
            }
            () = sleep_until(pong_deadline) => {
                tracing::debug!(target: "grpc", ?peer, "keepalive ping not answered: connection closed");
                break;
            }
            () = calls.drained.notified(), if !idle => {}
        }
    }
    drop(connection);
    stream.shut_down();
}

/// The calls open on a connection and when the last one ended.
struct OpenCalls {
    count: Cell<usize>,
    idle_since: Cell<Instant>,
    drained: tokio::sync::Notify,
}

/// The TLS-agnostic HTTP/2 handshake, within [`HANDSHAKE_TIMEOUT`]; None when it failed,
/// timed out, or shutdown began first (a client that has not said a word yet holds no
/// call: shutdown does not wait for it).
async fn handshake(
    stream: &Rc<Stream>,
    shared: &GrpcShared,
    peer: Option<SocketAddr>,
) -> Option<h2::server::Connection<PollStream, Bytes>> {
    let io = PollStream::new(Rc::clone(stream), Vec::new(), WRITE_STALL);
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(shared.config.max_concurrent_streams)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_send_buffer_size(SEND_BUFFER)
        .max_pending_accept_reset_streams(PENDING_ACCEPT_RESETS);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, builder.handshake::<_, Bytes>(io));
    let stopping = shared.lifecycle.stop.notified();
    // A stop that began before this task first ran notified no one: look once more.
    if shared.lifecycle.is_stopping() {
        return None;
    }
    tokio::select! {
        handshake = handshake => match handshake {
            Ok(Ok(connection)) => Some(connection),
            Ok(Err(error)) => {
                tracing::debug!(target: "grpc", ?peer, %error, "http/2 handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(target: "grpc", ?peer, "http/2 handshake timed out");
                None
            }
        },
        () = stopping => None,
    }
}

/// Runs one call as a task of its own, counted open until it ends.
fn spawn_call(
    request: http::Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
    site: &Rc<CallSite>,
    calls: &Rc<OpenCalls>,
) {
    calls.count.set(calls.count.get() + 1);
    let (site, calls) = (Rc::clone(site), Rc::clone(calls));
    tokio::task::spawn_local(async move {
        call::handle(request, respond, &site).await;
        calls.count.set(calls.count.get() - 1);
        if calls.count.get() == 0 {
            calls.idle_since.set(Instant::now());
            calls.drained.notify_waiters();
        }
    });
}

/// A connection's keepalive limits.
struct Limits {
    idle: Option<Duration>,
    age_deadline: Option<Instant>,
    age_grace: Duration,
}

impl Limits {
    fn new(shared: &GrpcShared) -> Self {
        let config = &shared.config;
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        Self {
            idle: nonzero(config.max_connection_idle),
            age_deadline: nonzero(config.max_connection_age).map(|age| Instant::now() + age),
            age_grace: nonzero(config.max_connection_age_grace)
                .unwrap_or(Duration::from_secs(365 * 24 * 3600)),
        }
    }
}

/// Resolves when shutdown begins or either deadline passes.
async fn goaway_due(
    stop: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    idle_deadline: Option<Instant>,
    age_deadline: Option<Instant>,
) {
    tokio::select! {
        () = stop => {}
        () = sleep_until(idle_deadline) => {}
        () = sleep_until(age_deadline) => {}
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The answer to the keepalive ping in flight (the connection must be polled meanwhile:
/// it writes the ping and reads the pong); false when the connection failed.
async fn poll_pong(ping: Option<&mut h2::PingPong>) -> bool {
    match ping {
        Some(ping) => std::future::poll_fn(|cx| ping.poll_pong(cx)).await.is_ok(),
        None => std::future::pending().await,
    }
}
