//! `http.ssl` (spec http-extras §5): the TLS listener's settings, its rustls configuration
//! (certificate and key from PEM files, client certificates against `root_ca`), and the
//! plain listener's `redirect` answer.

use crate::config::values::{ConfigError, Reader};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::PathBuf;
use std::sync::Arc;

/// What a client must show (`client_auth_type`, effective only with `root_ca`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `no_client_cert` (and any unknown value, as rr).
    None,
    /// `request_client_cert`, `verify_client_cert_if_given`: one that is shown must verify
    /// (rustls verifies what it is shown; rr's `request_client_cert` would not).
    IfGiven,
    /// `require_any_client_cert`, `require_and_verify_client_cert`: one must be shown and
    /// verify (rustls verifies what it is shown; rr's `require_any` would not).
    Required,
}

impl ClientAuth {
    /// From `client_auth_type`, which counts only with a `root_ca` (as rr's; shared by
    /// `http.ssl` and `grpc.tls`).
    #[must_use]
    pub fn from_config(has_root_ca: bool, client_auth_type: &str) -> Self {
        match (has_root_ca, client_auth_type) {
            (true, "request_client_cert" | "verify_client_cert_if_given") => Self::IfGiven,
            (true, "require_any_client_cert" | "require_and_verify_client_cert") => Self::Required,
            _ => Self::None,
        }
    }
}

/// `http.ssl`.
#[derive(Debug, Clone)]
pub struct SslSection {
    /// `host:port` of the TLS listener (default `127.0.0.1:443`).
    pub address: String,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM bundle of the CAs client certificates are verified against.
    pub root_ca: Option<PathBuf>,
    /// What a client must show.
    pub client_auth: ClientAuth,
    /// The plain listener answers every request with a 308 to the TLS one.
    pub redirect: bool,
}

impl SslSection {
    /// Reads `http.ssl`; None without the section, or without both `cert` and `key` (rr
    /// starts no TLS listener then). The files are checked when the listener starts.
    ///
    /// # Errors
    /// `redirect` without a TLS listener.
    pub fn read(
        reader: &Reader<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Self>, ConfigError> {
        if !reader.has("http.ssl") {
            return Ok(None);
        }
        let cert = reader.string("http.ssl.cert")?.unwrap_or_default();
        let key = reader.string("http.ssl.key")?.unwrap_or_default();
        let redirect = reader.bool("http.ssl.redirect")?.unwrap_or(false);
        let root_ca = reader.string("http.ssl.root_ca")?.filter(|p| !p.is_empty());
        let client_auth_type = reader
            .string("http.ssl.client_auth_type")?
            .unwrap_or_default();
        let address = reader
            .string("http.ssl.address")?
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "127.0.0.1:443".into());
        if cert.is_empty() || key.is_empty() {
            if reader.has("http.ssl.acme") {
                warnings.push("http.ssl.acme: ACME certificates are not supported by ringrunner yet: no TLS listener (and no redirect); give cert and key".into());
                return Ok(None);
            }
            if redirect {
                return Err(ConfigError {
                    path: "http.ssl.redirect".into(),
                    line: reader.node("http.ssl.redirect").map_or(0, |n| n.line),
                    message: "redirect needs a TLS listener: set http.ssl.cert and http.ssl.key"
                        .into(),
                });
            }
            return Ok(None);
        }
        let _ = reader.has("http.ssl.acme");
        let client_auth = ClientAuth::from_config(root_ca.is_some(), &client_auth_type);
        Ok(Some(Self {
            address,
            cert: cert.into(),
            key: key.into(),
            root_ca: root_ca.map(PathBuf::from),
            client_auth,
            redirect,
        }))
    }

    /// rr's start-time checks: the files exist.
    fn check_files(&self) -> Result<(), String> {
        for (kind, path) in [("key", &self.key), ("cert", &self.cert)] {
            if !path.exists() {
                return Err(format!(
                    "validation: ssl_valid: {kind} file '{}' does not exists",
                    path.display()
                ));
            }
        }
        if let Some(root_ca) = &self.root_ca {
            if !root_ca.exists() {
                return Err(format!(
                    "root ca path provided, but path '{}' does not exists",
                    root_ca.display()
                ));
            }
        }
        Ok(())
    }

    /// The rustls configuration: TLS 1.2 and 1.3 (rustls' safe suites and curves), ALPN
    /// `http/1.1`.
    ///
    /// # Errors
    /// A missing file (rr's texts), a certificate or key that does not parse or match, a CA
    /// bundle without a certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        self.check_files()?;
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|error| format!("http.ssl.cert {}: {error}", self.cert.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "http.ssl.cert {}: no certificate in it",
                self.cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|error| format!("http.ssl.key {}: {error}", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("http.ssl: {error}"))?;
        let builder = match (&self.root_ca, self.client_auth) {
            (Some(root_ca), ClientAuth::IfGiven | ClientAuth::Required) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(root_ca)
                    .map_err(|error| format!("http.ssl.root_ca {}: {error}", root_ca.display()))?
                {
                    let cert = cert.map_err(|_| "could not append Certs from PEM".to_owned())?;
                    roots
                        .add(cert)
                        .map_err(|_| "could not append Certs from PEM".to_owned())?;
                }
                if roots.is_empty() {
                    return Err("could not append Certs from PEM".into());
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.client_auth == ClientAuth::IfGiven {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|error| format!("http.ssl.root_ca: {error}"))?,
                )
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|error| format!("http.ssl: cert and key: {error}"))?;
        // HTTP/2 first, as rr offers it: a client that speaks it gets it.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The TLS port, for the redirect's `Location`.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.address
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or(443)
    }
}

/// The plain listener's answer when `ssl.redirect` is on (rr's: 308, HSTS, the same URL on
/// https and the TLS port), closing the connection; `date_line` is the `Date` header line.
#[must_use]
pub fn redirect_answer(
    method: &[u8],
    target: &[u8],
    host: Option<&[u8]>,
    tls_port: u16,
    date_line: &[u8],
) -> Vec<u8> {
    let host = String::from_utf8_lossy(host.unwrap_or(b"127.0.0.1"));
    let host = strip_port(&host);
    let mut location = format!("https://{host}");
    if tls_port != 443 {
        location.push_str(&format!(":{tls_port}"));
    }
    for &byte in target {
        // A target is ASCII on the wire; anything else is escaped, as Go serialises URLs.
        if byte.is_ascii_graphic() {
            location.push(char::from(byte));
        } else {
            location.push_str(&format!("%{byte:02X}"));
        }
    }
    let body = match method {
        b"GET" => format!(
            "<a href=\"{}\">Permanent Redirect</a>.\n\n",
            super::sink::html_escape(&location)
        ),
        _ => String::new(),
    };
    let mut out = format!(
        "HTTP/1.1 308 Permanent Redirect\r\nLocation: {location}\r\nStrict-Transport-Security: max-age=31536000; includeSubDomains; preload\r\n"
    );
    if matches!(method, b"GET" | b"HEAD") {
        out.push_str("Content-Type: text/html; charset=utf-8\r\n");
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(date_line);
    out.extend_from_slice(b"\r\n");
    if method != b"HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// `host` without its port (an IPv6 literal keeps its brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redirect_keeps_path_and_query_on_the_tls_port() {
        let answer = redirect_answer(
            b"GET",
            b"/a%20b?x=1",
            Some(b"example.com:8080"),
            8443,
            b"Date: D\r\n",
        );
        let text = String::from_utf8(answer).unwrap();
        assert!(text.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"));
        assert!(text.contains("\r\nLocation: https://example.com:8443/a%20b?x=1\r\n"));
        assert!(text
            .contains("Strict-Transport-Security: max-age=31536000; includeSubDomains; preload"));
        assert!(text.ends_with(
            "<a href=\"https://example.com:8443/a%20b?x=1\">Permanent Redirect</a>.\n\n"
        ));
        let head = String::from_utf8(redirect_answer(
            b"HEAD",
            b"/",
            Some(b"[::1]:80"),
            443,
            b"Date: D\r\n",
        ))
        .unwrap();
        assert!(head.contains("Location: https://[::1]/\r\n"));
        assert!(head.contains("Content-Type: text/html"));
        assert!(head.ends_with("\r\n\r\n"));
        let post = String::from_utf8(redirect_answer(
            b"POST",
            b"/p",
            Some(b"h"),
            443,
            b"Date: D\r\n",
        ))
        .unwrap();
        assert!(!post.contains("Content-Type") && post.contains("Content-Length: 0"));
    }
}
