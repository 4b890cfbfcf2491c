//! The `temporal` section (spec temporal "Config", rr's config.go), with rr's defaults.

use crate::config::values::{ConfigError, Reader};
use crate::plugins::server::PoolSection;
use std::time::Duration;

/// Where rr dials when `temporal.address` is empty (rr's schema: `localhost:7233`).
pub const DEFAULT_ADDRESS: &str = "localhost:7233";
/// `cache_size` when unset or 0 (rr's `InitDefault`).
pub const DEFAULT_CACHE_SIZE: usize = 10_000;
/// The workflow pool's `allocate_timeout` (rr's `initPool`: 240 h, the one worker is
/// waited for as long as it takes).
pub const WORKFLOW_ALLOCATE_TIMEOUT: Duration = Duration::from_secs(240 * 3600);

/// `temporal.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSection {
    /// Client key (PEM file), for mutual TLS.
    pub key: String,
    /// Client certificate (PEM file), for mutual TLS.
    pub cert: String,
    /// CA to verify the server with (PEM file); the system roots when empty.
    pub root_ca: String,
    /// The name the server's certificate must carry.
    pub server_name: String,
}

/// `temporal.metrics` (prometheus only): the core's metrics on their own listener at
/// `prometheus.address` (see `core::telemetry_options`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSection {
    /// `driver`: `prometheus` (rr's default) or `statsd`.
    pub driver: String,
    /// `prometheus.address`.
    pub address: String,
    /// `prometheus.prefix`.
    pub prefix: String,
}

/// `temporal`.
#[derive(Debug, Clone)]
pub struct TemporalSection {
    /// `address`: host:port of the frontend.
    pub address: String,
    /// `namespace`.
    pub namespace: String,
    /// `cache_size`: workflows kept in the sticky cache.
    pub cache_size: usize,
    /// `disable_activity_workers`: the activity pool runs no worker.
    pub disable_activity_workers: bool,
    /// `activities`: the activity pool.
    pub activities: PoolSection,
    /// `tls`, when the section exists.
    pub tls: Option<TlsSection>,
    /// `metrics`, when the section exists.
    pub metrics: Option<MetricsSection>,
}

/// The interceptors and data converters ringrunner has (rr's are Go plugins compiled into
/// the binary; ringrunner has none yet).
const KNOWN_EXTENSIONS: [&str; 0] = [];

impl TemporalSection {
    /// Reads `temporal`.
    ///
    /// # Errors
    /// A value of the wrong type; an interceptor or data converter ringrunner does not have
    /// (rr refuses a name whose plugin is not in its binary); TLS with a key and no cert.
    pub fn read(reader: &Reader<'_>, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        let address = reader
            .string("temporal.address")?
            .filter(|address| !address.is_empty())
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned());
        let namespace = reader
            .string("temporal.namespace")?
            .filter(|namespace| !namespace.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let cache_size = reader
            .unsigned("temporal.cache_size")?
            .filter(|size| *size > 0)
            .map_or(DEFAULT_CACHE_SIZE, |size| {
                usize::try_from(size).unwrap_or(usize::MAX)
            });
        for list in ["interceptors", "data_converters"] {
            check_extensions(reader, list)?;
        }
        Ok(Self {
            address,
            namespace,
            cache_size,
            disable_activity_workers: reader
                .bool("temporal.disable_activity_workers")?
                .unwrap_or(false),
            activities: PoolSection::read(reader, "temporal.activities", warnings)?,
            tls: read_tls(reader)?,
            metrics: read_metrics(reader, warnings)?,
        })
    }
}

/// rr's check of `interceptors` / `data_converters`: names must be unique and non-empty, and
/// each must be a plugin the binary has.
fn check_extensions(reader: &Reader<'_>, list: &str) -> Result<(), ConfigError> {
    let path = format!("temporal.{list}");
    let names = reader.strings(&path)?.unwrap_or_default();
    let line = reader.node(&path).map_or(0, |node| node.line);
    let error = |message: String| ConfigError {
        path: path.clone(),
        line,
        message,
    };
    for (index, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(error(format!("{list}: empty name")));
        }
        if names[..index].contains(name) {
            return Err(error(format!("{list}: duplicate name {name}")));
        }
        if !KNOWN_EXTENSIONS.contains(&name.as_str()) {
            return Err(error(format!(
                "{list}: no plugin {name} in this binary (ringrunner has no temporal {list} yet)"
            )));
        }
    }
    Ok(())
}

fn read_tls(reader: &Reader<'_>) -> Result<Option<TlsSection>, ConfigError> {
    if !reader.has("temporal.tls") {
        return Ok(None);
    }
    let text = |key: &str| -> Result<String, ConfigError> {
        Ok(reader
            .string(&format!("temporal.tls.{key}"))?
            .unwrap_or_default())
    };
    let tls = TlsSection {
        key: text("key")?,
        cert: text("cert")?,
        root_ca: text("root_ca")?,
        server_name: text("server_name")?,
    };
    let _ = reader.has("temporal.tls.client_auth_type");
    let _ = reader.has("temporal.tls.use_h2c");
    if tls.key.is_empty() != tls.cert.is_empty() {
        return Err(ConfigError {
            path: "temporal.tls".into(),
            line: reader.node("temporal.tls").map_or(0, |node| node.line),
            message: "key and cert go together (mutual TLS needs both)".into(),
        });
    }
    Ok(Some(tls))
}

fn read_metrics(
    reader: &Reader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<MetricsSection>, ConfigError> {
    if !reader.has("temporal.metrics") {
        return Ok(None);
    }
    let driver = reader
        .string("temporal.metrics.driver")?
        .filter(|driver| !driver.is_empty())
        .unwrap_or_else(|| "prometheus".to_owned());
    if driver != "prometheus" {
        warnings.push(format!(
            "temporal.metrics.driver {driver} is not supported by ringrunner yet (prometheus is); no temporal metrics are exported"
        ));
    }
    let _ = reader.has("temporal.metrics.statsd");
    let _ = reader.has("temporal.metrics.prometheus.type");
    Ok(Some(MetricsSection {
        driver,
        address: reader
            .string("temporal.metrics.prometheus.address")?
            .unwrap_or_default(),
        prefix: reader
            .string("temporal.metrics.prometheus.prefix")?
            .unwrap_or_default(),
    }))
}
