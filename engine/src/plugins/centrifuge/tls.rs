//! `centrifuge.tls` for the API client (spec centrifuge: used only for the connection to
//! Centrifugo's API): the client certificate and key from PEM files, Centrifugo's
//! certificate checked against the system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR`
//! honoured, as Go's system pool honours them), ALPN `h2`.

use super::config::ClientTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;

/// The API connection's TLS: the client configuration and the name Centrifugo's
/// certificate must carry.
#[derive(Debug, Clone)]
pub struct ApiTls {
    /// The rustls client configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// The host of `grpc_api_address`.
    pub server_name: ServerName<'static>,
}

impl ApiTls {
    /// The TLS for calls to `address` (`host:port`) with `files`.
    ///
    /// # Errors
    /// A certificate or key that does not parse, no system root, a host that is not a
    /// server name.
    pub fn new(files: &ClientTls, address: &str) -> Result<Self, String> {
        let fail = |what: String| format!("centrifuge.tls: {what}");
        let chain = CertificateDer::pem_file_iter(&files.cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|error| fail(format!("cert {}: {error}", files.cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|error| fail(format!("key {}: {error}", files.key.display())))?;
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for certificate in native.certs {
            let _ = roots.add(certificate);
        }
        if roots.is_empty() {
            return Err(fail(format!(
                "no trusted roots in the system store ({:?})",
                native.errors.first().map(ToString::to_string)
            )));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| fail(error.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|error| fail(error.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            server_name: server_name(address).map_err(fail)?,
        })
    }
}

/// The host of `host:port` as a TLS server name.
fn server_name(address: &str) -> Result<ServerName<'static>, String> {
    let authority: http::uri::Authority = address
        .parse()
        .map_err(|error| format!("grpc_api_address {address}: {error}"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|error| format!("grpc_api_address {host}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_of_addresses() {
        assert_eq!(
            server_name("centrifugo.local:10000").unwrap(),
            ServerName::try_from("centrifugo.local").unwrap()
        );
        assert!(matches!(
            server_name("[::1]:10000").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(server_name("bad host:1").is_err());
    }
}
