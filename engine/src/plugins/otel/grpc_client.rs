//! OTLP/gRPC: the unary `TraceService/Export` call over HTTP/2 with prior knowledge (h2c,
//! `insecure: true`), one connection per export, bounded by the export's deadline.
//! *[limit]* gRPC over TLS is refused at start (use `client: http` for TLS).

use super::config::OtelSection;
use super::http_client::{remaining, PostError};
use crate::plugins::grpc::{framed_message, FrameError};
use bytes::Bytes;
use std::time::Instant;

/// The method's path (opentelemetry-proto `collector/trace/v1/trace_service.proto`).
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The most of a gRPC answer's body read (an `ExportTraceServiceResponse` is tiny).
const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// Where OTLP/gRPC exports go.
#[derive(Debug)]
pub struct GrpcTarget {
    endpoint: String,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    compress: bool,
}

impl GrpcTarget {
    /// The target `config` names.
    ///
    /// # Errors
    /// TLS asked for (not supported over gRPC yet).
    pub fn new(config: &OtelSection) -> Result<Self, String> {
        if !config.insecure {
            return Err("otel: the grpc client over TLS is not supported by ringrunner yet: set otel.insecure: true (h2c) or use client: http".into());
        }
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            match (
                http::HeaderName::try_from(name.to_ascii_lowercase()),
                http::HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(name), Ok(value)) => headers.push((name, value)),
                _ => {
                    tracing::warn!(target: "otel", header = %name, "otel.headers: not a valid header, left out")
                }
            }
        }
        Ok(Self {
            endpoint: config.endpoint.clone(),
            headers,
            compress: config.compress,
        })
    }

    /// Makes one Export call; Ok when the collector answers grpc-status 0.
    ///
    /// # Errors
    /// The collector is down, slow past `deadline`, or answers an error.
    pub async fn export(
        &self,
        encode: impl FnOnce() -> Vec<u8>,
        deadline: Instant,
    ) -> Result<(), PostError> {
        let left = remaining(deadline)?;
        tokio::time::timeout(left, self.call(encode))
            .await
            .map_err(|_| PostError::TimedOut)?
    }

    /// Connects, then encodes (a collector that is down costs no encoding) and calls.
    async fn call(&self, encode: impl FnOnce() -> Vec<u8>) -> Result<(), PostError> {
        let grpc = |error: &dyn std::fmt::Display| PostError::Grpc(error.to_string());
        let socket = tokio::net::TcpStream::connect(&self.endpoint)
            .await
            .map_err(|source| PostError::Connect {
                endpoint: self.endpoint.clone(),
                source,
            })?;
        socket.set_nodelay(true)?;
        let (client, connection) = h2::client::handshake(socket).await.map_err(|e| grpc(&e))?;
        let driver = tokio::spawn(connection);
        let message = encode();
        let result = self.request(client, &message).await;
        driver.abort();
        result
    }

    async fn request(
        &self,
        client: h2::client::SendRequest<Bytes>,
        message: &[u8],
    ) -> Result<(), PostError> {
        let grpc = |error: &dyn std::fmt::Display| PostError::Grpc(error.to_string());
        let mut client = client.ready().await.map_err(|e| grpc(&e))?;
        let mut builder = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{EXPORT_PATH}", self.endpoint))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if self.compress {
            builder = builder.header("grpc-encoding", "gzip");
        }
        let mut request = builder.body(()).map_err(|e| grpc(&e))?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let (answer, mut body) = client.send_request(request, false).map_err(|e| grpc(&e))?;
        body.send_data(self.frame(message)?, true)
            .map_err(|e| grpc(&e))?;
        let answer = answer.await.map_err(|e| grpc(&e))?;
        if answer.status() != http::StatusCode::OK {
            return Err(PostError::Status(answer.status().as_u16()));
        }
        // A trailers-only answer carries grpc-status in its headers.
        if let Some(status) = answer.headers().get("grpc-status") {
            return grpc_status(status.as_bytes(), answer.headers());
        }
        let mut stream = answer.into_body();
        let mut read = 0usize;
        while let Some(chunk) = stream.data().await {
            let chunk = chunk.map_err(|e| grpc(&e))?;
            read += chunk.len();
            let _ = stream.flow_control().release_capacity(chunk.len());
            if read > ANSWER_BYTES_MAX {
                return Err(PostError::MalformedAnswer);
            }
        }
        let trailers = stream.trailers().await.map_err(|e| grpc(&e))?;
        let trailers = trailers.ok_or(PostError::MalformedAnswer)?;
        let status = trailers
            .get("grpc-status")
            .ok_or(PostError::MalformedAnswer)?;
        grpc_status(status.as_bytes(), &trailers)
    }

    /// The length-prefixed message: compressed flag, big-endian length, bytes.
    fn frame(&self, message: &[u8]) -> Result<Bytes, PostError> {
        match framed_message(message, self.compress) {
            Ok(framed) => Ok(Bytes::from(framed)),
            Err(FrameError::Io(error)) => Err(error.into()),
            Err(FrameError::TooLarge) => Err(PostError::MalformedAnswer),
        }
    }
}

fn grpc_status(status: &[u8], headers: &http::HeaderMap) -> Result<(), PostError> {
    if status == b"0" {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .unwrap_or_default();
    Err(PostError::Grpc(format!(
        "status {}: {message}",
        String::from_utf8_lossy(status)
    )))
}
