//! The RPC client of `rr workers` and `rr reset`: goridge RPC frames with the JSON codec
//! over `rpc.listen` (spec relay-protocol §6), blocking, every wait bounded.

use crate::config::values::Reader;
use crate::config::Config;
use crate::plugins::rpc::{RpcAddress, DEFAULT_LISTEN};
use ringrunner_protocol::frame::Flags;
use ringrunner_protocol::rpc::{encode_rpc_frame, RpcMessage};
use ringrunner_protocol::FrameDecoder;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

/// How long dialling the server may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest reply accepted.
const MAX_REPLY: u32 = 64 << 20;

trait Stream: Read + Write {
    fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()>;
}

impl Stream for std::net::TcpStream {
    fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        std::net::TcpStream::set_read_timeout(self, Some(timeout))
    }
}

impl Stream for std::os::unix::net::UnixStream {
    fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, Some(timeout))
    }
}

/// A connection to the server's RPC listener.
pub struct RpcClient {
    stream: Box<dyn Stream>,
    seq: u32,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient").field("seq", &self.seq).finish()
    }
}

impl RpcClient {
    /// Dials `rpc.listen` of `config` (rr's default when the section has none).
    ///
    /// # Errors
    /// rr's text when the config has no `rpc` section; Go's dial error when nothing
    /// answers.
    pub fn connect(config: &Config) -> Result<Self, String> {
        let reader = Reader::new(&config.root);
        if !reader.has("rpc") {
            return Err("rpc service not specified in the configuration. Tip: add\n rpc:\n\r listen: rr_rpc_address".into());
        }
        let listen = reader
            .string("rpc.listen")
            .map_err(|error| error.to_string())?
            .filter(|listen| !listen.is_empty())
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let stream: Box<dyn Stream> = match RpcAddress::parse(&listen)? {
            RpcAddress::Tcp(host_port) => {
                let dial_error = |reason: String| format!("dial tcp {host_port}: {reason}");
                let address = crate::plugins::listener::resolve(&host_port)
                    .map_err(|error| dial_error(error.to_string()))?;
                let stream = std::net::TcpStream::connect_timeout(&address, DIAL_TIMEOUT)
                    .map_err(|error| dial_error(connect_error_text(&error)))?;
                let _ = stream.set_nodelay(true);
                Box::new(stream)
            }
            RpcAddress::Unix(path) => Box::new(
                std::os::unix::net::UnixStream::connect(&path).map_err(|error| {
                    format!(
                        "dial unix {}: {}",
                        path.display(),
                        connect_error_text(&error)
                    )
                })?,
            ),
        };
        Ok(Self { stream, seq: 0 })
    }

    /// Calls `method` with `arg`; waits up to `timeout` for the reply.
    ///
    /// # Errors
    /// The server's error text, a broken connection, or the timeout.
    pub fn call(&mut self, method: &str, arg: &Value, timeout: Duration) -> Result<Value, String> {
        let body = serde_json::to_vec(arg).map_err(|error| error.to_string())?;
        let reply = self.call_bytes(method, Flags::CODEC_JSON, &body, timeout)?;
        if reply.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&reply).map_err(|error| format!("{method}: bad reply: {error}"))
    }

    /// Calls `method` with a protobuf message; gives the reply message's bytes.
    ///
    /// # Errors
    /// As [`RpcClient::call`].
    pub fn call_proto(
        &mut self,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        self.call_bytes(method, Flags::CODEC_PROTO, message, timeout)
    }

    fn call_bytes(
        &mut self,
        method: &str,
        codec: Flags,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        self.seq = self.seq.wrapping_add(1);
        let mut request = Vec::new();
        encode_rpc_frame(self.seq, codec, method.as_bytes(), body, &mut request)
            .map_err(|error| error.to_string())?;
        self.stream
            .set_read_timeout(timeout)
            .map_err(|error| error.to_string())?;
        self.stream
            .write_all(&request)
            .map_err(|error| format!("{method}: {error}"))?;
        let mut decoder = FrameDecoder::new(MAX_REPLY);
        let mut buf = vec![0; 64 * 1024];
        loop {
            if let Some(frame) = decoder.next_frame().map_err(|error| error.to_string())? {
                let reply = RpcMessage::from_frame(&frame).map_err(|error| error.to_string())?;
                if reply.seq != self.seq {
                    return Err(format!("{method}: sequence mismatch"));
                }
                if reply.is_error() {
                    return Err(String::from_utf8_lossy(reply.body).into_owned());
                }
                return Ok(reply.body.to_vec());
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(format!("{method}: connection closed by the server")),
                Ok(read) => decoder.feed(&buf[..read]),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(format!("{method}: no reply within {} s", timeout.as_secs()))
                }
                Err(error) => return Err(format!("{method}: {error}")),
            }
        }
    }
}

/// The strings of a JSON array reply (plugin names); anything else gives none.
#[must_use]
pub fn string_list(reply: &Value) -> Vec<String> {
    reply
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A connect error in Go's words (`connect: connection refused`).
fn connect_error_text(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::NotFound => "connect: no such file or directory".into(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "i/o timeout".into(),
        _ => format!("connect: {error}"),
    }
}
