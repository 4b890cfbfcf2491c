//! The worker's response context (spec http §1.3, §1.7): protobuf `http.v1.Response`, or the
//! legacy JSON object. We accept both whatever the codec flag says (rr ≥ 2024 rejects JSON).
//!
//! Work: one checking pass over the context, then one pass per walk of its headers (the
//! sink walks them once per answer); constant work per byte, nesting bounded.

use crate::Flags;

/// Status and headers of a worker's response. Either context is checked once and read in
/// place (no copy, no allocation: the headers are walked from its bytes when asked for).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseHead<'a> {
    /// HTTP status as the worker sent it (validated by the HTTP layer).
    pub status: i64,
    headers: Headers<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Headers<'a> {
    #[default]
    None,
    /// A validated `http.v1.Response` encoding.
    Proto(&'a [u8]),
    /// A validated JSON response object.
    Json(&'a [u8]),
}

impl<'a> ResponseHead<'a> {
    /// A head with this status and no headers.
    #[must_use]
    pub const fn status_only(status: i64) -> Self {
        Self {
            status,
            headers: Headers::None,
        }
    }

    /// Calls `f(name, values)` for every header (one call per map entry; the values are the
    /// header lines in order).
    pub fn for_each_header(&self, mut f: impl FnMut(&[u8], &mut dyn Iterator<Item = &[u8]>)) {
        match &self.headers {
            Headers::None => {}
            Headers::Json(context) => super::response_json::for_each_header(context, &mut f),
            Headers::Proto(context) => {
                for field in Fields::new(context) {
                    if let Ok((2, Field::Bytes(entry))) = field {
                        let (name, values) = map_entry(entry);
                        f(name, &mut HeaderValues::new(values));
                    }
                }
            }
        }
    }

    /// Every header as owned (name, values), for tests and diagnostics.
    #[must_use]
    pub fn headers(&self) -> Vec<(String, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        self.for_each_header(|name, values| {
            out.push((
                String::from_utf8_lossy(name).into_owned(),
                values.map(<[u8]>::to_vec).collect(),
            ));
        });
        out
    }
}

/// A response context that is neither valid protobuf nor valid JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid response context from worker: {0}")]
pub struct ResponseError(String);

/// Decodes a response context by its codec flag, falling back to the other shape.
///
/// # Errors
/// When neither shape decodes.
pub fn decode_response(codec: Flags, context: &[u8]) -> Result<ResponseHead<'_>, ResponseError> {
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

/// Checks the whole message once (wire format, UTF-8 header names, `HeaderValue` shape, as
/// prost would) and takes the status; the headers are read again lazily.
fn decode_proto(context: &[u8]) -> Result<ResponseHead<'_>, ResponseError> {
    let mut status = 0;
    for field in Fields::new(context) {
        match field.map_err(ResponseError)? {
            (1, Field::Varint(value)) => status = value as i64,
            (2, Field::Bytes(entry)) => {
                let mut name_ok = true;
                for field in Fields::new(entry) {
                    match field.map_err(ResponseError)? {
                        (1, Field::Bytes(name)) => name_ok = std::str::from_utf8(name).is_ok(),
                        (2, Field::Bytes(values)) => {
                            for value in Fields::new(values) {
                                if let (1, field) = value.map_err(ResponseError)? {
                                    if !matches!(field, Field::Bytes(_)) {
                                        return Err(ResponseError("wrong wire type".into()));
                                    }
                                }
                            }
                        }
                        (1 | 2, _) => return Err(ResponseError("wrong wire type".into())),
                        _ => {}
                    }
                }
                if !name_ok {
                    return Err(ResponseError("header name is not UTF-8".into()));
                }
            }
            (1 | 2, _) => return Err(ResponseError("wrong wire type".into())),
            _ => {}
        }
    }
    Ok(ResponseHead {
        status,
        headers: Headers::Proto(context),
    })
}

/// A map entry's key and `HeaderValue` bytes (last of each wins, as in protobuf).
fn map_entry(entry: &[u8]) -> (&[u8], &[u8]) {
    let (mut name, mut values): (&[u8], &[u8]) = (b"", b"");
    for field in Fields::new(entry).flatten() {
        match field {
            (1, Field::Bytes(bytes)) => name = bytes,
            (2, Field::Bytes(bytes)) => values = bytes,
            _ => {}
        }
    }
    (name, values)
}

/// The `value` strings of a `HeaderValue`.
struct HeaderValues<'a>(Fields<'a>);

impl<'a> HeaderValues<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self(Fields::new(bytes))
    }
}

impl<'a> Iterator for HeaderValues<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            match self.0.next()? {
                Ok((1, Field::Bytes(value))) => return Some(value),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

/// One protobuf field's payload.
#[derive(Debug, Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The (field number, payload) pairs of a protobuf message, in order.
struct Fields<'a> {
    bytes: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    const fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            failed: false,
        }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for (index, &byte) in self.bytes.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte < 0x80 {
                self.bytes = &self.bytes[index + 1..];
                return Ok(value);
            }
        }
        Err("invalid varint".into())
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < length {
            return Err("buffer underflow".into());
        }
        let (taken, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(taken)
    }

    fn field(&mut self) -> Result<(u64, Field<'a>), String> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return Err("invalid field number 0".into());
        }
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed
            }
            2 => {
                let length = usize::try_from(self.varint()?).map_err(|e| e.to_string())?;
                Field::Bytes(self.take(length)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed
            }
            wire => return Err(format!("invalid wire type {wire}")),
        };
        Ok((number, field))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Field<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() || self.failed {
            return None;
        }
        let field = self.field();
        self.failed = field.is_err();
        Some(field)
    }
}

fn decode_json(context: &[u8]) -> Result<ResponseHead<'_>, ResponseError> {
    let status = super::response_json::validate(context)
        .map_err(|reason| ResponseError(reason.to_owned()))?;
    Ok(ResponseHead {
        status,
        headers: Headers::Json(context),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::proto;
    use prost::Message;
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
        let bytes = response.encode_to_vec();
        let head = decode_response(Flags::CODEC_PROTO, &bytes).unwrap();
        assert_eq!(head.status, 201);
        assert_eq!(
            head.headers(),
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
            let head = decode_response(flag, json).unwrap();
            let mut headers = head.headers();
            headers.sort();
            assert_eq!(head.status, 404);
            assert_eq!(
                headers[0],
                ("X-A".to_owned(), vec![b"1".to_vec(), b"2".to_vec()])
            );
            assert_eq!(headers[1], ("X-B".to_owned(), vec![b"3".to_vec()]));
        }
    }

    #[test]
    fn the_in_place_decoder_agrees_with_prost() {
        let response = proto::Response {
            status: 302,
            headers: HashMap::from([
                (
                    "Location".to_owned(),
                    proto::HeaderValue {
                        value: vec![b"/x".to_vec()],
                    },
                ),
                ("X-Empty".to_owned(), proto::HeaderValue { value: vec![] }),
            ]),
        };
        let bytes = response.encode_to_vec();
        let head = decode_response(Flags::CODEC_PROTO, &bytes).unwrap();
        assert_eq!(head.status, 302);
        let mut ours = head.headers();
        ours.sort();
        let mut theirs: Vec<(String, Vec<Vec<u8>>)> = response
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.value))
            .collect();
        theirs.sort();
        assert_eq!(ours, theirs);
        // Unknown fields of every wire type are skipped; a bad wire type for a known one fails.
        let mut unknown = vec![0x18, 0x05, 0x21, 0, 0, 0, 0, 0, 0, 0, 0, 0x2d, 0, 0, 0, 0];
        unknown.extend_from_slice(&bytes);
        assert_eq!(
            decode_response(Flags::CODEC_PROTO, &unknown)
                .unwrap()
                .status,
            302
        );
        assert!(decode_response(Flags::CODEC_PROTO, &[0x0a, 0x00]).is_err());
        // A header name that is not UTF-8, as prost refuses it.
        let bad_name = [0x12, 0x04, 0x0a, 0x02, 0xff, 0xfe];
        assert!(decode_response(Flags::CODEC_PROTO, &bad_name).is_err());
        let empty = decode_response(Flags::CODEC_PROTO, b"").unwrap();
        assert_eq!((empty.status, empty.headers()), (0, Vec::new()));
    }

    #[test]
    fn json_responses_as_php_encodes_them_are_read_in_place() {
        // json_encode escapes '/', and an empty headers array is a list.
        let php = br#"{"status":201,"headers":{"Content-Type":["text\/html; charset=utf-8"],"X-U":["caf\u00e9 \ud83d\ude00","a\"b\\c"],"X-N":[1,true,null],"X-One":"solo","X-None":[]}}"#;
        let head = decode_response(Flags::CODEC_JSON, php).unwrap();
        assert_eq!(head.status, 201);
        assert_eq!(
            head.headers(),
            vec![
                (
                    "Content-Type".to_owned(),
                    vec![b"text/html; charset=utf-8".to_vec()]
                ),
                (
                    "X-U".to_owned(),
                    vec!["café 😀".as_bytes().to_vec(), b"a\"b\\c".to_vec()]
                ),
                (
                    "X-N".to_owned(),
                    vec![b"1".to_vec(), b"true".to_vec(), b"null".to_vec()]
                ),
                ("X-One".to_owned(), vec![b"solo".to_vec()]),
                ("X-None".to_owned(), vec![]),
            ]
        );
        for empty in [
            &br#"{"status":204,"headers":[]}"#[..],
            br#"{"status":204}"#,
            br#" { "headers" : null , "status" : 204 } "#,
        ] {
            let head = decode_response(Flags::CODEC_JSON, empty).unwrap();
            assert_eq!((head.status, head.headers()), (204, vec![]));
        }
        for bad in [
            &br#"{"status":"x"}"#[..],
            br#"{"status":200,"headers":["a"]}"#,
            br#"{"status":200} trailing"#,
            br#"{"status":200,"headers":{"a":["\q"]}}"#,
            br#"{"status":200,"headers":{"a":[1,]}}"#,
        ] {
            assert!(
                decode_response(Flags::CODEC_JSON, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn long_json_headers_spill_to_the_heap_intact() {
        let long = "v\\/".repeat(2000);
        let many: Vec<String> = (0..100).map(|i| format!("\"{i}\"")).collect();
        let json = format!(
            r#"{{"status":200,"headers":{{"X-Long":["{long}"],"X-Many":[{}]}}}}"#,
            many.join(",")
        );
        let head = decode_response(Flags::CODEC_JSON, json.as_bytes()).unwrap();
        let headers = head.headers();
        assert_eq!(headers[0].1[0], "v/".repeat(2000).into_bytes());
        assert_eq!(headers[1].1.len(), 100);
        assert_eq!(headers[1].1[99], b"99");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Ok(head) = decode_response(Flags::CODEC_JSON, &bytes) {
                let _ = head.headers();
            }
        }

        #[test]
        fn json_headers_agree_with_serde(values in proptest::collection::vec("\\PC{0,12}", 0..5)) {
            let object = serde_json::json!({"status": 200, "headers": {"X-A": values.clone()}});
            let text = serde_json::to_vec(&object).unwrap();
            let head = decode_response(Flags::CODEC_JSON, &text).unwrap();
            let decoded: Vec<Vec<u8>> = head.headers().into_iter().flat_map(|(_, v)| v).collect();
            let expected: Vec<Vec<u8>> = values.into_iter().map(String::into_bytes).collect();
            proptest::prop_assert_eq!(decoded, expected);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_response(Flags::CODEC_PROTO, b"\xff\xff\xff").is_err());
        assert!(decode_response(Flags::CODEC_JSON, b"{nope").is_err());
    }
}
