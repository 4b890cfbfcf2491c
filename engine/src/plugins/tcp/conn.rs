//! One tcp connection (spec tcp-jobs A.4, with its recommended deviations): CONNECTED,
//! then bytes accumulate until they end with the delimiter (a delimiter split across reads
//! included) and go to a worker as one DATA event; reading pauses while the worker handles
//! it. At EOF, leftover bytes go as DATA before the one CLOSE. Every buffer is the
//! connection's own and reused; a message past `max_message_size`, a peer that stops
//! reading our writes for `write_timeout`, and (when set) one that sends nothing for
//! `read_timeout` close the connection; past `max_connections` a new one is closed at once.
//!
//! Worst-case work per input byte: one copy into the message buffer; per read, one
//! comparison of the buffer's end with the delimiter (its length, not the message's).

use super::{CloseSignal, TcpServer, TcpShared};
use crate::aio::Stream;
use crate::plugins::client_io::write_all_within;
use crate::pool::Request;
use crate::runtime::ShardContext;
use ringrunner_protocol::Flags;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

/// Bytes asked of the kernel per read at most (`read_buf_size` caps it lower): a larger
/// message takes more reads, not more memory per idle connection.
const READ_CHUNK_MAX: usize = 16 * 1024;

/// Buffers grown past this for one large message are not kept for the next.
const RETAINED_BYTES_MAX: usize = 256 * 1024;

/// How a connection goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Read the next message.
    Read,
    /// Close; send the CLOSE event unless the worker failed (spec A.3).
    Close { close_event: bool },
}

/// A connection's context prefix and reused buffers.
struct Exchange<'a> {
    shared: &'a TcpShared,
    shard: &'a ShardContext,
    /// `{"remote_addr":…,"server":…,"uuid":…,"event":"` — the event name and `"}` follow.
    prefix: String,
    context: Vec<u8>,
    response: Vec<u8>,
}

impl Exchange<'_> {
    /// Sends one event and interprets the worker's reply, writing what it asks to `stream`.
    async fn event(&mut self, stream: &Stream, event: &str, body: &[u8]) -> Next {
        self.context.clear();
        self.context.extend_from_slice(self.prefix.as_bytes());
        self.context.extend_from_slice(event.as_bytes());
        self.context.extend_from_slice(b"\"}");
        let request = Request {
            codec: Flags::EMPTY,
            context: &self.context,
            body,
            lent: None,
        };
        let meta = match self
            .shared
            .pool
            .exec(self.shard, request, &mut self.response)
            .await
        {
            Ok(meta) => meta,
            Err(error) => {
                tracing::error!(target: "tcp", %error, "execute error");
                return Next::Close { close_event: false };
            }
        };
        let command = self.response.get(..meta.context_len).unwrap_or_default();
        match command {
            b"CONTINUE" => Next::Read,
            b"WRITE" | b"WRITECLOSE" => {
                let close = command == b"WRITECLOSE";
                let mut out = std::mem::take(&mut self.response);
                out.drain(..meta.context_len);
                let (written, returned) =
                    write_all_within(stream, out, self.shared.config.write_timeout).await;
                if let Some(returned) = returned {
                    self.response = returned;
                }
                if let Err(end) = written {
                    tracing::error!(target: "tcp", reason = ?end, "write response error");
                    return Next::Close { close_event: true };
                }
                if close {
                    Next::Close { close_event: true }
                } else {
                    Next::Read
                }
            }
            _ => Next::Close { close_event: true },
        }
    }

    /// Gives back the room one large message took.
    fn shrink(&mut self) {
        if self.response.capacity() > RETAINED_BYTES_MAX {
            self.response = Vec::new();
        }
    }
}

/// Serves one accepted connection of server `server` until it closes.
pub(super) async fn serve(
    stream: Stream,
    peer: Option<SocketAddr>,
    server: usize,
    shared: Arc<TcpShared>,
    shard: Rc<ShardContext>,
) {
    let _counted = shared.lifecycle.connection_opened();
    let config: &TcpServer = &shared.config.servers[server];
    let uuid = crate::uuid::new_v4();
    let max_connections = shared.config.max_connections;
    let Some(registration) = shared.connections.register(&uuid, max_connections) else {
        tracing::warn!(target: "tcp", server = %config.name, limit = max_connections,
            "tcp.max_connections connections are open, new connection closed");
        return stream.shut_down();
    };
    let signal = Arc::clone(&registration.signal);
    let remote = peer.map(|peer| peer.to_string()).unwrap_or_default();
    let mut exchange = Exchange {
        shared: &shared,
        shard: &shard,
        prefix: format!(
            "{{\"remote_addr\":{},\"server\":{},\"uuid\":\"{uuid}\",\"event\":\"",
            serde_json::Value::from(remote),
            serde_json::Value::from(config.name.as_str())
        ),
        context: Vec::with_capacity(160),
        response: Vec::new(),
    };
    let next = match exchange.event(&stream, "CONNECTED", b"").await {
        Next::Read => read_messages(&stream, config, &signal, &mut exchange).await,
        close => close,
    };
    stream.shut_down();
    if next == (Next::Close { close_event: true }) {
        // Its reply is read and dropped; at shutdown the pool may be gone (ignored).
        let _ = exchange.event(&stream, "CLOSE", b"").await;
    }
    drop(registration);
}

/// Ends after `read_timeout`; never when it is 0 (rr's: no limit).
async fn idle_limit(read_timeout: std::time::Duration) {
    if read_timeout.is_zero() {
        std::future::pending().await
    } else {
        tokio::time::sleep(read_timeout).await;
    }
}

/// Reads messages and hands each to a worker until the connection is to close.
async fn read_messages(
    stream: &Stream,
    server: &TcpServer,
    signal: &CloseSignal,
    exchange: &mut Exchange<'_>,
) -> Next {
    let shared = exchange.shared;
    let chunk = shared.config.read_buf_size.min(READ_CHUNK_MAX);
    let mut buf = vec![0u8; chunk];
    let mut message: Vec<u8> = Vec::new();
    loop {
        let closed = signal.wake.notified();
        let stopping = shared.lifecycle.stop.notified();
        if signal.is_closed() || shared.lifecycle.is_stopping() {
            return Next::Close { close_event: true };
        }
        let (result, returned) = tokio::select! {
            read = stream.read(buf) => read,
            () = closed => return Next::Close { close_event: true },
            () = stopping => return Next::Close { close_event: true },
            () = idle_limit(shared.config.read_timeout) => {
                tracing::warn!(target: "tcp", server = %server.name, timeout = ?shared.config.read_timeout,
                    "nothing received for tcp.read_timeout, connection closed");
                return Next::Close { close_event: true };
            }
        };
        buf = returned;
        let read = match result {
            Ok(0) => {
                // EOF: what is left is a last message, then the one CLOSE.
                if !message.is_empty() {
                    if let Next::Close { close_event: false } =
                        exchange.event(stream, "DATA", &message).await
                    {
                        return Next::Close { close_event: false };
                    }
                }
                return Next::Close { close_event: true };
            }
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(target: "tcp", %error, "read error, connection closed");
                return Next::Close { close_event: true };
            }
        };
        message.extend_from_slice(&buf[..read]);
        if message.len() > shared.config.max_message_size {
            tracing::error!(target: "tcp", server = %server.name, bytes = message.len(),
                limit = shared.config.max_message_size,
                "message without a delimiter over tcp.max_message_size, connection closed");
            return Next::Close { close_event: true };
        }
        if !message.ends_with(&server.delimiter) {
            continue;
        }
        let next = exchange.event(stream, "DATA", &message).await;
        message.clear();
        if message.capacity() > RETAINED_BYTES_MAX {
            message = Vec::new();
        }
        exchange.shrink();
        if next != Next::Read {
            return next;
        }
    }
}
