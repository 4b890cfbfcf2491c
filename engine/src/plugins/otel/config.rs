//! The `otel` section (spec devops § otel), read with rr's defaults, errors and warnings,
//! and the batch span processor's bounds (rr's Go SDK: `OTEL_BSP_*`).

use crate::config::values::{ConfigError, Reader};
use std::time::Duration;

/// rr's Go BatchSpanProcessor: spans waiting for export at most.
pub const QUEUE_SPANS_MAX: usize = 2048;
/// rr's Go BatchSpanProcessor: spans per export at most.
pub const BATCH_SPANS_MAX: usize = 512;
/// rr's Go BatchSpanProcessor: the delay between two exports.
pub const SCHEDULE_DELAY: Duration = Duration::from_secs(5);
/// Go's OTLP exporters' bound on one export.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where spans go (`otel.exporter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exporter {
    /// An OTLP collector (over [`Client`]).
    Otlp,
    /// One JSON line per span on stdout.
    Stdout,
    /// One JSON line per span on stderr.
    Stderr,
}

/// How OTLP travels (`otel.client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// OTLP/HTTP: protobuf POSTed to `/v1/traces`.
    Http,
    /// OTLP/gRPC: the unary `TraceService/Export` call.
    Grpc,
}

/// `otel.resource` with rr's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSection {
    /// `service.name`.
    pub service_name: String,
    /// `service.version`.
    pub service_version: String,
    /// `service.instance.id`.
    pub service_instance_id: String,
    /// `service.namespace`.
    pub service_namespace: String,
}

/// `otel` (spec devops § otel).
#[derive(Debug, Clone)]
pub struct OtelSection {
    /// `exporter`.
    pub exporter: Exporter,
    /// `client` (or the `OTEL_EXPORTER_OTLP_*PROTOCOL` environment).
    pub client: Client,
    /// `endpoint`: `host:port`.
    pub endpoint: String,
    /// `insecure`: plain HTTP / h2c instead of TLS.
    pub insecure: bool,
    /// `compress`: gzip the export.
    pub compress: bool,
    /// `custom_url`: the HTTP client's path.
    pub custom_url: String,
    /// `headers`, sent with every export.
    pub headers: Vec<(String, String)>,
    /// The deprecated `service_name`: the `http` span's tracer name (rr's http plugin).
    pub tracer_name: String,
    /// The resource the spans carry.
    pub resource: ResourceSection,
    /// `OTEL_RESOURCE_ATTRIBUTES`, as (key, value).
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_BSP_SCHEDULE_DELAY` (milliseconds), else 5 s.
    pub schedule_delay: Duration,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`, else 2048.
    pub queue_spans_max: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, else 512 (never above the queue).
    pub batch_spans_max: usize,
}

impl OtelSection {
    /// Reads `otel`; `env` gives the process's (and dotenv's) variables; what rr warns about
    /// goes to `warnings`.
    ///
    /// # Errors
    /// rr's: the deprecated `jaeger` exporter, an unknown exporter; a value of a wrong type.
    pub fn read(
        reader: &Reader<'_>,
        env: &dyn Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let exporter = read_exporter(reader)?;
        let client = read_client(reader, env, warnings)?;
        let endpoint = reader
            .string("otel.endpoint")?
            .filter(|endpoint| !endpoint.is_empty())
            .unwrap_or_else(|| match client {
                Client::Http => "localhost:4318".to_owned(),
                Client::Grpc => "localhost:4317".to_owned(),
            });
        let custom_url = reader
            .string("otel.custom_url")?
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| "/v1/traces".to_owned());
        let deprecated_name = deprecated(reader, "service_name", warnings)?;
        let deprecated_version = deprecated(reader, "service_version", warnings)?;
        let resource = read_resource(reader, env, &deprecated_name, &deprecated_version)?;
        let queue_spans_max = env_number(env, "OTEL_BSP_MAX_QUEUE_SIZE")
            .filter(|&n| n > 0)
            .map_or(QUEUE_SPANS_MAX, |n| {
                usize::try_from(n).unwrap_or(QUEUE_SPANS_MAX)
            });
        let batch_spans_max = env_number(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
            .filter(|&n| n > 0)
            .map_or(BATCH_SPANS_MAX, |n| {
                usize::try_from(n).unwrap_or(BATCH_SPANS_MAX)
            })
            .min(queue_spans_max);
        Ok(Self {
            exporter,
            client,
            endpoint,
            insecure: reader.bool("otel.insecure")?.unwrap_or(false),
            compress: reader.bool("otel.compress")?.unwrap_or(false),
            custom_url,
            headers: reader.string_map("otel.headers")?,
            tracer_name: deprecated_name,
            resource,
            resource_attributes: resource_attributes(env),
            schedule_delay: env_number(env, "OTEL_BSP_SCHEDULE_DELAY")
                .map_or(SCHEDULE_DELAY, Duration::from_millis),
            queue_spans_max,
            batch_spans_max,
        })
    }
}

fn read_exporter(reader: &Reader<'_>) -> Result<Exporter, ConfigError> {
    let name = reader.string("otel.exporter")?.unwrap_or_default();
    let error = |message: String| ConfigError {
        path: "otel.exporter".into(),
        line: reader.node("otel.exporter").map_or(0, |n| n.line),
        message,
    };
    match name.as_str() {
        "" | "otlp" => Ok(Exporter::Otlp),
        "stdout" => Ok(Exporter::Stdout),
        "stderr" => Ok(Exporter::Stderr),
        // spec devops § otel: rr's text (what follows its colon is not in the spec).
        "jaeger" => Err(error(
            "jaeger exporter is deprecated, use OTLP instead".into(),
        )),
        "zipkin" => Err(error(
            "zipkin exporter is not supported by ringrunner yet, use OTLP".into(),
        )),
        other => Err(error(format!("unknown exporter: {other}"))),
    }
}

/// `client`, else the OTLP protocol variables; an unknown value is warned about and HTTP used.
fn read_client(
    reader: &Reader<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Client, ConfigError> {
    let configured = reader.string("otel.client")?.filter(|c| !c.is_empty());
    let name = configured
        .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").filter(|c| !c.is_empty()))
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL").filter(|c| !c.is_empty()));
    Ok(match name.as_deref() {
        None | Some("http" | "http/protobuf") => Client::Http,
        Some("grpc") => Client::Grpc,
        Some(other) => {
            warnings.push(format!(
                "otel: unknown exporter client {other:?}, using http"
            ));
            Client::Http
        }
    })
}

/// A deprecated top-level key (`service_name`, `service_version`), warned about when set.
fn deprecated(
    reader: &Reader<'_>,
    key: &str,
    warnings: &mut Vec<String>,
) -> Result<String, ConfigError> {
    let value = reader.string(&format!("otel.{key}"))?.unwrap_or_default();
    if !value.is_empty() {
        let replacement = key.replace("service_", "resource.service_");
        warnings.push(format!(
            "otel {key} is deprecated, use {replacement} instead"
        ));
    }
    Ok(value)
}

fn read_resource(
    reader: &Reader<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    deprecated_name: &str,
    deprecated_version: &str,
) -> Result<ResourceSection, ConfigError> {
    let text = |key: &str| -> Result<String, ConfigError> {
        Ok(reader
            .string(&format!("otel.resource.{key}"))?
            .unwrap_or_default())
    };
    let first = |candidates: [String; 2], default: String| {
        candidates
            .into_iter()
            .find(|value| !value.is_empty())
            .unwrap_or(default)
    };
    let service_name = first(
        [text("service_name")?, deprecated_name.to_owned()],
        env("OTEL_SERVICE_NAME")
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "RoadRunner".to_owned()),
    );
    let service_version = first(
        [text("service_version")?, deprecated_version.to_owned()],
        "1.0.0".to_owned(),
    );
    let instance = text("service_instance_id")?;
    let service_instance_id = if instance.is_empty() {
        random_uuid()
    } else {
        instance
    };
    let namespace = text("service_namespace")?;
    let service_namespace = if namespace.is_empty() {
        format!("{service_name}-{}", random_uuid())
    } else {
        namespace
    };
    Ok(ResourceSection {
        service_name,
        service_version,
        service_instance_id,
        service_namespace,
    })
}

fn env_number(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<u64> {
    env(name)?.trim().parse().ok()
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs separated by commas, blanks trimmed;
/// malformed pairs are skipped (as Go's SDK does after its warning).
fn resource_attributes(env: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let Some(text) = env("OTEL_RESOURCE_ATTRIBUTES") else {
        return Vec::new();
    };
    text.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// A random (version 4) UUID in its text form.
#[must_use]
pub fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    super::ids::fill_random(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
