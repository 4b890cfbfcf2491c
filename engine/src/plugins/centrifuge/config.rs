//! The `centrifuge` section (spec centrifuge "rr config keys"), with rr's defaults: the
//! proxy server's address (`tcp://`, `unix://` or `host:port`; any other scheme fails the
//! start), Centrifugo's API address (`tcp://` stripped), gzip, the API client's TLS files
//! (which must exist at start), `name` and `version` (read, unused, as in rr), and the pool.

use super::super::grpc::GrpcListen;
use super::super::server::PoolSection;
use crate::config::values::{ConfigError, Reader};
use std::path::PathBuf;

/// rr's default `proxy_address`.
pub const DEFAULT_PROXY_ADDRESS: &str = "tcp://127.0.0.1:30000";
/// rr's default `grpc_api_address`.
pub const DEFAULT_GRPC_API_ADDRESS: &str = "127.0.0.1:10000";

/// `centrifuge.tls`: the API client's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// `key`: a PEM private key.
    pub key: PathBuf,
    /// `cert`: a PEM certificate chain.
    pub cert: PathBuf,
}

/// `centrifuge`.
#[derive(Debug, Clone)]
pub struct CentrifugeSection {
    /// `proxy_address` as written (parsed at start, as rr's Serve parses it).
    pub proxy_address: String,
    /// `grpc_api_address`: `host:port` of Centrifugo's gRPC API.
    pub grpc_api_address: String,
    /// `use_compressor`: gzip on every API call.
    pub use_compressor: bool,
    /// `tls`, when set.
    pub tls: Option<ClientTls>,
    /// `name` (rr defaults it to `roadrunner` and never uses it).
    pub name: String,
    /// `version` (rr defaults it to `1.0.0` and never uses it).
    pub version: String,
    /// `pool`.
    pub pool: PoolSection,
}

impl CentrifugeSection {
    /// Reads `centrifuge`.
    ///
    /// # Errors
    /// A value of the wrong type.
    pub fn read(reader: &Reader<'_>, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        let text = |key: &str, default: &str| -> Result<String, ConfigError> {
            Ok(reader
                .string(&format!("centrifuge.{key}"))?
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_owned()))
        };
        let mut grpc_api_address = text("grpc_api_address", DEFAULT_GRPC_API_ADDRESS)?;
        // rr strips the scheme only from an address longer than it.
        if grpc_api_address.len() > "tcp://".len() {
            if let Some(host_port) = grpc_api_address.strip_prefix("tcp://") {
                grpc_api_address = host_port.to_owned();
            }
        }
        Ok(Self {
            proxy_address: text("proxy_address", DEFAULT_PROXY_ADDRESS)?,
            grpc_api_address,
            use_compressor: reader.bool("centrifuge.use_compressor")?.unwrap_or(false),
            tls: read_tls(reader)?,
            name: text("name", "roadrunner")?,
            version: text("version", "1.0.0")?,
            pool: PoolSection::read(reader, "centrifuge.pool", warnings)?,
        })
    }
}

/// `centrifuge.tls`, when the section is there (its files are checked at start:
/// [`ClientTls::check_files`]).
fn read_tls(reader: &Reader<'_>) -> Result<Option<ClientTls>, ConfigError> {
    if !reader.has("centrifuge.tls") {
        return Ok(None);
    }
    let key = reader.string("centrifuge.tls.key")?.unwrap_or_default();
    let cert = reader.string("centrifuge.tls.cert")?.unwrap_or_default();
    Ok(Some(ClientTls {
        key: key.into(),
        cert: cert.into(),
    }))
}

impl ClientTls {
    /// Both files must exist (rr's Init).
    ///
    /// # Errors
    /// The first missing one, in rr's words.
    pub fn check_files(&self) -> Result<(), String> {
        for (name, path) in [("key", &self.key), ("cert", &self.cert)] {
            if !path.exists() {
                return Err(format!("{name} file '{}' does not exists", path.display()));
            }
        }
        Ok(())
    }
}

/// Parses `proxy_address` as rr's tcplisten does: `host:port`, `tcp://host:port` or
/// `unix:///path`.
///
/// # Errors
/// Any other scheme, in rr's words.
pub fn parse_proxy_address(address: &str) -> Result<GrpcListen, String> {
    match address.split_once("://") {
        Some(("tcp", host_port)) => Ok(GrpcListen::Tcp(host_port.to_owned())),
        Some(("unix", path)) => Ok(GrpcListen::Unix(PathBuf::from(path))),
        Some(_) => Err(format!(
            "invalid Protocol ([tcp://]:6001, unix://file.sock), address: {address}"
        )),
        None => Ok(GrpcListen::Tcp(address.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn read(text: &str) -> Result<CentrifugeSection, ConfigError> {
        let root = yaml::parse(text).expect("yaml");
        CentrifugeSection::read(&Reader::new(&root), &mut Vec::new())
    }

    #[test]
    fn defaults_are_rr_s() {
        let section = read("centrifuge:\n  pool:\n    num_workers: 2\n").expect("valid");
        assert_eq!(section.proxy_address, "tcp://127.0.0.1:30000");
        assert_eq!(section.grpc_api_address, "127.0.0.1:10000");
        assert!(!section.use_compressor);
        assert!(section.tls.is_none());
        assert_eq!(section.name, "roadrunner");
        assert_eq!(section.version, "1.0.0");
        assert_eq!(section.pool.num_workers, 2);
    }

    #[test]
    fn the_api_address_loses_its_scheme() {
        let section = read(
            "centrifuge:\n  grpc_api_address: tcp://10.0.0.1:1000\n  use_compressor: true\n  version: 3.0.0\n",
        )
        .expect("valid");
        assert_eq!(section.grpc_api_address, "10.0.0.1:1000");
        assert!(section.use_compressor);
        assert_eq!(section.version, "3.0.0");
    }

    #[test]
    fn proxy_addresses() {
        assert_eq!(
            parse_proxy_address("tcp://127.0.0.1:30000"),
            Ok(GrpcListen::Tcp("127.0.0.1:30000".into()))
        );
        assert_eq!(
            parse_proxy_address(":30000"),
            Ok(GrpcListen::Tcp(":30000".into()))
        );
        assert_eq!(
            parse_proxy_address("unix:///tmp/c.sock"),
            Ok(GrpcListen::Unix("/tmp/c.sock".into()))
        );
        let refused = parse_proxy_address("grpc://127.0.0.1:1").unwrap_err();
        assert!(refused.contains("grpc://127.0.0.1:1"), "{refused}");
    }

    #[test]
    fn tls_files_must_exist() {
        let section = read(
            "centrifuge:\n  tls:\n    key: /nonexistent/k.pem\n    cert: /nonexistent/c.pem\n",
        )
        .expect("read; checked at start");
        let tls = section.tls.expect("tls");
        assert_eq!(
            tls.check_files().unwrap_err(),
            "key file '/nonexistent/k.pem' does not exists"
        );
        let tls = ClientTls {
            key: "Cargo.toml".into(),
            cert: "/nonexistent/c.pem".into(),
        };
        assert_eq!(
            tls.check_files().unwrap_err(),
            "cert file '/nonexistent/c.pem' does not exists"
        );
    }
}
