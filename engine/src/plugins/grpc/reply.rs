//! A worker's reply read as rr reads it (spec grpc "Response headers / trailers"): the
//! context is `ResponseHeaders::packHeaders()` JSON; plain keys are headers ("old API"),
//! `headers` / `trailers` hold JSON objects encoded as strings ("new API"), and `error`
//! holds a base64 `google.rpc.Status` from a `GRPCException`.

use super::call::CallStatus;
use super::metadata::{self, Skipped};
use crate::plugins::rpc::services::base64_decode;
use http::HeaderMap;
use prost::Message as _;
use ringrunner_protocol::grpc::{Code, Status};
use serde_json::{Map, Value};

/// What the worker's context says.
#[derive(Debug, Default)]
pub struct WorkerReply {
    /// Initial metadata.
    pub headers: HeaderMap,
    /// Trailing metadata.
    pub trailers: HeaderMap,
    /// The status of a `GRPCException` (None: OK).
    pub error: Option<CallStatus>,
}

/// Reads a reply's context. Values that cannot be sent are skipped with rr's warning.
#[must_use]
pub fn read(context: &[u8]) -> WorkerReply {
    let mut reply = WorkerReply::default();
    // `{}` (no header set) is what most replies carry: nothing to parse.
    if context.is_empty() || context == b"{}" {
        return reply;
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(context) else {
        tracing::warn!(target: "grpc", "worker response headers are not a JSON object: ignored");
        return reply;
    };
    for (key, value) in &map {
        match key.as_str() {
            // spec [deviation]: the error goes to the status only, not to the headers too.
            "error" => reply.error = Some(exception_status(value)),
            "headers" => append_object(&mut reply.headers, value),
            "trailers" => append_object(&mut reply.trailers, value),
            _ => append_logged(&mut reply.headers, key, value),
        }
    }
    reply
}

/// The status a `GRPCException`'s `error` header carries.
fn exception_status(value: &Value) -> CallStatus {
    let status = value
        .as_str()
        .and_then(base64_decode)
        .and_then(|bytes| Status::decode(bytes.as_slice()).ok().map(|s| (s, bytes)));
    match status {
        Some((status, bytes)) => CallStatus {
            code: Code::from_i32(status.code),
            message: status.message,
            details: (!status.details.is_empty()).then_some(bytes),
        },
        None => CallStatus::new(
            Code::Internal,
            "worker sent an error header that is not a base64 google.rpc.Status".into(),
        ),
    }
}

/// A new-API value: a JSON object encoded as a string.
fn append_object(map: &mut HeaderMap, value: &Value) {
    let object: Option<Map<String, Value>> = match value {
        Value::String(text) => serde_json::from_str(text).ok(),
        Value::Object(object) => Some(object.clone()),
        _ => None,
    };
    let Some(object) = object else {
        tracing::warn!(target: "grpc", value = %value, "skipping headers that are not a JSON object");
        return;
    };
    for (key, value) in &object {
        append_logged(map, key, value);
    }
}

fn append_logged(map: &mut HeaderMap, key: &str, value: &Value) {
    match metadata::append(map, key, value) {
        Ok(()) => {}
        Err(Skipped::UnsupportedType) => {
            tracing::warn!(target: "grpc", key, value = %value, "skipping header with unsupported type");
        }
        Err(Skipped::Invalid) => {
            tracing::warn!(target: "grpc", key, value = %value, "skipping header that HTTP/2 cannot carry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::rpc::services::base64;

    #[test]
    fn old_and_new_api_and_an_exception() {
        let context = serde_json::json!({
            "x-resp-a": "alpha",
            "headers": "{\"x-hdr-new\":\"h\"}",
            "trailers": "{\"x-trl-new\":\"t\",\"x-trl-num\":7}",
        });
        let reply = read(context.to_string().as_bytes());
        assert_eq!(reply.headers["x-resp-a"], "alpha");
        assert_eq!(reply.headers["x-hdr-new"], "h");
        assert_eq!(reply.trailers["x-trl-new"], "t");
        assert_eq!(reply.trailers["x-trl-num"], "7");
        assert!(reply.error.is_none());

        let status = Status {
            code: 5,
            message: "thing k42 not found".into(),
            details: vec![ringrunner_protocol::grpc::Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                value: vec![10, 1, b'r'],
            }],
        };
        let context = serde_json::json!({ "error": base64(&status.encode_to_vec()) });
        let reply = read(context.to_string().as_bytes());
        let error = reply.error.expect("status");
        assert_eq!(error.code, Code::NotFound);
        assert_eq!(error.message, "thing k42 not found");
        assert_eq!(error.details, Some(status.encode_to_vec()));
        assert!(reply.headers.is_empty(), "the error is not a header");
    }

    #[test]
    fn garbage_never_panics() {
        for context in [
            &b"{"[..],
            b"[]",
            b"{\"error\":\"!!\"}",
            b"{\"headers\":5}",
            b"\xff",
        ] {
            let _ = read(context);
        }
    }
}
