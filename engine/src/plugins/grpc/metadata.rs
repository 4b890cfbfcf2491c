//! Metadata both ways (spec grpc "The payload the PHP worker receives", "Response headers
//! / trailers"): the JSON context the worker gets from a call's headers, and the worker's
//! header and trailer values turned into HTTP/2 fields (`-bin` keys base64-encoded).

use crate::plugins::otel::IdSource;
use crate::plugins::rpc::services::{base64, base64_decode};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use ringrunner_protocol::otlp::{self, SpanContext};
use serde_json::Value;
use std::io::Write as _;
use std::net::SocketAddr;

/// Request headers that are not metadata (grpc-go's reserved headers), except
/// `grpc-timeout`, which reaches the worker (spec [beyond]).
const RESERVED: [&str; 7] = [
    "te",
    "connection",
    "grpc-encoding",
    "grpc-message-type",
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
];

/// Facts about the connection a call came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address (None on a unix socket).
    pub address: Option<SocketAddr>,
    /// It came over TLS.
    pub tls: bool,
}

/// The trace context rr's propagators inject into the worker's context (otelgrpc's server
/// span of the call): `Traceparent` and `Uber-Trace-Id`, continuing the client's trace when
/// its metadata carries one.
#[derive(Debug, Clone, Copy)]
pub struct CallTrace {
    traceparent: [u8; otlp::TRACEPARENT_LEN],
    uber_trace_id: [u8; otlp::UBER_TRACE_ID_LEN],
}

impl CallTrace {
    /// A new server span: the client's `traceparent`, overridden by a valid `uber-trace-id`
    /// (rr's propagators run TraceContext, Baggage, then Jaeger; each valid one replaces the
    /// last), is its parent; without one it starts a trace. Sampled unless the parent is not
    /// (Go's default sampler: parent-based, always on for a root).
    #[must_use]
    pub fn begin(headers: &HeaderMap, ids: &IdSource, shard: usize) -> Self {
        let header = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
        let w3c = header("traceparent").and_then(otlp::parse_traceparent);
        let jaeger = header("uber-trace-id").and_then(otlp::parse_uber_trace_id);
        let parent = jaeger.or(w3c);
        let span = SpanContext {
            trace_id: parent.map_or_else(|| ids.trace_id(shard), |parent| parent.trace_id),
            span_id: ids.span_id(shard),
            sampled: parent.is_none_or(|parent| parent.sampled),
        };
        Self {
            traceparent: otlp::format_traceparent(&span),
            uber_trace_id: otlp::format_uber_trace_id(&span),
        }
    }
}

/// Where a context entry's values come from.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// One value of ours.
    Text(&'a [u8]),
    /// The client's address.
    Address(Option<SocketAddr>),
    /// Every value of a metadata key, in arrival order.
    Metadata(&'a HeaderName),
}

/// What a call's context is made of.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    /// `package.Service`.
    pub service: &'a str,
    /// The method's name.
    pub method: &'a str,
    /// The `:authority` the client sent.
    pub authority: Option<&'a str>,
    /// The connection.
    pub peer: Peer,
    /// The injected trace context.
    pub trace: &'a CallTrace,
}

/// Writes the worker's context into `out` (cleared first), as rr's `json.Marshal` of
/// `{"service","method","context":{key:[values]}}` writes it: the context's keys sorted
/// bytewise, with the incoming metadata (lower-case keys, repeated keys as several values,
/// `-bin` values decoded), `:authority`, `:peer.address`, over TLS `:peer.auth-type`, and
/// rr's injected `Traceparent` and `Uber-Trace-Id`. Straight into the buffer: no map, no
/// per-value string.
pub fn worker_context(facts: &CallFacts<'_>, headers: &HeaderMap, out: &mut Vec<u8>) {
    let mut entries: Vec<(&str, Source<'_>)> = Vec::with_capacity(headers.keys_len() + 5);
    if let Some(authority) = facts.authority {
        entries.push((":authority", Source::Text(authority.as_bytes())));
    }
    entries.push((":peer.address", Source::Address(facts.peer.address)));
    if facts.peer.tls {
        entries.push((":peer.auth-type", Source::Text(b"tls")));
    }
    entries.push(("Traceparent", Source::Text(&facts.trace.traceparent)));
    entries.push(("Uber-Trace-Id", Source::Text(&facts.trace.uber_trace_id)));
    entries.extend(
        headers
            .keys()
            .filter(|name| !RESERVED.contains(&name.as_str()))
            .map(|name| (name.as_str(), Source::Metadata(name))),
    );
    out.clear();
    out.extend_from_slice(b"{\"service\":");
    put_go_json_string(out, facts.service.as_bytes());
    out.extend_from_slice(b",\"method\":");
    put_go_json_string(out, facts.method.as_bytes());
    out.extend_from_slice(b",\"context\":");
    put_metadata_map(out, entries, headers);
    out.push(b'}');
}

/// Appends `entries` as rr's `json.Marshal` writes a `map[string][]string` of metadata: keys
/// sorted bytewise, each with its values; a key whose values all fail to decode (`-bin`) is
/// left out, as grpc-go drops it. The gRPC front ends (grpc, centrifuge's proxy) share it.
pub(crate) fn put_metadata_map(
    out: &mut Vec<u8>,
    mut entries: Vec<(&str, Source<'_>)>,
    headers: &HeaderMap,
) {
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    let mut first = true;
    for (key, source) in entries {
        let entry_start = out.len();
        if !first {
            out.push(b',');
        }
        put_go_json_string(out, key.as_bytes());
        out.extend_from_slice(b":[");
        if put_values(out, key, source, headers) {
            out.push(b']');
            first = false;
        } else {
            // Only `-bin` values that do not decode: grpc-go drops them, and the key with them.
            out.truncate(entry_start);
        }
    }
    out.push(b'}');
}

/// Writes an entry's values; false when it has none.
fn put_values(out: &mut Vec<u8>, key: &str, source: Source<'_>, headers: &HeaderMap) -> bool {
    match source {
        Source::Text(text) => put_go_json_string(out, text),
        Source::Address(Some(address)) => {
            // An address is digits, dots, colons and brackets: nothing to escape.
            let _ = write!(out, "\"{address}\"");
        }
        Source::Address(None) => out.extend_from_slice(b"\"@\""),
        Source::Metadata(name) => {
            let binary = key.ends_with("-bin");
            let mut written = 0;
            for value in headers.get_all(name) {
                if written > 0 {
                    out.push(b',');
                }
                if binary {
                    // grpc-go decodes with or without padding; what does not decode is dropped.
                    match base64_decode(value.to_str().unwrap_or_default()) {
                        Some(bytes) => put_go_json_string(out, &bytes),
                        None => {
                            if written > 0 {
                                out.pop();
                            }
                            continue;
                        }
                    }
                } else {
                    put_go_json_string(out, value.as_bytes());
                }
                written += 1;
            }
            return written > 0;
        }
    }
    true
}

/// Appends `bytes` as a JSON string as Go's `encoding/json` writes one (HTML-safe): `"`,
/// `\\`, `\b`, `\f`, `\n`, `\r`, `\t` escaped short, other control characters and `<`, `>`,
/// `&`, U+2028, U+2029 as `\u` escapes, each byte of invalid UTF-8 as `\ufffd`. Plain ASCII,
/// nearly all metadata, is copied in runs without decoding.
fn put_go_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut plain_from = 0;
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        let (escape, len): (Escape, usize) = match byte {
            b'"' | b'\\' | b'<' | b'>' | b'&' | 0..=0x1f => (Escape::Ascii(byte), 1),
            0x20..=0x7f => {
                at += 1;
                continue;
            }
            _ => match bytes[at..bytes.len().min(at + 4)].utf8_chunks().next() {
                Some(chunk) => match chunk.valid().chars().next() {
                    Some(char @ ('\u{2028}' | '\u{2029}')) => (Escape::Char(char), 3),
                    Some(char) => {
                        at += char.len_utf8();
                        continue;
                    }
                    // Go decodes an invalid byte as U+FFFD, one byte at a time.
                    None => (Escape::Char('\u{fffd}'), 1),
                },
                None => break,
            },
        };
        out.extend_from_slice(&bytes[plain_from..at]);
        escape.put(out);
        at += len;
        plain_from = at;
    }
    out.extend_from_slice(&bytes[plain_from..]);
    out.push(b'"');
}

/// A character Go's JSON encoder escapes.
enum Escape {
    Ascii(u8),
    Char(char),
}

impl Escape {
    fn put(self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let code = match self {
            Self::Ascii(byte) => {
                let short: &[u8] = match byte {
                    b'"' => b"\\\"",
                    b'\\' => b"\\\\",
                    0x08 => b"\\b",
                    0x0c => b"\\f",
                    b'\n' => b"\\n",
                    b'\r' => b"\\r",
                    b'\t' => b"\\t",
                    _ => b"",
                };
                if !short.is_empty() {
                    out.extend_from_slice(short);
                    return;
                }
                u32::from(byte)
            }
            Self::Char(char) => u32::from(char),
        };
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[(code >> shift) as usize & 0xf]);
        }
    }
}

/// Why a worker's header was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// A value that is not a string, a number or a list of them.
    UnsupportedType,
    /// A name or value HTTP/2 cannot carry.
    Invalid,
}

/// Adds `key: value` (a worker's header or trailer) to `map`: strings as they are, numbers
/// as their decimal text (spec [deviation]: rr drops them), lists as repeated values, and
/// `-bin` keys base64-encoded.
///
/// # Errors
/// What kept it out; the caller logs it.
pub fn append(map: &mut HeaderMap, key: &str, value: &Value) -> Result<(), Skipped> {
    let name = HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes())
        .map_err(|_| Skipped::Invalid)?;
    if name.as_str().starts_with("grpc-") || name.as_str().starts_with(':') {
        return Err(Skipped::Invalid);
    }
    let values: Vec<String> = match value {
        Value::String(text) => vec![text.clone()],
        Value::Number(number) => vec![number.to_string()],
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                Value::Number(number) => Ok(number.to_string()),
                _ => Err(Skipped::UnsupportedType),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(Skipped::UnsupportedType),
    };
    let binary = name.as_str().ends_with("-bin");
    for text in values {
        let value = if binary {
            HeaderValue::from_str(&base64(text.as_bytes()))
        } else {
            HeaderValue::from_str(&text)
        }
        .map_err(|_| Skipped::Invalid)?;
        map.append(name.clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for &(name, value) in pairs {
            map.append(name, HeaderValue::from_static(value));
        }
        map
    }

    fn context_of(headers: &HeaderMap, authority: Option<&str>, peer: Peer) -> Vec<u8> {
        let incoming = header_map(&[(
            "traceparent",
            "00-9564af10281adb06d2745e80381b2970-0749dfcab0cd881a-01",
        )]);
        let ids = IdSource::new(1);
        let trace = CallTrace::begin(&incoming, &ids, 0);
        let facts = CallFacts {
            service: "app.main.Echo",
            method: "Meta",
            authority,
            peer,
            trace: &trace,
        };
        let mut out = b"stale".to_vec();
        worker_context(&facts, headers, &mut out);
        out
    }

    /// The span id in a context's `Traceparent` (new per call), as written.
    fn span_id(json: &[u8]) -> String {
        let value: Value = serde_json::from_slice(json).unwrap();
        value["context"]["Traceparent"][0].as_str().unwrap()[36..52].to_owned()
    }

    #[test]
    fn the_context_is_rr_s_bytes() {
        // spec grpc "The payload the PHP worker receives", its raw header.
        let headers = header_map(&[
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-accept-encoding", "identity, deflate, gzip"),
            (
                "user-agent",
                "grpc-python/1.85.4 grpc-c/58.0.0 (linux; chttp2)",
            ),
            ("x-req-id", "abc-123"),
            ("x-multi", "one"),
            ("x-bin-bin", "cnItYmluLW9r"),
            ("x-multi", "two"),
        ]);
        let peer = Peer {
            address: Some("127.0.0.1:59976".parse().unwrap()),
            tls: false,
        };
        let json = context_of(&headers, Some("127.0.0.1:59489"), peer);
        let span = span_id(&json);
        assert_ne!(span, "0749dfcab0cd881a", "a span of its own");
        let expected = format!(
            "{{\"service\":\"app.main.Echo\",\"method\":\"Meta\",\"context\":{{\
             \":authority\":[\"127.0.0.1:59489\"],\":peer.address\":[\"127.0.0.1:59976\"],\
             \"Traceparent\":[\"00-9564af10281adb06d2745e80381b2970-{span}-01\"],\
             \"Uber-Trace-Id\":[\"9564af10281adb06d2745e80381b2970:{span}:0:1\"],\
             \"content-type\":[\"application/grpc\"],\
             \"grpc-accept-encoding\":[\"identity, deflate, gzip\"],\
             \"user-agent\":[\"grpc-python/1.85.4 grpc-c/58.0.0 (linux; chttp2)\"],\
             \"x-bin-bin\":[\"rr-bin-ok\"],\"x-multi\":[\"one\",\"two\"],\
             \"x-req-id\":[\"abc-123\"]}}}}"
        );
        assert_eq!(String::from_utf8(json).unwrap(), expected);
    }

    #[test]
    fn the_context_has_tls_timeout_and_go_escapes() {
        let headers = header_map(&[
            ("grpc-timeout", "5S"),
            ("x-html", "<a&b>\t\"q\"\\"),
            // \x08 \x0c \x01, U+2028, and one byte that is not UTF-8, once decoded.
            ("x-raw-bin", "CAwB4oCo/w"),
            ("x-none-bin", "!!"),
            ("x-some-bin", "!!"),
            ("x-some-bin", "b2s="),
            ("0-first", "sorted before ':'"),
        ]);
        let peer = Peer {
            address: None,
            tls: true,
        };
        let json = context_of(&headers, None, peer);
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"context\":{\"0-first\":[\"sorted before ':'\"],\":peer.address\":[\"@\"],\":peer.auth-type\":[\"tls\"],\"Traceparent\""), "{text}");
        assert!(text.contains("\"grpc-timeout\":[\"5S\"]"), "{text}");
        assert!(
            text.contains(r#""x-html":["\u003ca\u0026b\u003e\t\"q\"\\"]"#),
            "{text}"
        );
        assert!(
            text.contains(r#""x-raw-bin":["\b\f\u0001\u2028\ufffd"]"#),
            "{text}"
        );
        assert!(!text.contains("x-none-bin"), "{text}");
        assert!(text.contains(r#""x-some-bin":["ok"]}}"#), "{text}");
        let value: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["context"]["x-html"][0], "<a&b>\t\"q\"\\");
        // A root span (no parent here): sampled, its own trace id.
        let root = CallTrace::begin(&HeaderMap::new(), &IdSource::new(1), 0);
        assert!(root.traceparent.ends_with(b"-01") && root.uber_trace_id.ends_with(b":0:1"));
        assert_eq!(root.traceparent[3..35], root.uber_trace_id[..32]);
    }

    #[test]
    fn a_jaeger_parent_wins_and_an_unsampled_one_stays_unsampled() {
        let headers = header_map(&[
            (
                "traceparent",
                "00-9564af10281adb06d2745e80381b2970-0749dfcab0cd881a-01",
            ),
            ("uber-trace-id", "00000000000000000000000000000abc:def:0:0"),
        ]);
        let trace = CallTrace::begin(&headers, &IdSource::new(1), 0);
        let traceparent = std::str::from_utf8(&trace.traceparent).unwrap();
        assert!(
            traceparent.starts_with("00-00000000000000000000000000000abc-"),
            "{traceparent}"
        );
        assert!(traceparent.ends_with("-00"), "{traceparent}");
        assert!(trace.uber_trace_id.ends_with(b":0:0"));
    }

    #[test]
    fn worker_values_become_fields() {
        let mut map = HeaderMap::new();
        append(&mut map, "X-A", &serde_json::json!("alpha")).unwrap();
        append(&mut map, "x-n", &serde_json::json!(7)).unwrap();
        append(&mut map, "x-d-bin", &serde_json::json!("ok")).unwrap();
        assert_eq!(map["x-a"], "alpha");
        assert_eq!(map["x-n"], "7");
        assert_eq!(map["x-d-bin"], "b2s=");
        assert_eq!(
            append(&mut map, "x-b", &serde_json::json!(true)),
            Err(Skipped::UnsupportedType)
        );
        assert_eq!(
            append(&mut map, "bad name", &serde_json::json!("v")),
            Err(Skipped::Invalid)
        );
        assert_eq!(
            append(&mut map, "grpc-status", &serde_json::json!("0")),
            Err(Skipped::Invalid)
        );
    }
}
