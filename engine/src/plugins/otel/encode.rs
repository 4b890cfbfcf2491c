//! Finished requests as OTLP: rr's two spans each (spec devops § otel), under one resource.

use super::config::OtelSection;
use super::span::{FinishedRequest, Text};
use super::wire;
use ringrunner_protocol::otlp::{
    Event, ExportTraceServiceRequest, InstrumentationScope, KeyValue, Resource, ResourceSpans,
    ScopeSpans, Span, SpanKind, Status, StatusCode,
};
use std::borrow::Cow;

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

/// The name of the write event's attribute (otelhttp's).
pub const WROTE_BYTES: &str = "http.wrote_bytes";

/// An attribute's value.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    /// Text.
    Text(Cow<'a, str>),
    /// An integer.
    Int(i64),
}

/// A span's fields, borrowed from its finished request: written as protobuf bytes by
/// `wire.rs`, or as a prost message (the JSON lines).
#[derive(Debug, Clone)]
pub struct SpanView<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: Cow<'a, str>,
    pub parent_span_id: &'a [u8],
    pub name: Cow<'a, str>,
    pub kind: i32,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, Value<'a>)>,
    /// otelhttp's `write` event with the bytes written.
    pub write_event: Option<i64>,
    /// `Some(ERROR)` for a 5xx, else unset.
    pub status_code: Option<i32>,
    pub flags: u32,
}

impl SpanView<'_> {
    /// As a prost message.
    #[must_use]
    pub fn to_span(&self) -> Span {
        let key_value = |key: &str, value: &Value<'_>| match value {
            Value::Text(text) => KeyValue::string(key, text.as_ref()),
            Value::Int(number) => KeyValue::int(key, *number),
        };
        Span {
            trace_id: self.trace_id.to_vec(),
            span_id: self.span_id.to_vec(),
            trace_state: self.trace_state.clone().into_owned(),
            parent_span_id: self.parent_span_id.to_vec(),
            name: self.name.clone().into_owned(),
            kind: self.kind,
            start_time_unix_nano: self.start_unix_nanos,
            end_time_unix_nano: self.end_unix_nanos,
            attributes: self
                .attributes
                .iter()
                .map(|(key, value)| key_value(key, value))
                .collect(),
            events: self
                .write_event
                .map(|written| Event {
                    time_unix_nano: self.end_unix_nanos,
                    name: "write".into(),
                    attributes: vec![KeyValue::int(WROTE_BYTES, written)],
                    dropped_attributes_count: 0,
                })
                .into_iter()
                .collect(),
            status: self.status_code.map(|code| Status {
                message: String::new(),
                code,
            }),
            flags: self.flags,
            ..Span::default()
        }
    }
}

/// The export request for `batch` as prost messages (the JSON lines' source).
#[must_use]
pub fn export_request(
    resource: &Resource,
    tracer_name: &str,
    batch: &[FinishedRequest],
) -> ExportTraceServiceRequest {
    let server_spans = batch.iter().map(|r| server_span(r).to_span()).collect();
    let http_spans = batch.iter().map(|r| http_span(r).to_span()).collect();
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

/// The export request for `batch` as protobuf bytes, written straight from the records.
#[must_use]
pub fn export_bytes(
    resource: &Resource,
    tracer_name: &str,
    batch: &[FinishedRequest],
    scratch: &mut wire::Scratch,
) -> Vec<u8> {
    wire::begin_resource_spans(scratch, &resource.attributes);
    wire::scope_spans(
        scratch,
        OTELHTTP_SCOPE,
        OTELHTTP_VERSION,
        batch.iter().map(server_span),
    );
    wire::scope_spans(scratch, tracer_name, "", batch.iter().map(http_span));
    wire::finish(scratch, SEMCONV_SCHEMA)
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
fn server_span(request: &FinishedRequest) -> SpanView<'_> {
    let target = request.text(Text::Target);
    let path = match &target {
        Cow::Borrowed(text) => Cow::Borrowed(text.split('?').next().unwrap_or_default()),
        Cow::Owned(text) => Cow::Owned(text.split('?').next().unwrap_or_default().to_owned()),
    };
    let scheme = if request.https { "https" } else { "http" };
    let mut attributes = Vec::with_capacity(14);
    attributes.push((
        "http.request.method",
        Value::Text(request.text(Text::Method)),
    ));
    attributes.push(("url.scheme", Value::Text(scheme.into())));
    let (address, port) = match request.text(Text::Host) {
        Cow::Borrowed(host) => {
            let (address, port) = split_host(host);
            (Cow::Borrowed(address), port)
        }
        Cow::Owned(host) => {
            let (address, port) = split_host(&host);
            (Cow::Owned(address.to_owned()), port)
        }
    };
    if !address.is_empty() {
        attributes.push(("server.address", Value::Text(address)));
    }
    if let Some(port) = port.filter(|&port| port != if request.https { 443 } else { 80 }) {
        attributes.push(("server.port", Value::Int(i64::from(port))));
    }
    let peer_ip: Cow<'_, str> = request.peer.ip().to_string().into();
    attributes.push(("network.peer.address", Value::Text(peer_ip.clone())));
    attributes.push((
        "network.peer.port",
        Value::Int(i64::from(request.peer.port())),
    ));
    let user_agent = request.text(Text::UserAgent);
    if !user_agent.is_empty() {
        attributes.push(("user_agent.original", Value::Text(user_agent)));
    }
    attributes.push(("client.address", Value::Text(peer_ip)));
    attributes.push(("url.path", Value::Text(path)));
    attributes.push((
        "network.protocol.version",
        Value::Text(request.protocol_version.into()),
    ));
    if request.request_bytes > 0 {
        let size = i64::try_from(request.request_bytes).unwrap_or(i64::MAX);
        attributes.push(("http.request.body.size", Value::Int(size)));
    }
    let written = i64::try_from(request.response_bytes).unwrap_or(i64::MAX);
    attributes.push(("http.response.body.size", Value::Int(written)));
    attributes.push((
        "http.response.status_code",
        Value::Int(i64::from(request.status)),
    ));
    SpanView {
        trace_id: &request.server.trace_id,
        span_id: &request.server.span_id,
        trace_state: request.text(Text::TraceState),
        parent_span_id: request.parent_span_id.as_ref().map_or(&[], |id| &id[..]),
        name: target,
        kind: SpanKind::Server as i32,
        start_unix_nanos: request.start_unix_nanos,
        end_unix_nanos: request.end_unix_nanos,
        attributes,
        write_event: Some(written),
        status_code: (request.status >= 500).then_some(StatusCode::Error as i32),
        flags: flags(request),
    }
}

/// The http plugin's own span: `http`, no attributes, child of the server span.
fn http_span(request: &FinishedRequest) -> SpanView<'_> {
    SpanView {
        trace_id: &request.server.trace_id,
        span_id: &request.http_span_id,
        trace_state: request.text(Text::TraceState),
        parent_span_id: &request.server.span_id,
        name: Cow::Borrowed("http"),
        kind: SpanKind::Server as i32,
        start_unix_nanos: request.start_unix_nanos,
        end_unix_nanos: request.end_unix_nanos,
        attributes: Vec::new(),
        write_event: None,
        status_code: None,
        flags: u32::from(request.server.sampled) | 0x100,
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
    use prost::Message;

    /// The bytes written straight from the records read back as the messages built the
    /// long way: same fields, same values.
    #[test]
    fn the_direct_encoding_is_the_messages_encoding() {
        let batch = [
            FinishedRequest::for_test(["GET", "/a?b=1", "h:8080", "ua", ""], 200, None),
            FinishedRequest::for_test(
                ["POST", "/caf\u{e9}", "[::1]:443", "", "k=v"],
                503,
                Some([1; 8]),
            ),
        ];
        let resource = Resource {
            attributes: vec![
                KeyValue::string("service.name", "svc"),
                KeyValue::string("os.name", "linux"),
            ],
            dropped_attributes_count: 0,
        };
        let mut scratch = wire::Scratch::default();
        for _ in 0..2 {
            let bytes = export_bytes(&resource, "tracer", &batch, &mut scratch);
            let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(decoded, export_request(&resource, "tracer", &batch));
        }
        let spans = &export_request(&resource, "tracer", &batch).resource_spans[0].scope_spans;
        assert_eq!(spans[0].spans[1].status.as_ref().map(|s| s.code), Some(2));
        assert_eq!(spans[0].spans[0].name, "/a?b=1");
        assert_eq!(spans[1].spans[0].name, "http");
    }

    #[test]
    fn hosts_split_into_address_and_port() {
        assert_eq!(split_host("127.0.0.1:8080"), ("127.0.0.1", Some(8080)));
        assert_eq!(split_host("example.com"), ("example.com", None));
        assert_eq!(split_host("[::1]:9"), ("::1", Some(9)));
        assert_eq!(split_host("[::1"), ("[::1", None));
        assert_eq!(split_host("h:x"), ("h", None));
    }
}
