//! OpenTelemetry's trace export messages (opentelemetry-proto `collector/trace/v1`,
//! `trace/v1`, `common/v1`, `resource/v1`) as prost types, field numbers from the
//! opentelemetry-proto `.proto` files; and the trace context headers rr's `otel` middleware
//! reads and writes (W3C `traceparent`, Jaeger `uber-trace-id`), as pure functions that
//! never panic on any header (spec devops § otel).

mod context;
#[cfg(test)]
mod context_properties;

pub use context::{
    format_traceparent, format_uber_trace_id, parse_traceparent, parse_uber_trace_id, SpanContext,
    TRACEPARENT_LEN, UBER_TRACE_ID_LEN,
};

/// `ExportTraceServiceRequest`: the body of an OTLP/HTTP `POST /v1/traces` and of the gRPC
/// `TraceService/Export` call.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    /// Spans grouped by the resource that made them.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

impl ExportTraceServiceRequest {
    /// Reads the protobuf bytes of an export (a collector's, or a test receiver's, side).
    ///
    /// # Errors
    /// Bytes that are not this message.
    pub fn from_protobuf(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        <Self as prost::Message>::decode(bytes)
    }
}

/// `ExportTraceServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceResponse {
    /// Set when the collector refused some spans.
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

/// `ExportTracePartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTracePartialSuccess {
    /// Spans the collector refused.
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    /// Why.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// `ResourceSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    /// The process that made the spans.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// Spans grouped by instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
    /// Semantic conventions' schema.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// `service.name` and the like.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// Attributes left out.
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

/// `ScopeSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    /// The instrumentation (tracer) that made the spans.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// The spans.
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    /// Semantic conventions' schema.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `InstrumentationScope`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    /// The tracer's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// Its attributes.
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    /// Attributes left out.
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// `Span`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// W3C `tracestate`.
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// 8 bytes, or empty for a root span.
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    /// What the span measured.
    #[prost(string, tag = "5")]
    pub name: String,
    /// [`SpanKind`] as its number.
    #[prost(int32, tag = "6")]
    pub kind: i32,
    /// Start, Unix nanoseconds.
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    /// End, Unix nanoseconds.
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    /// Its attributes.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// Attributes left out.
    #[prost(uint32, tag = "10")]
    pub dropped_attributes_count: u32,
    /// Its events.
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
    /// Events left out.
    #[prost(uint32, tag = "12")]
    pub dropped_events_count: u32,
    /// Links left out (no links are made).
    #[prost(uint32, tag = "14")]
    pub dropped_links_count: u32,
    /// Unset, ok or error.
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
    /// W3C trace flags in the low byte (last: prost writes fields in declaration order).
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
}

/// `Span.SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum SpanKind {
    /// Not said.
    Unspecified = 0,
    /// Inside an operation.
    Internal = 1,
    /// A request served.
    Server = 2,
    /// A request made.
    Client = 3,
}

/// `Span.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// When, Unix nanoseconds.
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// What happened.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Its attributes.
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    /// Attributes left out.
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// `Status` (its field 1 is reserved).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// Why, for an error.
    #[prost(string, tag = "2")]
    pub message: String,
    /// [`StatusCode`] as its number.
    #[prost(int32, tag = "3")]
    pub code: i32,
}

/// `Status.StatusCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum StatusCode {
    /// Nothing said (rr's for a 2xx–4xx server span).
    Unset = 0,
    /// Ok.
    Ok = 1,
    /// Failed (rr's for a 5xx).
    Error = 2,
}

/// `KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// The attribute's name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Its value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

impl KeyValue {
    /// A string attribute.
    #[must_use]
    pub fn string(key: &str, value: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
        }
    }

    /// An integer attribute.
    #[must_use]
    pub fn int(key: &str, value: i64) -> Self {
        Self {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(value)),
            }),
        }
    }

    /// The value as text, when it is a string.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(text) => Some(text),
            _ => None,
        }
    }

    /// The value, when it is an integer.
    #[must_use]
    pub fn as_int(&self) -> Option<i64> {
        match self.value.as_ref()?.value.as_ref()? {
            any_value::Value::IntValue(value) => Some(*value),
            _ => None,
        }
    }
}

/// `AnyValue` (arrays and key-value lists are not made, and skipped when read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// The value.
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 7")]
    pub value: Option<any_value::Value>,
}

/// `AnyValue`'s cases.
pub mod any_value {
    /// One of `AnyValue`'s scalar kinds.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// Text.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// A flag.
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        /// An integer.
        #[prost(int64, tag = "3")]
        IntValue(i64),
        /// A float.
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        /// Bytes.
        #[prost(bytes = "vec", tag = "7")]
        BytesValue(Vec<u8>),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The bytes a span's fields become match the `.proto`'s tags and wire types.
    #[test]
    fn span_fields_have_the_proto_tags() {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            flags: 1,
            name: "n".into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: 5,
            ..Span::default()
        };
        let bytes = span.encode_to_vec();
        // tag 1, length-delimited: 0x0a 16 …
        assert_eq!(&bytes[..2], &[0x0a, 16]);
        assert_eq!(&bytes[18..20], &[0x12, 8]);
        // name (5, bytes) then kind (6, varint) then start (7, fixed64) …
        let name_at = 28;
        assert_eq!(&bytes[name_at..name_at + 3], &[0x2a, 1, b'n']);
        assert_eq!(&bytes[name_at + 3..name_at + 5], &[0x30, 2]);
        assert_eq!(bytes[name_at + 5], 0x39);
        // flags: field 16, fixed32 → key 0x85 0x01.
        assert_eq!(&bytes[bytes.len() - 6..bytes.len() - 4], &[0x85, 0x01]);
        assert_eq!(Span::decode(bytes.as_slice()).ok(), Some(span));
    }

    #[test]
    fn a_request_round_trips() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue::string("service.name", "svc")],
                    dropped_attributes_count: 0,
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "scope".into(),
                        ..InstrumentationScope::default()
                    }),
                    spans: vec![Span {
                        attributes: vec![KeyValue::int("http.response.status_code", 500)],
                        status: Some(Status {
                            message: String::new(),
                            code: StatusCode::Error as i32,
                        }),
                        events: vec![Event {
                            name: "write".into(),
                            ..Event::default()
                        }],
                        ..Span::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let bytes = request.encode_to_vec();
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice());
        assert_eq!(decoded.ok(), Some(request.clone()));
        let first = &request.resource_spans[0].scope_spans[0].spans[0].attributes[0];
        assert_eq!(first.as_int(), Some(500));
        assert_eq!(first.as_str(), None);
    }
}
