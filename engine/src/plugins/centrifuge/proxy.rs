//! The proxy server Centrifugo calls (spec centrifuge "The proxy"): HTTP/2 by the `h2`
//! crate on the shards, as the grpc plugin's; each unary call of
//! `centrifugal.centrifugo.proxy.CentrifugoProxy` becomes one payload for the pool: the
//! context is the incoming metadata as JSON with `"type":[<event>]`, the body the request
//! message as received (codec flag protobuf), and the worker's body is the answer message,
//! sent back as is once it reads as protobuf wire format.
//!
//! Bounds: [`STREAMS_MAX`] calls per connection, a request of at most
//! [`REQUEST_BYTES_MAX`], and the call's `grpc-timeout` (else [`CALL_TIMEOUT_DEFAULT`]):
//! a worker that has not answered by then is killed and replaced, as on `exec_ttl` (spec
//! [deviation]), and Centrifugo gets DEADLINE_EXCEEDED.

use super::CentrifugeShared;
use crate::aio::{PollStream, Stream};
use crate::plugins::grpc::{
    put_metadata_map, send_ok, send_status, CallStatus, MetadataSource, UnaryReply,
};
use crate::pool::{ExecError, Request};
use crate::runtime::ShardContext;
use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::HeaderMap;
use ringrunner_protocol::centrifuge::{check_wire_format, ProxyEvent, ProxyMethod, PROXY_SERVICE};
use ringrunner_protocol::grpc::{self, Code, UnaryReader};
use ringrunner_protocol::Flags;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Calls one connection may have open (Centrifugo multiplexes its proxy calls on one).
const STREAMS_MAX: u32 = 1024;
/// The largest request message (grpc-go's default receive limit, rr's server's).
pub const REQUEST_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// A call's deadline when it names none (Centrifugo always sends its proxy `timeout`).
pub const CALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// Bytes a client may send on one stream before the call takes them.
const STREAM_WINDOW: u32 = 1024 * 1024;
/// Bytes a client may send on all streams of a connection before they are taken.
const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;
/// The largest request header list.
const HEADER_LIST_BYTES: u32 = 64 * 1024;
/// Time the HTTP/2 handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long each write to the socket may stall.
const WRITE_STALL: Duration = Duration::from_secs(60);
/// Streams reset by the client before they were accepted, before the connection ends
/// (CVE-2023-44487, rapid reset).
const PENDING_ACCEPT_RESETS: usize = 20;
/// Request headers that are not metadata (grpc-go keeps them out of the incoming context).
const RESERVED_HEADERS: [&str; 8] = [
    "te",
    "connection",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-message-type",
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
];

/// Serves one connection from Centrifugo until it closes or shutdown drains it.
pub(super) async fn serve(stream: Stream, shared: Arc<CentrifugeShared>, shard: Rc<ShardContext>) {
    let _connection_guard = shared.lifecycle.connection_opened();
    let stream = Rc::new(stream);
    let io = PollStream::new(Rc::clone(&stream), Vec::new(), WRITE_STALL);
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(STREAMS_MAX)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(HEADER_LIST_BYTES)
        .max_pending_accept_reset_streams(PENDING_ACCEPT_RESETS);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, builder.handshake::<_, Bytes>(io));
    let Ok(Ok(mut connection)) = handshake.await else {
        tracing::debug!(target: "centrifuge", "http/2 handshake failed or timed out");
        stream.shut_down();
        return;
    };
    let stop = shared.lifecycle.stop.notified();
    tokio::pin!(stop);
    stop.as_mut().enable();
    let calls = Rc::new(OpenCalls::default());
    // Set once GOAWAY is sent: the connection ends when its calls have, a grace later (h2
    // would otherwise wait for a client that never acknowledges the GOAWAY's PING).
    let mut closing_since = None;
    loop {
        if closing_since.is_none() && shared.lifecycle.is_stopping() {
            connection.graceful_shutdown();
            closing_since = Some(Instant::now());
        }
        let idle = calls.count.get() == 0;
        let closed_at = closing_since
            .filter(|_| idle)
            .map(|since| since + CLOSING_GRACE);
        tokio::select! {
            accepted = connection.accept() => match accepted {
                Some(Ok((request, respond))) => calls.spawn(request, respond, &shared, &shard),
                Some(Err(error)) => {
                    tracing::debug!(target: "centrifuge", %error, "http/2 connection ended");
                    break;
                }
                None => break,
            },
            // Shutdown: GOAWAY; the calls in flight finish (each within its deadline).
            () = stop.as_mut(), if closing_since.is_none() => {
                connection.graceful_shutdown();
                closing_since = Some(Instant::now());
            }
            () = calls.drained.notified(), if !idle => {}
            () = sleep_until(closed_at) => break,
        }
    }
    drop(connection);
    stream.shut_down();
}

/// How long a connection that said GOAWAY and has no call left is given to close.
const CLOSING_GRACE: Duration = Duration::from_secs(1);

/// The calls open on a connection.
#[derive(Default)]
struct OpenCalls {
    count: std::cell::Cell<usize>,
    /// Notified when the last open call ends.
    drained: tokio::sync::Notify,
}

impl OpenCalls {
    /// Serves a call on a task of its own, counted open until it ends.
    fn spawn(
        self: &Rc<Self>,
        request: http::Request<RecvStream>,
        respond: SendResponse<Bytes>,
        shared: &Arc<CentrifugeShared>,
        shard: &Rc<ShardContext>,
    ) {
        self.count.set(self.count.get() + 1);
        let (calls, shared, shard) = (Rc::clone(self), Arc::clone(shared), Rc::clone(shard));
        tokio::task::spawn_local(async move {
            handle(request, respond, &shared, &shard).await;
            calls.count.set(calls.count.get() - 1);
            if calls.count.get() == 0 {
                calls.drained.notify_waiters();
            }
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Serves one call to its end and logs a failure as rr does.
async fn handle(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    shared: &CentrifugeShared,
    shard: &Rc<ShardContext>,
) {
    let path = request.uri().path().to_owned();
    match dispatch(request, &mut respond, shared, shard, &path).await {
        Ok(()) => {}
        Err(status) => {
            tracing::error!(target: "centrifuge", method = %path,
                error = %format!("rpc error: code = {} desc = {}", status.code.go_name(), status.message),
                "proxy call failed");
            send_status(&mut respond, &status);
        }
    }
}

async fn dispatch(
    request: http::Request<RecvStream>,
    respond: &mut SendResponse<Bytes>,
    shared: &CentrifugeShared,
    shard: &Rc<ShardContext>,
    path: &str,
) -> Result<(), CallStatus> {
    let event = event_of(path)?;
    let deadline = Instant::now()
        + request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| grpc::parse_timeout(value.as_bytes()))
            .unwrap_or(CALL_TIMEOUT_DEFAULT);
    let context = worker_context(
        request.uri().authority().map(http::uri::Authority::as_str),
        request.headers(),
        event,
    );
    let message = read_message(request, deadline).await?;
    check_wire_format(&message).map_err(|error| {
        CallStatus::new(
            Code::Internal,
            format!("grpc: error unmarshalling request: {error}"),
        )
    })?;
    let body = exec(shared, shard, &context, &message, deadline, respond).await?;
    check_wire_format(&body).map_err(|error| {
        tracing::warn!(target: "centrifuge", event = event.type_name(), %error,
            "the worker's answer is not a protobuf message");
        CallStatus::new(
            Code::Unknown,
            format!("proto: cannot parse invalid wire-format data ({error})"),
        )
    })?;
    send_ok(respond, HeaderMap::new(), &body, HeaderMap::new()).await
}

/// The event a path calls, or the status for a path that is none.
fn event_of(path: &str) -> Result<ProxyEvent, CallStatus> {
    let Some((service, method)) = path.strip_prefix('/').and_then(|rest| rest.split_once('/'))
    else {
        return Err(CallStatus::new(
            Code::Unimplemented,
            format!("malformed method name: {path:?}"),
        ));
    };
    if service != PROXY_SERVICE {
        return Err(CallStatus::new(
            Code::Unimplemented,
            format!("unknown service {service}"),
        ));
    }
    match ProxyMethod::from_name(method) {
        Some(ProxyMethod::Event(event)) => Ok(event),
        // rr's proxy answers the subscription streams with a plain error (Unknown).
        Some(ProxyMethod::Stream) => Err(CallStatus::new(Code::Unknown, "not supported".into())),
        None => Err(CallStatus::new(
            Code::Unimplemented,
            format!("unknown method {method} for service {service}"),
        )),
    }
}

/// The worker's context: the incoming metadata (lower-case keys, each a list of values,
/// `-bin` values decoded) and `:authority`, with `"type": [<event>]`.
fn worker_context(authority: Option<&str>, headers: &HeaderMap, event: ProxyEvent) -> Vec<u8> {
    let mut entries = Vec::with_capacity(headers.keys_len() + 2);
    if let Some(authority) = authority {
        entries.push((":authority", MetadataSource::Text(authority.as_bytes())));
    }
    entries.extend(
        headers
            .keys()
            .filter(|name| !RESERVED_HEADERS.contains(&name.as_str()) && name.as_str() != "type")
            .map(|name| (name.as_str(), MetadataSource::Metadata(name))),
    );
    entries.push(("type", MetadataSource::Text(event.type_name().as_bytes())));
    let mut context = Vec::new();
    put_metadata_map(&mut context, entries, headers);
    context
}

/// Reads the call's one message within [`REQUEST_BYTES_MAX`] and the deadline.
async fn read_message(
    request: http::Request<RecvStream>,
    deadline: Instant,
) -> Result<Vec<u8>, CallStatus> {
    let (parts, mut body) = request.into_parts();
    // gzip as rr's grpc-go server takes it (Centrifugo's proxy `grpc_compression`).
    let gzip = match parts.headers.get("grpc-encoding").map(|e| e.as_bytes()) {
        None | Some(b"identity") => false,
        Some(b"gzip") => true,
        Some(other) => {
            return Err(CallStatus::new(
                Code::Unimplemented,
                format!(
                    "grpc: Decompressor is not installed for grpc-encoding {:?}",
                    String::from_utf8_lossy(other)
                ),
            ))
        }
    };
    let mut reader = UnaryReader::new(REQUEST_BYTES_MAX, gzip);
    loop {
        match tokio::time::timeout_at(deadline, body.data()).await {
            Err(_) => return Err(deadline_exceeded()),
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return Err(CallStatus::new(Code::Cancelled, error.to_string()))
            }
            Ok(Some(Ok(bytes))) => {
                let _ = body.flow_control().release_capacity(bytes.len());
                reader.feed(&bytes)?;
            }
        }
    }
    let (message, compressed) = reader.finish()?;
    if !compressed {
        return Ok(message);
    }
    let max = usize::try_from(REQUEST_BYTES_MAX).unwrap_or(usize::MAX);
    super::gunzip(&message, max).map_err(|error| match error {
        super::GunzipError::TooLarge => CallStatus::new(
            Code::ResourceExhausted,
            format!("grpc: received message after decompression larger than max {max}"),
        ),
        super::GunzipError::Malformed(text) => CallStatus::new(
            Code::Internal,
            format!("grpc: failed to decompress the received message: {text}"),
        ),
    })
}

fn deadline_exceeded() -> CallStatus {
    CallStatus::new(Code::DeadlineExceeded, "context deadline exceeded".into())
}

/// Runs the event on a worker as a task of its own, bounded by `deadline`: past it the exec
/// is dropped, which kills the worker (the pool replaces it). A client that resets the
/// stream gets nothing more; the worker still finishes its event and goes back.
async fn exec(
    shared: &CentrifugeShared,
    shard: &Rc<ShardContext>,
    context: &[u8],
    message: &[u8],
    deadline: Instant,
    respond: &mut SendResponse<Bytes>,
) -> Result<Vec<u8>, CallStatus> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    let pool = shared.pool.clone();
    let shard = Rc::clone(shard);
    let (context, message) = (context.to_vec(), message.to_vec());
    tokio::task::spawn_local(async move {
        let mut reply = UnaryReply::default();
        let request = Request {
            codec: Flags::CODEC_PROTO,
            context: &context,
            body: &message,
            lent: None,
        };
        let run = pool.exec_streamed(&shard, request, &mut reply);
        let result = match tokio::time::timeout_at(deadline, run).await {
            Ok(result) => result.map(|()| reply),
            Err(_) => {
                tracing::warn!(target: "centrifuge",
                    "the worker did not answer the proxy event before its deadline: killed as on exec_ttl");
                Err(ExecError::ExecTtl)
            }
        };
        let _ = done.send(result);
    });
    let outcome = tokio::select! {
        outcome = outcome => outcome.map_err(|_| CallStatus::new(Code::Internal, "the call's task ended".into()))?,
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => {
            return Err(CallStatus::new(Code::Cancelled, "the client reset the stream".into()));
        }
    };
    match outcome {
        Ok(reply) if reply.is_streamed() => Err(CallStatus::new(
            Code::Unknown,
            "streaming response not supported".into(),
        )),
        Ok(reply) => Ok(reply.into_body()),
        Err(ExecError::ExecTtl) if Instant::now() >= deadline => Err(deadline_exceeded()),
        Err(error) => {
            tracing::warn!(target: "centrifuge", %error, "RoadRunner can't communicate with the worker");
            Err(CallStatus::new(Code::Unknown, error.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_events() {
        let event = event_of("/centrifugal.centrifugo.proxy.CentrifugoProxy/Connect");
        assert_eq!(event, Ok(ProxyEvent::Connect));
        let status = event_of("/centrifugal.centrifugo.proxy.CentrifugoProxy/Nope").unwrap_err();
        assert_eq!(status.code, Code::Unimplemented);
        let status =
            event_of("/centrifugal.centrifugo.proxy.CentrifugoProxy/SubscribeUnidirectional")
                .unwrap_err();
        assert_eq!(
            (status.code, status.message.as_str()),
            (Code::Unknown, "not supported")
        );
        assert_eq!(
            event_of("/x.Y/Connect").unwrap_err().code,
            Code::Unimplemented
        );
        assert_eq!(event_of("nothing").unwrap_err().code, Code::Unimplemented);
    }

    #[test]
    fn the_context_is_the_metadata_and_the_type() {
        let mut headers = HeaderMap::new();
        headers.append("x-test-header", http::HeaderValue::from_static("v1"));
        headers.append("x-test-header", http::HeaderValue::from_static("v2"));
        headers.append("grpc-timeout", http::HeaderValue::from_static("1S"));
        headers.append("te", http::HeaderValue::from_static("trailers"));
        headers.append("type", http::HeaderValue::from_static("forged"));
        let json = worker_context(Some("127.0.0.1:1"), &headers, ProxyEvent::SubRefresh);
        let value: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(value["type"], serde_json::json!(["sub_refresh"]));
        assert_eq!(value["x-test-header"], serde_json::json!(["v1", "v2"]));
        assert_eq!(value[":authority"], serde_json::json!(["127.0.0.1:1"]));
        assert!(value.get("grpc-timeout").is_none());
        assert!(value.get("te").is_none());
    }
}
