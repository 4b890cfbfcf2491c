//! The `grpc` section (spec grpc "Config keys"), with rr's defaults: sizes in MB, a
//! `listen` that must hold a `:`, TLS with every `client_auth_type`, the pool.

use super::super::http::tls::{ClientAuth, SslSection};
use super::super::server::PoolSection;
use crate::config::values::{ConfigError, Reader};
use std::path::PathBuf;
use std::time::Duration;

/// rr's default for `max_recv_msg_size` and `max_send_msg_size`, in MB.
const DEFAULT_MSG_SIZE_MB: u64 = 50;
/// rr's default `max_concurrent_streams`.
const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 10;
/// rr's default `ping_time`.
const DEFAULT_PING_TIME: Duration = Duration::from_secs(2 * 3600);
/// rr's default `timeout` (the keepalive ping's answer).
const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// The most MB a size option may say (so the byte count fits a gRPC length prefix).
const MAX_MSG_SIZE_MB: u64 = 4095;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcListen {
    /// `tcp://host:port` (or `host:port`): on every shard.
    Tcp(String),
    /// `unix://path`: on shard 0.
    Unix(PathBuf),
}

/// `grpc`.
#[derive(Debug, Clone)]
pub struct GrpcSection {
    /// `listen`.
    pub listen: GrpcListen,
    /// `listen` as written (logged at start, as rr logs it).
    pub listen_text: String,
    /// `proto`: paths and globs, as written.
    pub proto: Vec<String>,
    /// `max_recv_msg_size` in bytes (MB in the file).
    pub max_recv_msg_size_bytes: u64,
    /// `max_send_msg_size` in bytes (MB in the file).
    pub max_send_msg_size_bytes: u64,
    /// `max_concurrent_streams` per connection.
    pub max_concurrent_streams: u32,
    /// `max_connection_idle` (zero: none): a connection without a call this long is sent
    /// GOAWAY.
    pub max_connection_idle: Duration,
    /// `max_connection_age` (zero: none): a connection this old is sent GOAWAY.
    pub max_connection_age: Duration,
    /// `max_connection_age_grace` (zero: none): after the age's GOAWAY, calls still open
    /// this much later are cut.
    pub max_connection_age_grace: Duration,
    /// `ping_time`: an idle connection is pinged this often.
    pub ping_time: Duration,
    /// `timeout`: a ping not answered within it closes the connection.
    pub timeout: Duration,
    /// `tls`, when `key` and `cert` are set; its address is unused.
    pub tls: Option<SslSection>,
    /// `env`: added to the workers' environment (names upper-cased).
    pub env: Vec<(String, String)>,
    /// `interceptors`: plugin names; ringrunner has no interceptor plugin, so any is a
    /// start-up error, as an unregistered name is in rr.
    pub interceptors: Vec<String>,
    /// `pool`.
    pub pool: PoolSection,
}

fn error(reader: &Reader<'_>, path: &str, message: String) -> ConfigError {
    ConfigError {
        path: path.into(),
        line: reader.node(path).map_or(0, |node| node.line),
        message,
    }
}

impl GrpcSection {
    /// Reads `grpc`.
    ///
    /// # Errors
    /// A value of the wrong type, a `listen` without `:`, a size past 4095 MB.
    pub fn read(reader: &Reader<'_>, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        let listen_text = reader.string("grpc.listen")?.unwrap_or_default();
        if !listen_text.contains(':') {
            return Err(error(
                reader,
                "grpc.listen",
                format!("malformed grpc address, provided: {listen_text}"),
            ));
        }
        let listen = match listen_text.split_once("://") {
            Some(("unix", path)) => GrpcListen::Unix(PathBuf::from(path)),
            Some(("tcp", host_port)) => GrpcListen::Tcp(host_port.to_owned()),
            Some(_) => {
                return Err(error(
                    reader,
                    "grpc.listen",
                    format!("invalid protocol (tcp://, unix://), address: {listen_text}"),
                ))
            }
            None => GrpcListen::Tcp(listen_text.clone()),
        };
        let size = |key: &str| -> Result<u64, ConfigError> {
            let path = format!("grpc.{key}");
            let mb = reader
                .unsigned(&path)?
                .filter(|mb| *mb > 0)
                .unwrap_or(DEFAULT_MSG_SIZE_MB);
            if mb > MAX_MSG_SIZE_MB {
                return Err(error(
                    reader,
                    &path,
                    format!("{key} is in MB and may not exceed {MAX_MSG_SIZE_MB}"),
                ));
            }
            Ok(mb * 1024 * 1024)
        };
        let duration = |key: &str| -> Result<Duration, ConfigError> {
            Ok(reader.duration(&format!("grpc.{key}"))?.unwrap_or_default())
        };
        let max_concurrent_streams = reader
            .unsigned("grpc.max_concurrent_streams")?
            .filter(|n| *n > 0)
            .map_or(DEFAULT_MAX_CONCURRENT_STREAMS, |n| {
                u32::try_from(n).unwrap_or(u32::MAX)
            });
        Ok(Self {
            listen,
            listen_text,
            proto: reader.strings("grpc.proto")?.unwrap_or_default(),
            max_recv_msg_size_bytes: size("max_recv_msg_size")?,
            max_send_msg_size_bytes: size("max_send_msg_size")?,
            max_concurrent_streams,
            max_connection_idle: duration("max_connection_idle")?,
            max_connection_age: duration("max_connection_age")?,
            max_connection_age_grace: duration("max_connection_age_grace")?,
            ping_time: Some(duration("ping_time")?)
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_PING_TIME),
            timeout: Some(duration("timeout")?)
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_PING_TIMEOUT),
            tls: read_tls(reader)?,
            // Keys come lower-cased from the config (as viper gives them to rr); the
            // variables are upper-cased, as server.env's are.
            env: reader
                .string_map("grpc.env")?
                .into_iter()
                .map(|(key, value)| (key.to_uppercase(), value))
                .collect(),
            interceptors: reader.strings("grpc.interceptors")?.unwrap_or_default(),
            pool: PoolSection::read(reader, "grpc.pool", warnings)?,
        })
    }
}

/// `grpc.tls`: None without both `key` and `cert` (rr serves plaintext then).
fn read_tls(reader: &Reader<'_>) -> Result<Option<SslSection>, ConfigError> {
    let key = reader.string("grpc.tls.key")?.unwrap_or_default();
    let cert = reader.string("grpc.tls.cert")?.unwrap_or_default();
    if key.is_empty() || cert.is_empty() {
        return Ok(None);
    }
    let root_ca = reader.string("grpc.tls.root_ca")?.filter(|p| !p.is_empty());
    let client_auth_type = reader
        .string("grpc.tls.client_auth_type")?
        .unwrap_or_default();
    Ok(Some(SslSection {
        address: String::new(),
        cert: cert.into(),
        key: key.into(),
        client_auth: ClientAuth::from_config(root_ca.is_some(), &client_auth_type),
        root_ca: root_ca.map(PathBuf::from),
        redirect: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn read(text: &str) -> Result<GrpcSection, ConfigError> {
        let root = yaml::parse(text).expect("yaml");
        GrpcSection::read(&Reader::new(&root), &mut Vec::new())
    }

    #[test]
    fn sizes_are_megabytes_and_defaults_are_rr_s() {
        let section =
            read("grpc:\n  listen: tcp://127.0.0.1:9001\n  max_recv_msg_size: 1\n").expect("valid");
        assert_eq!(section.max_recv_msg_size_bytes, 1_048_576);
        assert_eq!(section.max_send_msg_size_bytes, 50 * 1_048_576);
        assert_eq!(section.max_concurrent_streams, 10);
        assert_eq!(section.ping_time, Duration::from_secs(7200));
        assert_eq!(section.timeout, Duration::from_secs(20));
        assert_eq!(section.listen, GrpcListen::Tcp("127.0.0.1:9001".into()));
        assert!(section.tls.is_none());
    }

    #[test]
    fn a_listen_without_a_colon_or_a_huge_size_is_refused() {
        let error = read("grpc:\n  listen: localhost\n").unwrap_err();
        assert_eq!(error.message, "malformed grpc address, provided: localhost");
        let error = read("grpc:\n  listen: :9001\n  max_send_msg_size: 5000\n").unwrap_err();
        assert!(error.message.contains("4095"), "{}", error.message);
        let unix = read("grpc:\n  listen: unix:///tmp/g.sock\n").expect("valid");
        assert_eq!(unix.listen, GrpcListen::Unix("/tmp/g.sock".into()));
    }

    #[test]
    fn client_auth_needs_a_root_ca() {
        let section = read(
            "grpc:\n  listen: :1\n  tls:\n    key: k\n    cert: c\n    client_auth_type: require_and_verify_client_cert\n",
        )
        .expect("valid");
        assert_eq!(section.tls.expect("tls").client_auth, ClientAuth::None);
        let section = read(
            "grpc:\n  listen: :1\n  tls:\n    key: k\n    cert: c\n    root_ca: ca\n    client_auth_type: require_and_verify_client_cert\n",
        )
        .expect("valid");
        assert_eq!(section.tls.expect("tls").client_auth, ClientAuth::Required);
    }
}
