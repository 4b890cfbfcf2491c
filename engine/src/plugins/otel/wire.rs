//! The export request written straight to protobuf bytes from the finished requests (no
//! intermediate messages: two spans per request at tens of thousands of requests a second
//! must cost the exporter thread little). Field numbers are opentelemetry-proto's, as in
//! `ringrunner_protocol::otlp`; the tests read the bytes back with those prost types.

use super::encode::{SpanView, Value};
use ringrunner_protocol::otlp::KeyValue;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;
const FIXED32: u32 = 5;

fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(out: &mut Vec<u8>, tag: u32, wire_type: u32) {
    put_varint(out, u64::from((tag << 3) | wire_type));
}

/// A length-delimited field (string, bytes, or an encoded message); empty ones are left
/// out, as proto3 leaves out default values.
fn put_bytes(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    put_key(out, tag, LENGTH_DELIMITED);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_fixed64(out: &mut Vec<u8>, tag: u32, value: u64) {
    put_key(out, tag, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

/// The `AnyValue` of `value`: its encoded length, then its bytes.
fn any_value_len(value: &Value<'_>) -> usize {
    match value {
        Value::Text(text) => 1 + varint_len(text.len() as u64) + text.len(),
        Value::Int(number) => 1 + varint_len(*number as u64),
    }
}

fn key_value_len(key: &str, value: &Value<'_>) -> usize {
    let any = any_value_len(value);
    1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any
}

/// A `KeyValue` message as field `tag` of its parent.
fn put_key_value(out: &mut Vec<u8>, tag: u32, key: &str, value: &Value<'_>) {
    put_key(out, tag, LENGTH_DELIMITED);
    put_varint(out, key_value_len(key, value) as u64);
    put_bytes(out, 1, key.as_bytes());
    put_key(out, 2, LENGTH_DELIMITED);
    put_varint(out, any_value_len(value) as u64);
    match value {
        Value::Text(text) => {
            put_key(out, 1, LENGTH_DELIMITED);
            put_varint(out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
        Value::Int(number) => {
            put_key(out, 3, VARINT);
            put_varint(out, *number as u64);
        }
    }
}

/// A span's message bytes into `out` (cleared first).
pub fn span(view: &SpanView<'_>, out: &mut Vec<u8>) {
    out.clear();
    put_bytes(out, 1, view.trace_id);
    put_bytes(out, 2, view.span_id);
    put_bytes(out, 3, view.trace_state.as_bytes());
    put_bytes(out, 4, view.parent_span_id);
    put_bytes(out, 5, view.name.as_bytes());
    put_key(out, 6, VARINT);
    put_varint(out, u64::from(view.kind.unsigned_abs()));
    put_fixed64(out, 7, view.start_unix_nanos);
    put_fixed64(out, 8, view.end_unix_nanos);
    for (key, value) in &view.attributes {
        put_key_value(out, 9, key, value);
    }
    if let Some(written) = view.write_event {
        // Event { time_unix_nano = 1, name = 2 "write", attributes = 3 }.
        let value = Value::Int(written);
        let attribute = key_value_len(super::encode::WROTE_BYTES, &value);
        let len = 9 + 2 + 5 + 1 + varint_len(attribute as u64) + attribute;
        put_key(out, 11, LENGTH_DELIMITED);
        put_varint(out, len as u64);
        put_fixed64(out, 1, view.end_unix_nanos);
        put_bytes(out, 2, b"write");
        put_key_value(out, 3, super::encode::WROTE_BYTES, &value);
    }
    if let Some(code) = view.status_code {
        // Status { code = 3 }.
        put_key(out, 15, LENGTH_DELIMITED);
        put_varint(out, 1 + varint_len(code as u64) as u64);
        put_key(out, 3, VARINT);
        put_varint(out, code as u64);
    }
    put_key(out, 16, FIXED32);
    out.extend_from_slice(&view.flags.to_le_bytes());
}

/// Reused buffers of one export's encoding.
#[derive(Debug, Default)]
pub struct Scratch {
    span: Vec<u8>,
    scope: Vec<u8>,
    resource_spans: Vec<u8>,
}

/// One `ScopeSpans` (its scope's name and version, then `spans`) into `out`.
pub fn scope_spans<'a>(
    scratch: &mut Scratch,
    name: &str,
    version: &str,
    spans: impl Iterator<Item = SpanView<'a>>,
) {
    let Scratch {
        span: span_buf,
        scope,
        resource_spans,
    } = scratch;
    scope.clear();
    let scope_len = if name.is_empty() {
        0
    } else {
        1 + varint_len(name.len() as u64) + name.len()
    } + if version.is_empty() {
        0
    } else {
        1 + varint_len(version.len() as u64) + version.len()
    };
    put_key(scope, 1, LENGTH_DELIMITED);
    put_varint(scope, scope_len as u64);
    put_bytes(scope, 1, name.as_bytes());
    put_bytes(scope, 2, version.as_bytes());
    for view in spans {
        span(&view, span_buf);
        put_key(scope, 2, LENGTH_DELIMITED);
        put_varint(scope, span_buf.len() as u64);
        scope.extend_from_slice(span_buf);
    }
    put_key(resource_spans, 2, LENGTH_DELIMITED);
    put_varint(resource_spans, scope.len() as u64);
    resource_spans.extend_from_slice(scope);
}

/// Starts a `ResourceSpans` with its resource.
pub fn begin_resource_spans(scratch: &mut Scratch, resource: &[KeyValue]) {
    let resource_spans = &mut scratch.resource_spans;
    resource_spans.clear();
    let attributes: Vec<(&str, Value<'_>)> = resource
        .iter()
        .map(|kv| {
            (
                kv.key.as_str(),
                Value::Text(kv.as_str().unwrap_or_default().into()),
            )
        })
        .collect();
    let len: usize = attributes
        .iter()
        .map(|(key, value)| {
            let kv = key_value_len(key, value);
            1 + varint_len(kv as u64) + kv
        })
        .sum();
    put_key(resource_spans, 1, LENGTH_DELIMITED);
    put_varint(resource_spans, len as u64);
    for (key, value) in &attributes {
        put_key_value(resource_spans, 1, key, value);
    }
}

/// Ends the `ResourceSpans` (its schema URL) and writes the whole export request.
#[must_use]
pub fn finish(scratch: &mut Scratch, schema_url: &str) -> Vec<u8> {
    let resource_spans = &mut scratch.resource_spans;
    put_bytes(resource_spans, 3, schema_url.as_bytes());
    let mut out = Vec::with_capacity(resource_spans.len() + 8);
    put_key(&mut out, 1, LENGTH_DELIMITED);
    put_varint(&mut out, resource_spans.len() as u64);
    out.extend_from_slice(resource_spans);
    out
}
