//! Finished requests as OTLP: rr's two spans each (spec devops § otel), under one resource.

use super::config::OtelSection;
use super::span::{FinishedRequest, Text};
use ringrunner_protocol::otlp::{
    Event, ExportTraceServiceRequest, InstrumentationScope, KeyValue, Resource, ResourceSpans,
    ScopeSpans, Span, SpanKind, Status, StatusCode,
};

/// otelhttp's tracer, the scope of the server span.
pub const OTELHTTP_SCOPE: &str = "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp";
/// The otelhttp version rr's build uses (the scope's version).
const OTELHTTP_VERSION: &str = "0.69.0";
/// The semantic conventions otelhttp v0.69 writes.
const SEMCONV_SCHEMA: &str = "https://opentelemetry.io/schemas/1.26.0";

/// The resource of every span: rr's attributes (plugin.go newResource) and
/// `OTEL_RESOURCE_ATTRIBUTES`.
#[must_use]
pub fn resource(config: &OtelSection) -> Resource {
    let section = &config.resource;
    let arch = match std::env::consts::ARCH {
        // Go's GOARCH names.
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut attributes = vec![
        KeyValue::string("os.name", "linux"),
        KeyValue::string("service.name", section.service_name.as_str()),
        KeyValue::string("service.version", section.service_version.as_str()),
        KeyValue::string("service.instance.id", section.service_instance_id.as_str()),
        KeyValue::string("service.namespace", section.service_namespace.as_str()),
        KeyValue::string("webengine.name", "RoadRunner"),
        KeyValue::string("webengine.version", crate::RR_COMPATIBLE_VERSION),
        KeyValue::string("host.arch", arch),
        KeyValue::string("telemetry.sdk.language", "rust"),
        KeyValue::string("telemetry.sdk.name", "ringrunner"),
        KeyValue::string("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ];
    for (key, value) in &config.resource_attributes {
        attributes.retain(|attribute| &attribute.key != key);
        attributes.push(KeyValue::string(key, value.as_str()));
    }
    Resource {
        attributes,
        dropped_attributes_count: 0,
    }
}

/// The export request for `batch`.
#[must_use]
pub fn export_request(
    resource: &Resource,
    tracer_name: &str,
    batch: &[FinishedRequest],
) -> ExportTraceServiceRequest {
    let server_spans = batch.iter().map(server_span).collect();
    let http_spans = batch.iter().map(http_span).collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![
                ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: OTELHTTP_SCOPE.into(),
                        version: OTELHTTP_VERSION.into(),
                        ..InstrumentationScope::default()
                    }),
                    spans: server_spans,
                    schema_url: String::new(),
                },
                ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: tracer_name.into(),
                        ..InstrumentationScope::default()
                    }),
                    spans: http_spans,
                    schema_url: String::new(),
                },
            ],
            schema_url: SEMCONV_SCHEMA.into(),
        }],
    }
}

fn flags(request: &FinishedRequest) -> u32 {
    // W3C sampled bit, plus OTLP's "has remote parent is known" bits (0x100, and 0x200 when
    // the parent is remote), as Go's exporter writes them.
    let remote = if request.parent_span_id.is_some() {
        0x300
    } else {
        0x100
    };
    u32::from(request.server.sampled) | remote
}

/// otelhttp's span: named by the request URI, otelhttp's attributes, ERROR on a 5xx.
fn server_span(request: &FinishedRequest) -> Span {
    let target = request.text(Text::Target);
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let scheme = if request.https { "https" } else { "http" };
    let mut attributes = vec![KeyValue::string(
        "http.request.method",
        request.text(Text::Method).into_owned(),
    )];
    attributes.push(KeyValue::string("url.scheme", scheme));
    let host = request.text(Text::Host);
    let (address, port) = split_host(&host);
    if !address.is_empty() {
        attributes.push(KeyValue::string("server.address", address));
    }
    if let Some(port) = port.filter(|&port| port != if request.https { 443 } else { 80 }) {
        attributes.push(KeyValue::int("server.port", i64::from(port)));
    }
    let peer_ip = request.peer.ip().to_string();
    attributes.push(KeyValue::string("network.peer.address", peer_ip.as_str()));
    attributes.push(KeyValue::int(
        "network.peer.port",
        i64::from(request.peer.port()),
    ));
    let user_agent = request.text(Text::UserAgent);
    if !user_agent.is_empty() {
        attributes.push(KeyValue::string(
            "user_agent.original",
            user_agent.into_owned(),
        ));
    }
    attributes.push(KeyValue::string("client.address", peer_ip));
    attributes.push(KeyValue::string("url.path", path));
    attributes.push(KeyValue::string(
        "network.protocol.version",
        request.protocol_version,
    ));
    if request.request_bytes > 0 {
        attributes.push(KeyValue::int(
            "http.request.body.size",
            i64::try_from(request.request_bytes).unwrap_or(i64::MAX),
        ));
    }
    let written = i64::try_from(request.response_bytes).unwrap_or(i64::MAX);
    attributes.push(KeyValue::int("http.response.body.size", written));
    attributes.push(KeyValue::int(
        "http.response.status_code",
        i64::from(request.status),
    ));
    let status = (request.status >= 500).then(|| Status {
        message: String::new(),
        code: StatusCode::Error as i32,
    });
    Span {
        trace_id: request.server.trace_id.to_vec(),
        span_id: request.server.span_id.to_vec(),
        trace_state: request.text(Text::TraceState).into_owned(),
        parent_span_id: request
            .parent_span_id
            .map(|id| id.to_vec())
            .unwrap_or_default(),
        name: target.into_owned(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: request.start_unix_nanos,
        end_time_unix_nano: request.end_unix_nanos,
        attributes,
        events: vec![Event {
            time_unix_nano: request.end_unix_nanos,
            name: "write".into(),
            attributes: vec![KeyValue::int("http.wrote_bytes", written)],
            dropped_attributes_count: 0,
        }],
        status,
        flags: flags(request),
        ..Span::default()
    }
}

/// The http plugin's own span: `http`, no attributes, child of the server span.
fn http_span(request: &FinishedRequest) -> Span {
    Span {
        trace_id: request.server.trace_id.to_vec(),
        span_id: request.http_span_id.to_vec(),
        trace_state: request.text(Text::TraceState).into_owned(),
        parent_span_id: request.server.span_id.to_vec(),
        name: "http".into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: request.start_unix_nanos,
        end_time_unix_nano: request.end_unix_nanos,
        flags: u32::from(request.server.sampled) | 0x100,
        ..Span::default()
    }
}

/// `host[:port]` (IPv6 in brackets) as (host, port).
fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return (host, None);
        };
        return (
            address,
            after.strip_prefix(':').and_then(|p| p.parse().ok()),
        );
    }
    match host.rsplit_once(':') {
        Some((address, port)) => (address, port.parse().ok()),
        None => (host, None),
    }
}

/// `batch` as JSON lines, one per span (the `stdout`/`stderr` exporters): the OTLP fields
/// with ids in hex.
#[must_use]
pub fn json_lines(request: &ExportTraceServiceRequest) -> String {
    let mut out = String::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|resource| attributes_json(&resource.attributes))
            .unwrap_or_default();
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans
                .scope
                .as_ref()
                .map(|scope| scope.name.clone())
                .unwrap_or_default();
            for span in &scope_spans.spans {
                let line = serde_json::json!({
                    "Name": span.name,
                    "TraceID": hex(&span.trace_id),
                    "SpanID": hex(&span.span_id),
                    "ParentSpanID": hex(&span.parent_span_id),
                    "SpanKind": span.kind,
                    "StartTime": span.start_time_unix_nano,
                    "EndTime": span.end_time_unix_nano,
                    "Attributes": attributes_json(&span.attributes),
                    "Status": span.status.as_ref().map_or(0, |status| status.code),
                    "InstrumentationScope": scope,
                    "Resource": resource,
                });
                out.push_str(&line.to_string());
                out.push('\n');
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes_json(attributes: &[KeyValue]) -> serde_json::Value {
    let map = attributes
        .iter()
        .map(|attribute| {
            let value = match (attribute.as_str(), attribute.as_int()) {
                (Some(text), _) => serde_json::Value::from(text),
                (None, Some(number)) => serde_json::Value::from(number),
                (None, None) => serde_json::Value::Null,
            };
            (attribute.key.clone(), value)
        })
        .collect();
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_into_address_and_port() {
        assert_eq!(split_host("127.0.0.1:8080"), ("127.0.0.1", Some(8080)));
        assert_eq!(split_host("example.com"), ("example.com", None));
        assert_eq!(split_host("[::1]:9"), ("::1", Some(9)));
        assert_eq!(split_host("[::1"), ("[::1", None));
        assert_eq!(split_host("h:x"), ("h", None));
    }
}
