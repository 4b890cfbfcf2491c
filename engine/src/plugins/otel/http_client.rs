//! OTLP/HTTP: one `POST` of the protobuf export per batch, over plain TCP (`insecure`) or
//! TLS with the system's roots, gzipped when `compress`; blocking, on the exporter thread
//! only, every step bounded by the export's deadline.

use super::config::OtelSection;
use flate2::write::GzEncoder;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

/// The system's PEM bundle of trusted roots (Debian's and Ubuntu's path).
const SYSTEM_ROOTS_PEM: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The most of a collector's answer read (its head is all that is looked at).
const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// Why an export did not go through.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The endpoint did not resolve or accept.
    #[error("connect {endpoint}: {source}")]
    Connect {
        /// `host:port`.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// Reading or writing failed (or timed out).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The TLS session failed.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// The collector refused the export.
    #[error("collector answered {0}")]
    Status(u16),
    /// The collector's answer was not HTTP, or too large.
    #[error("malformed answer from the collector")]
    MalformedAnswer,
    /// The deadline passed.
    #[error("export timed out")]
    TimedOut,
    /// A gRPC failure.
    #[error("grpc: {0}")]
    Grpc(String),
}

/// Where OTLP/HTTP exports go.
#[derive(Debug)]
pub struct HttpTarget {
    endpoint: String,
    /// The request head, built once.
    head_prefix: Vec<u8>,
    compress: bool,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl HttpTarget {
    /// The target `config` names.
    ///
    /// # Errors
    /// TLS asked for and the system roots cannot be read, or a host that is no server name.
    pub fn new(config: &OtelSection) -> Result<Self, String> {
        let mut head_prefix = Vec::with_capacity(256);
        let path = if config.custom_url.starts_with('/') {
            config.custom_url.clone()
        } else {
            format!("/{}", config.custom_url)
        };
        head_prefix.extend_from_slice(
            format!("POST {path} HTTP/1.1\r\nHost: {}\r\n", config.endpoint).as_bytes(),
        );
        head_prefix.extend_from_slice(b"User-Agent: ringrunner-otel\r\nContent-Type: application/x-protobuf\r\nConnection: close\r\n");
        if config.compress {
            head_prefix.extend_from_slice(b"Content-Encoding: gzip\r\n");
        }
        for (name, value) in &config.headers {
            if name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                && !value.bytes().any(|b| b == b'\r' || b == b'\n')
            {
                head_prefix.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            } else {
                tracing::warn!(target: "otel", header = %name, "otel.headers: not a valid header line, left out");
            }
        }
        let tls = if config.insecure {
            None
        } else {
            Some((client_config()?, server_name(&config.endpoint)?))
        };
        Ok(Self {
            endpoint: config.endpoint.clone(),
            head_prefix,
            compress: config.compress,
            tls,
        })
    }

    /// Connects, then POSTs the export `encode` makes; Ok on a 2xx answer.
    ///
    /// # Errors
    /// The collector is down, slow past `deadline`, or refuses.
    pub fn post(
        &self,
        encode: impl FnOnce() -> Vec<u8>,
        deadline: Instant,
    ) -> Result<(), PostError> {
        let socket = self.connect(deadline)?;
        let body = encode();
        let body = body.as_slice();
        let compressed;
        let body = if self.compress {
            let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(body)?;
            compressed = encoder.finish()?;
            &compressed[..]
        } else {
            body
        };
        let mut request = Vec::with_capacity(self.head_prefix.len() + 32 + body.len());
        request.extend_from_slice(&self.head_prefix);
        request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        match &self.tls {
            None => exchange(socket, &request, deadline),
            Some((config, name)) => {
                let session = rustls::ClientConnection::new(Arc::clone(config), name.clone())?;
                exchange(
                    rustls::StreamOwned::new(session, socket),
                    &request,
                    deadline,
                )
            }
        }
    }

    fn connect(&self, deadline: Instant) -> Result<TcpStream, PostError> {
        let connect_error = |source| PostError::Connect {
            endpoint: self.endpoint.clone(),
            source,
        };
        let addresses = self.endpoint.to_socket_addrs().map_err(connect_error)?;
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for address in addresses {
            let left = remaining(deadline)?;
            match TcpStream::connect_timeout(&address, left) {
                Ok(socket) => {
                    socket.set_nodelay(true)?;
                    return Ok(socket);
                }
                Err(error) => last = error,
            }
        }
        Err(connect_error(last))
    }
}

/// Time left before `deadline`.
pub fn remaining(deadline: Instant) -> Result<std::time::Duration, PostError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(PostError::TimedOut);
    }
    Ok(left)
}

/// Writes `request` and reads the answer's head on `stream`.
fn exchange<S: Read + Write + TimeoutSocket>(
    mut stream: S,
    request: &[u8],
    deadline: Instant,
) -> Result<(), PostError> {
    stream.set_timeouts(remaining(deadline)?)?;
    stream.write_all(request)?;
    stream.flush()?;
    let mut answer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        stream.set_timeouts(remaining(deadline)?)?;
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(PostError::MalformedAnswer);
        }
        answer.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&answer) {
            Ok(httparse::Status::Complete(_)) => {
                let status = response.code.unwrap_or(0);
                return if (200..300).contains(&status) {
                    Ok(())
                } else {
                    Err(PostError::Status(status))
                };
            }
            Ok(httparse::Status::Partial) if answer.len() < ANSWER_BYTES_MAX => {}
            _ => return Err(PostError::MalformedAnswer),
        }
    }
}

/// A stream whose socket's read and write timeouts can be set.
trait TimeoutSocket {
    fn set_timeouts(&self, timeout: std::time::Duration) -> std::io::Result<()>;
}

impl TimeoutSocket for TcpStream {
    fn set_timeouts(&self, timeout: std::time::Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

impl TimeoutSocket for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn set_timeouts(&self, timeout: std::time::Duration) -> std::io::Result<()> {
        self.sock.set_timeouts(timeout)
    }
}

/// A TLS client trusting the system's roots.
fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(SYSTEM_ROOTS_PEM)
        .map_err(|error| format!("otel: trusted roots {SYSTEM_ROOTS_PEM}: {error}"))?;
    for certificate in certificates.flatten() {
        let _ = roots.add(certificate);
    }
    if roots.is_empty() {
        return Err(format!(
            "otel: no trusted roots in {SYSTEM_ROOTS_PEM} (set otel.insecure: true for plain HTTP)"
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("otel: tls: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The host of `host:port` as a TLS server name.
fn server_name(endpoint: &str) -> Result<ServerName<'static>, String> {
    let host = endpoint
        .rsplit_once(':')
        .map_or(endpoint, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|error| format!("otel.endpoint: {host}: {error}"))
}
