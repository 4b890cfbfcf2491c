//! The `http` section (spec http §5), read with rr's defaults.

use super::super::server::PoolSection;
use super::headers::HeadersConfig;
use super::static_files::StaticConfig;
use crate::config::values::{ConfigError, Reader};
use ringrunner_protocol::http::ContextCodec;
use std::path::PathBuf;
use std::time::Duration;

/// `http.uploads`.
#[derive(Debug, Clone, Default)]
pub struct Uploads {
    /// Where uploaded files go (default: the temp dir).
    pub dir: PathBuf,
    /// Extensions refused (`.php`).
    pub forbid: Vec<String>,
    /// When not empty, the only extensions accepted.
    pub allow: Vec<String>,
}

/// `http` (spec http §5).
#[derive(Debug, Clone)]
pub struct HttpSection {
    /// `host:port`; empty when only the TLS listener serves.
    pub address: String,
    /// `http.ssl`, when it asks for a TLS listener.
    pub ssl: Option<super::tls::SslSection>,
    /// `http.fcgi.address`, when set: a FastCGI listener.
    pub fcgi: Option<String>,
    /// `http.http2`.
    pub http2: Http2Section,
    /// Body cap in bytes (`max_request_size` MiB; 0 → 1000 MiB).
    pub max_request_size: u64,
    /// Forms sent raw.
    pub raw_body: bool,
    /// Access log records.
    pub access_logs: bool,
    /// Status for worker errors (0 → 500).
    pub internal_error_code: u16,
    /// `uploads`.
    pub uploads: Uploads,
    /// `trusted_subnets` (CIDRs).
    pub trusted_subnets: Vec<String>,
    /// `middleware` names.
    pub middleware: Vec<String>,
    /// `context_codec` (ours): the request context's shape, `json` (default) or `protobuf`.
    /// rr's `json_context: true|false` is read too when `context_codec` is absent.
    pub context_codec: ContextCodec,
    /// ringrunner's bound on reading a request head, and on an idle keep-alive connection
    /// (rr: 5 min, fixed). Default 60 s. Also the longest wait for each read of a body.
    pub read_header_timeout: Duration,
    /// ringrunner's bound on each write to a client (nginx's `send_timeout`: the time between
    /// two successive writes, not the whole response). Default 60 s.
    pub write_timeout: Duration,
    /// ringrunner's minimum body rate in bytes per second: a body may take
    /// `read_header_timeout` plus one second per `body_min_rate` bytes received, in all
    /// (Apache's `mod_reqtimeout` rule). Default 1024; 0 turns the overall bound off.
    pub body_min_rate: u64,
    /// ringrunner's switch to join another process's listeners on `address` (SO_REUSEPORT,
    /// for a zero-downtime hand-over); by default an address in use is refused.
    pub reuse_port: bool,
    /// `http.static`, when the section exists and `static` is in the middleware.
    pub static_files: Option<StaticConfig>,
    /// `http.headers`, when the section exists and `headers` is in the middleware.
    pub headers: Option<HeadersConfig>,
    /// The middleware that runs on the shard before the worker, outermost first (the last
    /// one listed wraps the others, as in rr's chain), each once and only when configured.
    pub chain: Vec<Layer>,
    /// `sendfile` is in the middleware: a worker's `X-Sendfile` answer is replaced by the
    /// file it names.
    pub sendfile: bool,
    /// `http.pool`.
    pub pool: PoolSection,
}

/// `http.http2`: HTTP/2 over TLS (always offered through ALPN) and cleartext (h2c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Section {
    /// Cleartext HTTP/2 with prior knowledge on `http.address`.
    pub h2c: bool,
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); 0 → 128.
    /// Applied to h2c and TLS alike.
    pub max_concurrent_streams: u32,
}

impl Http2Section {
    fn read(reader: &Reader<'_>) -> Result<Self, ConfigError> {
        let streams = reader
            .unsigned("http.http2.max_concurrent_streams")?
            .filter(|&n| n > 0)
            .unwrap_or(128);
        Ok(Self {
            h2c: reader.bool("http.http2.h2c")?.unwrap_or(false),
            max_concurrent_streams: u32::try_from(streams).unwrap_or(u32::MAX),
        })
    }
}

/// Middleware ringrunner runs; others are skipped with a warning, as rr skips unknown names.
/// A middleware of [`HttpSection::chain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// `headers`: request and response headers, CORS.
    Headers,
    /// `static`: files.
    Static,
    /// `gzip`: compression.
    Gzip,
}

/// The configured layers of `middleware`, outermost (last listed) first, each once.
fn chain(middleware: &[String], has_static: bool, has_headers: bool) -> Vec<Layer> {
    let mut chain = Vec::new();
    for name in middleware.iter().rev() {
        let layer = match name.as_str() {
            "headers" if has_headers => Layer::Headers,
            "static" if has_static => Layer::Static,
            "gzip" => Layer::Gzip,
            _ => continue,
        };
        if !chain.contains(&layer) {
            chain.push(layer);
        }
    }
    chain
}

pub const SUPPORTED_MIDDLEWARE: [&str; 7] = [
    "proxy_ip_parser",
    "static",
    "headers",
    "gzip",
    "http_metrics",
    "sendfile",
    "otel",
];

impl HttpSection {
    /// Reads `http`.
    ///
    /// # Errors
    /// A missing address, a value of the wrong type or form.
    pub fn read(reader: &Reader<'_>, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        let address = reader.string("http.address")?.unwrap_or_default();
        let ssl = super::tls::SslSection::read(reader, warnings)?;
        let fcgi = reader
            .string("http.fcgi.address")?
            .filter(|address| !address.is_empty());
        if (address.is_empty() && ssl.is_none() && fcgi.is_none())
            || (!address.is_empty() && !address.contains(':'))
        {
            return Err(ConfigError {
                path: "http.address".into(),
                line: reader.node("http.address").map_or(0, |n| n.line),
                message: if address.is_empty() {
                    "http.address, http.ssl (cert and key) or http.fcgi.address is required".into()
                } else {
                    format!("malformed http server address: {address}")
                },
            });
        }
        if ssl.as_ref().is_some_and(|ssl| ssl.redirect) && address.is_empty() {
            return Err(ConfigError {
                path: "http.ssl.redirect".into(),
                line: reader.node("http.ssl.redirect").map_or(0, |n| n.line),
                message: "redirect needs http.address, the plain listener it answers on".into(),
            });
        }
        let max_request_size = match reader.unsigned("http.max_request_size")?.unwrap_or(0) {
            0 => 1000,
            mib => mib,
        };
        let internal_error_code = reader.unsigned("http.internal_error_code")?.unwrap_or(0);
        let internal_error_code = match u16::try_from(internal_error_code) {
            Ok(0) => 500,
            Ok(code) if (100..600).contains(&code) => code,
            _ => {
                return Err(ConfigError {
                    path: "http.internal_error_code".into(),
                    line: reader
                        .node("http.internal_error_code")
                        .map_or(0, |n| n.line),
                    message: format!("not an HTTP status code: {internal_error_code}"),
                })
            }
        };
        let middleware = reader.strings("http.middleware")?.unwrap_or_default();
        for name in &middleware {
            if !SUPPORTED_MIDDLEWARE.contains(&name.as_str()) {
                warnings.push(format!(
                    "http.middleware: {name} is not supported by ringrunner yet, skipped"
                ));
            }
        }
        let static_files = read_static(reader, &middleware, warnings)?;
        let headers = if reader.has("http.headers") {
            let headers = HeadersConfig::read(reader)?;
            if middleware.iter().any(|name| name == "headers") {
                Some(headers)
            } else {
                warnings.push("http.headers is configured but headers is not in http.middleware: it does nothing".into());
                None
            }
        } else {
            if middleware.iter().any(|name| name == "headers") {
                warnings.push("http.middleware: headers has no http.headers section, skipped (requested middleware does not exist)".into());
            }
            None
        };
        let chain = chain(&middleware, static_files.is_some(), headers.is_some());
        let sendfile = middleware.iter().any(|name| name == "sendfile");
        if reader.has("http.http3") {
            warnings.push("http.http3 is not supported by ringrunner yet, ignored".into());
        }
        let uploads = Uploads {
            dir: reader
                .string("http.uploads.dir")?
                .filter(|d| !d.is_empty())
                .map_or_else(std::env::temp_dir, PathBuf::from),
            forbid: reader.strings("http.uploads.forbid")?.unwrap_or_default(),
            allow: reader.strings("http.uploads.allow")?.unwrap_or_default(),
        };
        Ok(Self {
            address,
            ssl,
            fcgi,
            http2: Http2Section::read(reader)?,
            max_request_size: max_request_size.saturating_mul(1 << 20),
            raw_body: reader.bool("http.raw_body")?.unwrap_or(false),
            access_logs: reader.bool("http.access_logs")?.unwrap_or(false),
            internal_error_code,
            uploads,
            trusted_subnets: reader.strings("http.trusted_subnets")?.unwrap_or_default(),
            middleware,
            context_codec: read_context_codec(reader)?,
            read_header_timeout: reader
                .duration("http.read_header_timeout")?
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(60)),
            write_timeout: reader
                .duration("http.write_timeout")?
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(60)),
            body_min_rate: reader.unsigned("http.body_min_rate")?.unwrap_or(1024),
            reuse_port: reader.bool("http.reuse_port")?.unwrap_or(false),
            sendfile,
            chain,
            static_files,
            headers,
            pool: PoolSection::read(reader, "http.pool", warnings)?,
        })
    }
}

/// `http.context_codec` (`json` | `protobuf`), else the legacy `http.json_context` bool,
/// else JSON: the shape PHP decodes fastest, and that every PHP package version reads.
fn read_context_codec(reader: &Reader<'_>) -> Result<ContextCodec, ConfigError> {
    let legacy = reader.bool("http.json_context")?.map(|json| {
        if json {
            ContextCodec::Json
        } else {
            ContextCodec::Proto
        }
    });
    let Some(name) = reader.string("http.context_codec")? else {
        return Ok(legacy.unwrap_or(ContextCodec::Json));
    };
    let error = |message: String| ConfigError {
        path: "http.context_codec".into(),
        line: reader.node("http.context_codec").map_or(0, |n| n.line),
        message,
    };
    let codec = match name.to_ascii_lowercase().as_str() {
        "json" => ContextCodec::Json,
        "protobuf" | "proto" => ContextCodec::Proto,
        other => return Err(error(format!("expected json or protobuf, got {other:?}"))),
    };
    if legacy.is_some_and(|legacy| legacy != codec) {
        return Err(error(format!(
            "{name} contradicts http.json_context; keep one of the two keys"
        )));
    }
    Ok(codec)
}

/// `http.static` (spec http-extras §2.1): read and checked when the section exists (rr's
/// errors for a missing or non-directory `dir`); served only when `static` is in the
/// middleware list.
fn read_static(
    reader: &Reader<'_>,
    middleware: &[String],
    warnings: &mut Vec<String>,
) -> Result<Option<StaticConfig>, ConfigError> {
    if !reader.has("http.static") {
        if middleware.iter().any(|name| name == "static") {
            warnings.push(
                "http.middleware: static has no http.static section, skipped (requested middleware does not exist)".into(),
            );
        }
        return Ok(None);
    }
    let dir = reader.string("http.static.dir")?.unwrap_or_default();
    let error = |message: String| ConfigError {
        path: "http.static.dir".into(),
        line: reader.node("http.static.dir").map_or(0, |n| n.line),
        message,
    };
    match std::fs::metadata(&dir) {
        Err(_) => {
            return Err(error(format!(
                "static_plugin_valid: root directory '{dir}' does not exists"
            )))
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(error(format!(
                "static_plugin_valid: invalid root directory '{dir}'"
            )))
        }
        Ok(_) => {}
    }
    let extensions = |key: &str| -> Result<Vec<String>, ConfigError> {
        Ok(reader
            .strings(key)?
            .unwrap_or_default()
            .into_iter()
            .filter(|ext| !ext.is_empty())
            .collect())
    };
    let _ = reader.has("http.static.request");
    let config = StaticConfig {
        dir: PathBuf::from(dir),
        forbid: extensions("http.static.forbid")?,
        allow: extensions("http.static.allow")?,
        calculate_etag: reader.bool("http.static.calculate_etag")?.unwrap_or(false),
        weak: reader.bool("http.static.weak")?.unwrap_or(false),
        response: reader.string_map("http.static.response")?,
    };
    if !middleware.iter().any(|name| name == "static") {
        warnings.push(
            "http.static is configured but static is not in http.middleware: no files are served"
                .into(),
        );
        return Ok(None);
    }
    Ok(Some(config))
}
