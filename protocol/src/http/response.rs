//! The worker's response context (spec http §1.3, §1.7): protobuf `http.v1.Response`, or the
//! legacy JSON object. We accept both whatever the codec flag says (rr ≥ 2024 rejects JSON).

use super::proto;
use crate::Flags;
use prost::Message;

/// Status and headers of a worker's response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseHead {
    /// HTTP status as the worker sent it (validated by the HTTP layer).
    pub status: i64,
    /// Headers; one line per value.
    pub headers: Vec<(String, Vec<Vec<u8>>)>,
}

/// A response context that is neither valid protobuf nor valid JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid response context from worker: {0}")]
pub struct ResponseError(String);

/// Decodes a response context by its codec flag, falling back to the other shape.
///
/// # Errors
/// When neither shape decodes.
pub fn decode_response(codec: Flags, context: &[u8]) -> Result<ResponseHead, ResponseError> {
    let looks_like_json = context.first() == Some(&b'{');
    if codec.contains(Flags::CODEC_JSON) || (looks_like_json && !codec.contains(Flags::CODEC_PROTO))
    {
        return decode_json(context)
            .or_else(|json_error| decode_proto(context).map_err(|_| json_error));
    }
    decode_proto(context).or_else(|proto_error| {
        if looks_like_json {
            decode_json(context).map_err(|_| proto_error)
        } else {
            Err(proto_error)
        }
    })
}

fn decode_proto(context: &[u8]) -> Result<ResponseHead, ResponseError> {
    let response =
        proto::Response::decode(context).map_err(|error| ResponseError(error.to_string()))?;
    Ok(ResponseHead {
        status: response.status,
        headers: response
            .headers
            .into_iter()
            .map(|(name, values)| (name, values.value))
            .collect(),
    })
}

fn decode_json(context: &[u8]) -> Result<ResponseHead, ResponseError> {
    #[derive(serde::Deserialize)]
    struct Json {
        #[serde(default)]
        status: i64,
        #[serde(default)]
        headers: Option<serde_json::Map<String, serde_json::Value>>,
    }
    let json: Json =
        serde_json::from_slice(context).map_err(|error| ResponseError(error.to_string()))?;
    let headers = json
        .headers
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            let values = match value {
                serde_json::Value::Array(items) => items.iter().map(json_text).collect(),
                other => vec![json_text(&other)],
            };
            (name, values)
        })
        .collect();
    Ok(ResponseHead {
        status: json.status,
        headers,
    })
}

fn json_text(value: &serde_json::Value) -> Vec<u8> {
    match value {
        serde_json::Value::String(text) => text.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn proto_response_decodes() {
        let response = proto::Response {
            status: 201,
            headers: HashMap::from([(
                "Set-Cookie".to_owned(),
                proto::HeaderValue {
                    value: vec![b"a=1".to_vec(), b"b=2".to_vec()],
                },
            )]),
        };
        let head = decode_response(Flags::CODEC_PROTO, &response.encode_to_vec()).unwrap();
        assert_eq!(head.status, 201);
        assert_eq!(
            head.headers,
            vec![(
                "Set-Cookie".to_owned(),
                vec![b"a=1".to_vec(), b"b=2".to_vec()]
            )]
        );
    }

    #[test]
    fn json_response_decodes_with_either_flag() {
        let json = br#"{"status":404,"headers":{"X-A":["1","2"],"X-B":"3"}}"#;
        for flag in [Flags::CODEC_JSON, Flags::EMPTY, Flags::CODEC_RAW] {
            let mut head = decode_response(flag, json).unwrap();
            head.headers.sort();
            assert_eq!(head.status, 404);
            assert_eq!(
                head.headers[0],
                ("X-A".to_owned(), vec![b"1".to_vec(), b"2".to_vec()])
            );
            assert_eq!(head.headers[1], ("X-B".to_owned(), vec![b"3".to_vec()]));
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_response(Flags::CODEC_PROTO, b"\xff\xff\xff").is_err());
        assert!(decode_response(Flags::CODEC_JSON, b"{nope").is_err());
    }
}
