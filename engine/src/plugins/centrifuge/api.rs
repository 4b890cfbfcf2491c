//! The client of Centrifugo's gRPC API (spec centrifuge "RPC methods"): one HTTP/2
//! connection on a thread and tokio runtime of its own (the shards and the RPC server never
//! wait on it), made when the first call needs it (rr's client is lazy too: Centrifugo need
//! not be up at start), made again after it broke, no sooner than a backoff after a failed
//! dial. Calls are bounded: [`IN_FLIGHT_CALLS_MAX`] at once (more fail at once), each
//! within [`API_CALL_TIMEOUT`] (spec [deviation]: rr's calls have no deadline), and an
//! answer of at most [`ANSWER_BYTES_MAX`]. Errors read as grpc-go's
//! (`rpc error: code = Unavailable desc = …`), the text rr hands PHP.

use super::config::CentrifugeSection;
use super::tls::ApiTls;
use crate::plugins::grpc::{framed_message, FrameError};
use bytes::Bytes;
use ringrunner_protocol::centrifuge::API_SERVICE;
use ringrunner_protocol::grpc::{decode_message, Code, Prefix, PREFIX_LEN};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// API calls in flight at once; one more fails at once.
pub const IN_FLIGHT_CALLS_MAX: usize = 256;
/// How long one API call may take, dial included.
pub const API_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer message taken (grpc-go's default receive limit).
pub const ANSWER_BYTES_MAX: usize = 4 * 1024 * 1024;
/// The first wait before dialing again after a failed dial; it doubles up to
/// [`RECONNECT_BACKOFF_MAX`].
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between dials.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The largest header list taken in an answer.
const ANSWER_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// A failed API call, as grpc-go states it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rpc error: code = {} desc = {message}", code.go_name())]
pub struct ApiError {
    /// The status code.
    pub code: Code,
    /// The status message.
    pub message: String,
}

impl ApiError {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// One call for the client thread.
struct ApiCall {
    method: &'static str,
    message: Vec<u8>,
    answer: oneshot::Sender<Result<Vec<u8>, ApiError>>,
    /// Held until the call is over.
    _permit: OwnedSemaphorePermit,
}

/// The handle the RPC service calls through.
#[derive(Debug)]
pub struct ApiClient {
    calls: mpsc::Sender<ApiCall>,
    permits: Arc<Semaphore>,
}

impl ApiClient {
    /// Starts the client thread for `config`'s `grpc_api_address`.
    ///
    /// # Errors
    /// No thread or runtime.
    pub fn start(config: &CentrifugeSection) -> Result<Self, String> {
        let (calls, queue) = mpsc::channel(IN_FLIGHT_CALLS_MAX);
        let tls = match &config.tls {
            Some(files) => Some(ApiTls::new(files, &config.grpc_api_address)?),
            None => None,
        };
        let target = Arc::new(Target {
            address: config.grpc_api_address.clone(),
            gzip: config.use_compressor,
            tls,
            connection: tokio::sync::Mutex::new(Connection::default()),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("centrifuge: api client runtime: {error}"))?;
        std::thread::Builder::new()
            .name("centrifuge-api".into())
            .spawn(move || runtime.block_on(serve_calls(target, queue)))
            .map_err(|error| format!("centrifuge: api client thread: {error}"))?;
        Ok(Self {
            calls,
            permits: Arc::new(Semaphore::new(IN_FLIGHT_CALLS_MAX)),
        })
    }

    /// Calls `CentrifugoApi/<method>` with `message` (a request message as PHP encoded
    /// it) and gives the answer message as Centrifugo encoded it.
    ///
    /// # Errors
    /// Too many calls in flight, Centrifugo down or slow past [`API_CALL_TIMEOUT`], or its
    /// error status.
    pub async fn call(&self, method: &'static str, message: &[u8]) -> Result<Vec<u8>, ApiError> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            ApiError::new(
                Code::ResourceExhausted,
                format!("centrifuge: {IN_FLIGHT_CALLS_MAX} API calls are already in flight"),
            )
        })?;
        let (answer, answered) = oneshot::channel();
        let call = ApiCall {
            method,
            message: message.to_vec(),
            answer,
            _permit: permit,
        };
        let stopped = || ApiError::new(Code::Unavailable, "centrifuge: the API client stopped");
        self.calls.try_send(call).map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// Where calls go and the connection they share.
struct Target {
    address: String,
    gzip: bool,
    tls: Option<ApiTls>,
    connection: tokio::sync::Mutex<Connection>,
}

/// The connection, or why there is none and when to dial again.
#[derive(Default)]
struct Connection {
    open: Option<h2::client::SendRequest<Bytes>>,
    /// The last dial's error, given to calls until `retry_at`.
    failed: Option<ApiError>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// Runs every call as a task of its own until the handle is dropped.
async fn serve_calls(target: Arc<Target>, mut queue: mpsc::Receiver<ApiCall>) {
    while let Some(call) = queue.recv().await {
        let target = Arc::clone(&target);
        tokio::spawn(async move {
            let outcome =
                tokio::time::timeout(API_CALL_TIMEOUT, target.call(call.method, &call.message))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ApiError::new(
                            Code::DeadlineExceeded,
                            "context deadline exceeded",
                        ))
                    });
            if let Err(error) = &outcome {
                tracing::warn!(target: "centrifuge", method = call.method, %error, "centrifugo api call failed");
            }
            let _ = call.answer.send(outcome);
        });
    }
}

impl Target {
    async fn call(&self, method: &str, message: &[u8]) -> Result<Vec<u8>, ApiError> {
        let sender = self.sender().await?;
        let result = self.request(sender, method, message).await;
        if result
            .as_ref()
            .is_err_and(|error| error.code == Code::Unavailable)
        {
            // The connection broke: the next call dials again.
            self.connection.lock().await.open = None;
        }
        result
    }

    /// The open connection, dialed now if there is none and the backoff allows.
    async fn sender(&self) -> Result<h2::client::SendRequest<Bytes>, ApiError> {
        let mut connection = self.connection.lock().await;
        if let Some(open) = &connection.open {
            return Ok(open.clone());
        }
        if let (Some(error), Some(retry_at)) = (&connection.failed, connection.retry_at) {
            if Instant::now() < retry_at {
                return Err(error.clone());
            }
        }
        match self.dial().await {
            Ok(sender) => {
                tracing::debug!(target: "centrifuge", address = %self.address, "connected to centrifugo's api");
                *connection = Connection {
                    open: Some(sender.clone()),
                    ..Connection::default()
                };
                Ok(sender)
            }
            Err(error) => {
                connection.backoff =
                    (connection.backoff * 2).clamp(RECONNECT_BACKOFF_MIN, RECONNECT_BACKOFF_MAX);
                connection.retry_at = Some(Instant::now() + connection.backoff);
                connection.failed = Some(error.clone());
                Err(error)
            }
        }
    }

    async fn dial(&self) -> Result<h2::client::SendRequest<Bytes>, ApiError> {
        let dial_error = |reason: String| {
            ApiError::new(
                Code::Unavailable,
                format!(
                    "connection error: desc = \"transport: Error while dialing: dial tcp {}: {reason}\"",
                    self.address
                ),
            )
        };
        let socket = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|error| dial_error(go_dial_error(&error)))?;
        let _ = socket.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return handshake(socket).await.map_err(dial_error);
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config));
        let stream = connector
            .connect(tls.server_name.clone(), socket)
            .await
            .map_err(|error| dial_error(format!("tls: {error}")))?;
        handshake(stream).await.map_err(dial_error)
    }

    async fn request(
        &self,
        sender: h2::client::SendRequest<Bytes>,
        method: &str,
        message: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        let broken = |error: h2::Error| ApiError::new(Code::Unavailable, error.to_string());
        let mut sender = sender.ready().await.map_err(broken)?;
        let mut builder = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}/{API_SERVICE}/{method}", self.address))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", format!("{}m", API_CALL_TIMEOUT.as_millis()));
        if self.gzip {
            builder = builder
                .header("grpc-encoding", "gzip")
                .header("grpc-accept-encoding", "gzip");
        }
        let request = builder
            .body(())
            .map_err(|error| ApiError::new(Code::Internal, error.to_string()))?;
        let (answer, mut body) = sender.send_request(request, false).map_err(broken)?;
        body.send_data(frame(message, self.gzip)?, true)
            .map_err(broken)?;
        let answer = answer.await.map_err(broken)?;
        read_answer(answer).await
    }
}

/// The HTTP/2 handshake over `io`; the connection is driven by a task of its own until it
/// ends.
async fn handshake<T>(io: T) -> Result<h2::client::SendRequest<Bytes>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = h2::client::Builder::new()
        .max_header_list_size(ANSWER_HEADER_LIST_BYTES)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|error| error.to_string())?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(target: "centrifuge", %error, "centrifugo api connection ended");
        }
    });
    Ok(sender)
}

/// Go's words for a dial error (`connect: connection refused`).
fn go_dial_error(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        _ => error.to_string(),
    }
}

/// The length-prefixed request message, gzip-compressed when asked.
fn frame(message: &[u8], gzip: bool) -> Result<Bytes, ApiError> {
    match framed_message(message, gzip) {
        Ok(framed) => Ok(Bytes::from(framed)),
        Err(FrameError::Io(error)) => Err(ApiError::new(Code::Internal, error.to_string())),
        Err(FrameError::TooLarge) => {
            Err(ApiError::new(Code::ResourceExhausted, "message too large"))
        }
    }
}

/// The answer's message, or its status.
async fn read_answer(answer: http::Response<h2::RecvStream>) -> Result<Vec<u8>, ApiError> {
    let broken = |error: h2::Error| ApiError::new(Code::Unavailable, error.to_string());
    if answer.status() != http::StatusCode::OK {
        return Err(ApiError::new(
            Code::Unknown,
            format!(
                "unexpected HTTP status code received from server: {}",
                answer.status().as_u16()
            ),
        ));
    }
    // A trailers-only answer carries the status in its headers.
    if answer.headers().contains_key("grpc-status") {
        return status_of(answer.headers()).map(|()| Vec::new());
    }
    let mut body = answer.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(broken)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if bytes.len() + chunk.len() > ANSWER_BYTES_MAX + PREFIX_LEN {
            return Err(too_large(bytes.len() + chunk.len()));
        }
        bytes.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.map_err(broken)?.unwrap_or_default();
    status_of(&trailers)?;
    unframe(&bytes)
}

fn too_large(len: usize) -> ApiError {
    ApiError::new(
        Code::ResourceExhausted,
        format!("grpc: received message larger than max ({len} vs. {ANSWER_BYTES_MAX})"),
    )
}

/// Ok for grpc-status 0; the status otherwise (a missing one is grpc-go's Internal).
fn status_of(fields: &http::HeaderMap) -> Result<(), ApiError> {
    let Some(status) = fields.get("grpc-status") else {
        return Err(ApiError::new(
            Code::Internal,
            "server closed the stream without sending trailers",
        ));
    };
    let code = std::str::from_utf8(status.as_bytes())
        .ok()
        .and_then(|text| text.parse::<i32>().ok())
        .map_or(Code::Unknown, Code::from_i32);
    if code == Code::Ok {
        return Ok(());
    }
    let message = fields
        .get("grpc-message")
        .map(|message| decode_message(message.as_bytes()))
        .unwrap_or_default();
    Err(ApiError::new(code, message))
}

/// The one message of an answer body (gunzipped when flagged), at most
/// [`ANSWER_BYTES_MAX`].
fn unframe(bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    let malformed = |what: &str| ApiError::new(Code::Internal, format!("grpc: {what}"));
    let Some((prefix, message)) = bytes.split_first_chunk::<PREFIX_LEN>() else {
        return Err(malformed("the answer holds no message"));
    };
    let prefix = Prefix::parse(*prefix).map_err(|error| malformed(&error.to_string()))?;
    if message.len() != prefix.len as usize {
        return Err(malformed(
            "the answer's message length does not match its prefix",
        ));
    }
    if !prefix.compressed {
        return Ok(message.to_vec());
    }
    super::gunzip(message, ANSWER_BYTES_MAX).map_err(|error| match error {
        super::GunzipError::TooLarge => too_large(ANSWER_BYTES_MAX + 1),
        super::GunzipError::Malformed(text) => {
            malformed(&format!("failed to decompress the message: {text}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_both_ways() {
        let framed = frame(b"hello", false).expect("framed");
        assert_eq!(&framed[..], b"\0\0\0\0\x05hello");
        assert_eq!(unframe(&framed).expect("message"), b"hello");
        let zipped = frame(b"hello", true).expect("framed");
        assert_eq!(zipped[0], 1);
        assert_eq!(unframe(&zipped).expect("message"), b"hello");
        assert!(unframe(b"\0\0\0").is_err());
        assert!(unframe(b"\0\0\0\0\x09abc").is_err());
        assert!(unframe(b"\x01\0\0\0\x03abc").is_err());
    }

    #[test]
    fn errors_read_as_grpc_go_s() {
        let error = ApiError::new(Code::Unavailable, "connection error: desc = \"x\"");
        assert_eq!(
            error.to_string(),
            "rpc error: code = Unavailable desc = connection error: desc = \"x\""
        );
        let mut fields = http::HeaderMap::new();
        fields.insert("grpc-status", http::HeaderValue::from_static("5"));
        fields.insert("grpc-message", http::HeaderValue::from_static("not%20here"));
        assert_eq!(
            status_of(&fields).unwrap_err().to_string(),
            "rpc error: code = NotFound desc = not here"
        );
        fields.insert("grpc-status", http::HeaderValue::from_static("0"));
        assert_eq!(status_of(&fields), Ok(()));
    }
}
