//! Metadata both ways (spec grpc "The payload the PHP worker receives", "Response headers
//! / trailers"): the JSON context the worker gets from a call's headers, and the worker's
//! header and trailer values turned into HTTP/2 fields (`-bin` keys base64-encoded).

use crate::plugins::rpc::services::{base64, base64_decode};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
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

/// The worker's context: `{"service","method","context":{key:[values]}}` with the
/// incoming metadata (lower-case keys, repeated keys as several values, `-bin` values
/// decoded), `:authority`, `:peer.address` and, over TLS, `:peer.auth-type`.
#[must_use]
pub fn worker_context(
    service: &str,
    method: &str,
    authority: Option<&str>,
    headers: &HeaderMap,
    peer: Peer,
) -> Vec<u8> {
    let mut context: Map<String, Value> = Map::new();
    let mut push = |key: &str, value: String| {
        if let Value::Array(values) = context
            .entry(key.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            values.push(Value::String(value));
        }
    };
    if let Some(authority) = authority {
        push(":authority", authority.to_owned());
    }
    let address = peer
        .address
        .map_or_else(|| "@".to_owned(), |address| address.to_string());
    push(":peer.address", address);
    if peer.tls {
        push(":peer.auth-type", "tls".into());
    }
    for (name, value) in headers {
        let key = name.as_str();
        if RESERVED.contains(&key) {
            continue;
        }
        let text = if key.ends_with("-bin") {
            // grpc-go decodes with or without padding; what does not decode is dropped.
            match base64_decode(value.to_str().unwrap_or_default()) {
                Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                None => continue,
            }
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        push(key, text);
    }
    let mut root = Map::new();
    root.insert("service".into(), Value::String(service.to_owned()));
    root.insert("method".into(), Value::String(method.to_owned()));
    root.insert("context".into(), Value::Object(context));
    serde_json::to_vec(&Value::Object(root)).unwrap_or_default()
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

    #[test]
    fn the_context_has_rr_s_shape() {
        let mut headers = HeaderMap::new();
        headers.append("x-multi", HeaderValue::from_static("one"));
        headers.append("x-multi", HeaderValue::from_static("two"));
        headers.append("x-bin-bin", HeaderValue::from_static("cnItYmluLW9r"));
        headers.append("te", HeaderValue::from_static("trailers"));
        headers.append("grpc-timeout", HeaderValue::from_static("5S"));
        let peer = Peer {
            address: Some("127.0.0.1:4000".parse().unwrap()),
            tls: true,
        };
        let json = worker_context("app.main.Echo", "Meta", Some("h:1"), &headers, peer);
        let value: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["service"], "app.main.Echo");
        assert_eq!(value["method"], "Meta");
        let context = &value["context"];
        assert_eq!(context["x-multi"], serde_json::json!(["one", "two"]));
        assert_eq!(context["x-bin-bin"], serde_json::json!(["rr-bin-ok"]));
        assert_eq!(context[":authority"], serde_json::json!(["h:1"]));
        assert_eq!(
            context[":peer.address"],
            serde_json::json!(["127.0.0.1:4000"])
        );
        assert_eq!(context[":peer.auth-type"], serde_json::json!(["tls"]));
        assert_eq!(context["grpc-timeout"], serde_json::json!(["5S"]));
        assert!(context.get("te").is_none());
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
