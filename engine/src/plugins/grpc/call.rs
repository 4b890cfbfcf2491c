//! One call: the path checked against the loaded services (rr's texts for an unknown
//! service or method), the request message read within `max_recv_msg_size`, the worker's
//! exec, and the answer: headers, the message, trailers with the status (spec grpc
//! "Status codes"). The exec runs as a task of its own: a client that goes away or whose
//! deadline passes gets its answer at once, and the worker finishes its call and goes back
//! to the pool (spec [deviation] on deadlines; `exec_ttl` still bounds it).

use super::metadata::{self, CallFacts, CallTrace, Peer};
use super::proto::Lookup;
use super::{health, reflection, reply, GrpcShared};
use crate::pool::{ExecError, ReplyFrame, ReplySink, Request};
use crate::runtime::ShardContext;
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderValue};
use ringrunner_protocol::grpc::{self, Code, FramingError, UnaryReader};
use ringrunner_protocol::Flags;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use tokio::time::Instant;

/// How long a request message may take to arrive when the call has no earlier deadline: a
/// client that opens a stream and never sends cannot hold it longer.
const REQUEST_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Answers up to this size (prefix included) go to h2 whole, which holds them until the
/// client's window takes them (so per connection at most `max_concurrent_streams` times
/// this waits in memory); larger ones are sent as the window opens.
const UNRESERVED_SEND_BYTES: usize = 64 * 1024;
/// How long the answer's bytes may wait for the client's flow-control window.
const SEND_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A call's outcome other than OK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStatus {
    /// The code.
    pub code: Code,
    /// The message (percent-encoded when sent).
    pub message: String,
    /// A serialized `google.rpc.Status` for `grpc-status-details-bin`.
    pub details: Option<Vec<u8>>,
}

impl CallStatus {
    /// A status without details.
    #[must_use]
    pub fn new(code: Code, message: String) -> Self {
        Self {
            code,
            message,
            details: None,
        }
    }
}

impl From<FramingError> for CallStatus {
    fn from(error: FramingError) -> Self {
        Self::new(error.code(), error.to_string())
    }
}

/// A failed exec in rr's words (spec grpc "Status codes").
fn exec_status(error: &ExecError) -> CallStatus {
    let message = match error {
        ExecError::SoftJob(text) => format!("sync_worker_receive_frame: SoftJobError: {text}"),
        ExecError::Network(text) if text.contains("closed by the worker") => {
            "sync_worker_receive_frame: Network: EOF".into()
        }
        ExecError::Network(text) => format!("sync_worker_receive_frame: Network: {text}"),
        other => other.to_string(),
    };
    CallStatus::new(Code::Internal, message)
}

/// Where a call is from and what serves it.
pub(super) struct CallSite {
    pub peer: Peer,
    pub shared: Arc<GrpcShared>,
    pub shard: Rc<ShardContext>,
}

/// Serves one stream to its end.
pub(super) async fn handle(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    site: &CallSite,
) {
    let started = std::time::Instant::now();
    // A clone of the URI shares its bytes: no copy of the path per call.
    let uri = request.uri().clone();
    let path = uri.path();
    let outcome = dispatch(request, &mut respond, site, path).await;
    match outcome {
        Ok(()) => tracing::debug!(target: "grpc", method = %path,
            elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "method was called successfully"),
        Err(status) => {
            tracing::error!(target: "grpc", method = %path,
                error = %format!("rpc error: code = {} desc = {}", status.code.go_name(), status.message),
                elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "method call was finished with error");
            if status.code == Code::Cancelled {
                respond.send_reset(h2::Reason::CANCEL);
            } else {
                send_status(&mut respond, &status);
            }
        }
    }
}

async fn dispatch(
    request: http::Request<RecvStream>,
    respond: &mut SendResponse<Bytes>,
    site: &CallSite,
    path: &str,
) -> Result<(), CallStatus> {
    let Some((service, method)) = path
        .strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .filter(|(service, method)| !service.is_empty() && !method.is_empty())
    else {
        return Err(CallStatus::new(
            Code::Unimplemented,
            format!("malformed method name: {path:?}"),
        ));
    };
    let deadline = request
        .headers()
        .get("grpc-timeout")
        .and_then(|value| grpc::parse_timeout(value.as_bytes()))
        .map(|timeout| Instant::now() + timeout);
    if reflection::SERVICES.contains(&service) {
        let body = request.into_body();
        return reflection::serve(method, body, respond, &site.shared).await;
    }
    if service == health::SERVICE {
        let message = read_message(request, site, deadline).await?.1;
        return health::serve(method, &message, respond, &site.shared).await;
    }
    match site.shared.services.lookup(service, method) {
        Lookup::UnknownService => {
            return Err(CallStatus::new(
                Code::Unimplemented,
                format!("unknown service {service}"),
            ))
        }
        Lookup::UnknownMethod => {
            return Err(CallStatus::new(
                Code::Unimplemented,
                format!("unknown method {method} for service {service}"),
            ))
        }
        Lookup::Found => {}
    }
    let trace = CallTrace::begin(request.headers(), &site.shared.ids, site.shard.index());
    let facts = CallFacts {
        service,
        method,
        authority: request.uri().authority().map(http::uri::Authority::as_str),
        peer: site.peer,
        trace: &trace,
    };
    let mut context = Vec::new();
    metadata::worker_context(&facts, request.headers(), &mut context);
    let (_, message) = read_message(request, site, deadline).await?;
    let response = exec(site, context, message, deadline, respond).await?;
    let (context, body) = response.bytes.split_at(response.context_len);
    let reply = reply::read(context);
    if let Some(error) = reply.error {
        return Err(error);
    }
    let max_send = site.shared.config.max_send_msg_size_bytes;
    if body.len() as u64 > max_send {
        return Err(CallStatus::new(
            Code::ResourceExhausted,
            format!(
                "grpc: trying to send message larger than max ({} vs. {max_send})",
                body.len()
            ),
        ));
    }
    send_ok(respond, reply.headers, body, reply.trailers).await
}

/// Reads the call's one message, within `max_recv_msg_size` and the read deadline.
async fn read_message(
    request: http::Request<RecvStream>,
    site: &CallSite,
    deadline: Option<Instant>,
) -> Result<(HeaderMap, Vec<u8>), CallStatus> {
    let (parts, mut body) = request.into_parts();
    let encoding = parts.headers.get("grpc-encoding");
    if let Some(encoding) = encoding.filter(|e| e.as_bytes() != b"identity") {
        return Err(CallStatus::new(
            Code::Unimplemented,
            format!(
                "grpc: Decompressor is not installed for grpc-encoding {:?}",
                String::from_utf8_lossy(encoding.as_bytes())
            ),
        ));
    }
    let mut reader = UnaryReader::new(site.shared.config.max_recv_msg_size_bytes, false);
    let read_deadline = Instant::now() + REQUEST_READ_TIMEOUT;
    let read_deadline = deadline.map_or(read_deadline, |d| d.min(read_deadline));
    loop {
        let chunk = next_chunk(&mut body, read_deadline).await;
        match chunk {
            Err(_) if deadline.is_some_and(|d| d <= read_deadline) => {
                return Err(CallStatus::new(
                    Code::DeadlineExceeded,
                    "context deadline exceeded".into(),
                ))
            }
            Err(_) => {
                return Err(CallStatus::new(
                    Code::Cancelled,
                    "the request message did not arrive in time".into(),
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return Err(CallStatus::new(Code::Cancelled, error.to_string()));
            }
            Ok(Some(Ok(bytes))) => {
                let _ = body.flow_control().release_capacity(bytes.len());
                reader.feed(&bytes)?;
            }
        }
    }
    let (message, _) = reader.finish()?;
    Ok((parts.headers, message))
}

/// The body's next chunk: at once when h2 has it (the usual case, the message came with
/// the headers: no timer is armed), else as it arrives before `deadline`.
async fn next_chunk(
    body: &mut RecvStream,
    deadline: Instant,
) -> Result<Option<Result<Bytes, h2::Error>>, tokio::time::error::Elapsed> {
    let now = std::future::poll_fn(|cx| Poll::Ready(body.poll_data(cx))).await;
    match now {
        Poll::Ready(chunk) => Ok(chunk),
        Poll::Pending => tokio::time::timeout_at(deadline, body.data()).await,
    }
}

/// A worker's reply to a unary call: one frame, its context then its body in `bytes`. A
/// frame carrying the STREAM flag (more to come) is refused, as rr refuses it: the pool
/// then asks the worker to stop its stream and drains it, and the worker goes back clean.
#[derive(Debug, Default)]
pub(crate) struct UnaryReply {
    bytes: Vec<u8>,
    context_len: usize,
    streamed: bool,
}

impl UnaryReply {
    /// Whether the worker answered with the STREAM flag (the reply is then refused).
    pub(crate) fn is_streamed(&self) -> bool {
        self.streamed
    }

    /// The reply's body, without its context.
    pub(crate) fn into_body(mut self) -> Vec<u8> {
        self.bytes.drain(..self.context_len);
        self.bytes
    }
}

impl ReplySink for UnaryReply {
    async fn frame(&mut self, frame: ReplyFrame<'_>) -> bool {
        if !frame.last {
            self.streamed = true;
            return false;
        }
        self.bytes
            .reserve_exact(frame.context.len() + frame.body.len());
        self.bytes.extend_from_slice(frame.context);
        self.bytes.extend_from_slice(frame.body);
        self.context_len = frame.context.len();
        true
    }
}

/// Runs the exec and waits for it, for the deadline, or for the client to reset the
/// stream, whichever comes first. An exec given up on goes on as a task of its own: the
/// worker finishes its call and goes back to the pool (dropped mid-exchange it would be
/// killed). The common case runs it right here, without a task and a channel per call.
async fn exec(
    site: &CallSite,
    context: Vec<u8>,
    message: Vec<u8>,
    deadline: Option<Instant>,
    respond: &mut SendResponse<Bytes>,
) -> Result<UnaryReply, CallStatus> {
    let pool = site.shared.pool.clone();
    let shard = Rc::clone(&site.shard);
    let mut running = Box::pin(async move {
        let mut reply = UnaryReply::default();
        let request = Request {
            codec: Flags::CODEC_JSON,
            context: &context,
            body: &message,
            lent: None,
        };
        let result = pool.exec_streamed(&shard, request, &mut reply).await;
        result.map(|()| reply)
    });
    let expired = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    let given_up = tokio::select! {
        outcome = &mut running => Ok(outcome),
        () = expired => Err(CallStatus::new(Code::DeadlineExceeded, "context deadline exceeded".into())),
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => {
            Err(CallStatus::new(Code::Cancelled, "the client reset the stream".into()))
        }
    };
    let outcome = match given_up {
        Ok(outcome) => outcome,
        Err(status) => {
            tokio::task::spawn_local(async move {
                let _ = running.await;
            });
            return Err(status);
        }
    };
    let reply = outcome.map_err(|error| exec_status(&error))?;
    if reply.streamed {
        // rr's text; grpc-go sends a plain error as UNKNOWN.
        return Err(CallStatus::new(
            Code::Unknown,
            "streaming is not supported".into(),
        ));
    }
    Ok(reply)
}

fn response_head(headers: HeaderMap) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.headers_mut() = headers;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Sends an OK answer: headers, the message, trailers.
pub(crate) async fn send_ok(
    respond: &mut SendResponse<Bytes>,
    headers: HeaderMap,
    message: &[u8],
    mut trailers: HeaderMap,
) -> Result<(), CallStatus> {
    let cancelled = |error: h2::Error| CallStatus::new(Code::Cancelled, error.to_string());
    let mut send = respond
        .send_response(response_head(headers), false)
        .map_err(cancelled)?;
    send_message(&mut send, message).await?;
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    send.send_trailers(trailers).map_err(cancelled)
}

/// Sends one length-prefixed message as the client's window takes it.
pub(super) async fn send_message(
    send: &mut SendStream<Bytes>,
    message: &[u8],
) -> Result<(), CallStatus> {
    let len = u32::try_from(message.len())
        .map_err(|_| CallStatus::new(Code::ResourceExhausted, "message too large".into()))?;
    let mut framed = Vec::with_capacity(grpc::PREFIX_LEN + message.len());
    framed.extend_from_slice(&grpc::Prefix::encode(len));
    framed.extend_from_slice(message);
    let mut data = Bytes::from(framed);
    if data.len() <= UNRESERVED_SEND_BYTES {
        // h2 holds it until the client's window takes it: no capacity to wait for here.
        return send
            .send_data(data, false)
            .map_err(|error| CallStatus::new(Code::Cancelled, error.to_string()));
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let capacity = std::future::poll_fn(|cx| send.poll_capacity(cx));
        let granted = match tokio::time::timeout(SEND_STALL_TIMEOUT, capacity).await {
            Ok(Some(Ok(granted))) => granted.min(data.len()),
            Ok(Some(Err(error))) => {
                return Err(CallStatus::new(Code::Cancelled, error.to_string()))
            }
            Ok(None) | Err(_) => {
                return Err(CallStatus::new(
                    Code::Cancelled,
                    "the client stopped taking the answer".into(),
                ))
            }
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted);
        send.send_data(chunk, false)
            .map_err(|error| CallStatus::new(Code::Cancelled, error.to_string()))?;
    }
    Ok(())
}

/// The trailer fields of a status.
pub(super) fn status_fields(status: &CallStatus, fields: &mut HeaderMap) {
    fields.insert("grpc-status", HeaderValue::from(status.code as i32));
    if let Ok(message) = HeaderValue::from_str(&grpc::encode_message(&status.message)) {
        fields.insert("grpc-message", message);
    }
    if let Some(details) = &status.details {
        let encoded = crate::plugins::rpc::services::base64(details);
        if let Ok(value) = HeaderValue::from_str(encoded.trim_end_matches('=')) {
            fields.insert("grpc-status-details-bin", value);
        }
    }
}

/// Answers with a status and nothing else (a trailers-only response).
pub(crate) fn send_status(respond: &mut SendResponse<Bytes>, status: &CallStatus) {
    let mut headers = HeaderMap::new();
    status_fields(status, &mut headers);
    let _ = respond.send_response(response_head(headers), true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_errors_read_as_rr_s() {
        assert_eq!(
            exec_status(&ExecError::SoftJob("plain boom: b1".into())).message,
            "sync_worker_receive_frame: SoftJobError: plain boom: b1"
        );
        let crashed = exec_status(&ExecError::Network("relay closed by the worker".into()));
        assert_eq!(crashed.code, Code::Internal);
        assert_eq!(crashed.message, "sync_worker_receive_frame: Network: EOF");
    }

    #[test]
    fn a_status_becomes_its_fields() {
        let mut fields = HeaderMap::new();
        let status = CallStatus {
            code: Code::NotFound,
            message: "50% gone".into(),
            details: Some(vec![8, 5]),
        };
        status_fields(&status, &mut fields);
        assert_eq!(fields["grpc-status"], "5");
        assert_eq!(fields["grpc-message"], "50%25 gone");
        assert_eq!(fields["grpc-status-details-bin"], "CAU");
    }
}
