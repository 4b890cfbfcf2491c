//! The `tcp` section (spec tcp-jobs A.1): named servers, their delimiters, the read size and
//! the pool, with rr's defaults and error texts; the bounds on a slow, idle or endless peer
//! and on the number of connections are ours (their defaults keep rr's behaviour where rr
//! has no bound).

use super::super::server::PoolSection;
use crate::config::values::{ConfigError, Reader};
use crate::config::yaml::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Where a tcp server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpAddress {
    /// `host:port` or `tcp://host:port`: on every shard (SO_REUSEPORT).
    Tcp(String),
    /// `unix://path`: on shard 0.
    Unix(PathBuf),
}

impl TcpAddress {
    /// Parses rr's forms.
    ///
    /// # Errors
    /// rr's texts for another scheme or more than one `://`.
    pub fn parse(address: &str) -> Result<Self, String> {
        let parts: Vec<&str> = address.split("://").collect();
        match parts.as_slice() {
            [host_port] => Ok(Self::Tcp((*host_port).to_owned())),
            ["tcp", host_port] => Ok(Self::Tcp((*host_port).to_owned())),
            ["unix", path] => Ok(Self::Unix(PathBuf::from(path))),
            [_, _] => Err(format!(
                "invalid Protocol ([tcp://]:6001, unix://file.sock), address: {address}"
            )),
            _ => Err(format!(
                "wrong number of parsed protocol parts, address: {address}"
            )),
        }
    }
}

/// One `tcp.servers.<name>`.
#[derive(Debug, Clone)]
pub struct TcpServer {
    /// The map key, sent to the worker as `server`.
    pub name: String,
    /// `addr`.
    pub address: TcpAddress,
    /// `delimiter` (default `\r\n`): a message ends where the buffered bytes end with it.
    pub delimiter: Vec<u8>,
}

/// `tcp`.
#[derive(Debug, Clone)]
pub struct TcpSection {
    /// The servers, in the file's order.
    pub servers: Vec<TcpServer>,
    /// `read_buf_size` in bytes (MiB in the file; 0 → 1): the most one read asks for.
    pub read_buf_size: usize,
    /// Ours: a message (the bytes up to a delimiter) may not exceed this (MiB in the file,
    /// default 16); past it the connection is closed and logged. rr has no bound.
    pub max_message_size: usize,
    /// Ours: each write to a peer must complete within this (default 60 s, the time between
    /// two successive writes); a peer that stops reading is closed and frees its worker.
    pub write_timeout: Duration,
    /// Ours (`tcp.read_timeout`; rr has none): a connection that sends nothing for this long
    /// while the server waits for its bytes is closed, and PHP gets its CLOSE event. The
    /// default 0 keeps rr's behaviour: no limit.
    pub read_timeout: Duration,
    /// Ours (`tcp.max_connections`, all servers together; rr has none): a connection
    /// accepted past it is closed at once (no CONNECTED event) and logged. The default 0
    /// keeps rr's behaviour: no limit.
    pub max_connections: usize,
    /// `tcp.pool`.
    pub pool: PoolSection,
}

impl TcpSection {
    /// Reads `tcp`.
    ///
    /// # Errors
    /// rr's texts for no servers, an empty or malformed address; wrong types.
    pub fn read(reader: &Reader<'_>, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        let error = |path: &str, message: String| ConfigError {
            path: path.to_owned(),
            line: reader.node(path).map_or(0, |n| n.line),
            message,
        };
        let names: Vec<String> = match reader.node("tcp.servers").map(|node| &node.value) {
            Some(Value::Map(entries)) => entries.iter().map(|(name, _)| name.clone()).collect(),
            _ => Vec::new(),
        };
        if names.is_empty() {
            return Err(error("tcp.servers", "no servers registered".into()));
        }
        let mut servers = Vec::with_capacity(names.len());
        for name in names {
            let key = |field: &str| format!("tcp.servers.{name}.{field}");
            let addr = reader.string(&key("addr"))?.unwrap_or_default();
            if addr.is_empty() {
                return Err(error(
                    &key("addr"),
                    format!("empty address for the server: {name}"),
                ));
            }
            let address =
                TcpAddress::parse(&addr).map_err(|message| error(&key("addr"), message))?;
            let delimiter = reader
                .string(&key("delimiter"))?
                .filter(|delimiter| !delimiter.is_empty())
                .unwrap_or_else(|| "\r\n".into())
                .into_bytes();
            if reader.has(&key("read_buf_size")) {
                warnings.push(format!(
                    "{} is ignored: read_buf_size is read from tcp.read_buf_size only",
                    key("read_buf_size")
                ));
            }
            servers.push(TcpServer {
                name,
                address,
                delimiter,
            });
        }
        let mib = |value: u64| {
            usize::try_from(value.max(1))
                .unwrap_or(usize::MAX)
                .saturating_mul(1 << 20)
        };
        Ok(Self {
            servers,
            read_buf_size: mib(reader.unsigned("tcp.read_buf_size")?.unwrap_or(1)),
            max_message_size: mib(reader.unsigned("tcp.max_message_size")?.unwrap_or(16)),
            write_timeout: reader
                .duration("tcp.write_timeout")?
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(60)),
            read_timeout: reader.duration("tcp.read_timeout")?.unwrap_or_default(),
            max_connections: usize::try_from(
                reader.unsigned("tcp.max_connections")?.unwrap_or_default(),
            )
            .unwrap_or(usize::MAX),
            pool: PoolSection::read(reader, "tcp.pool", warnings)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_rr_s_forms() {
        assert_eq!(
            TcpAddress::parse("127.0.0.1:7000"),
            Ok(TcpAddress::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!(
            TcpAddress::parse("tcp://0.0.0.0:7000"),
            Ok(TcpAddress::Tcp("0.0.0.0:7000".into()))
        );
        assert_eq!(
            TcpAddress::parse("unix://rr.sock"),
            Ok(TcpAddress::Unix("rr.sock".into()))
        );
        assert_eq!(
            TcpAddress::parse("udp://x:1").unwrap_err(),
            "invalid Protocol ([tcp://]:6001, unix://file.sock), address: udp://x:1"
        );
        assert_eq!(
            TcpAddress::parse("tcp://a://b").unwrap_err(),
            "wrong number of parsed protocol parts, address: tcp://a://b"
        );
    }
}
