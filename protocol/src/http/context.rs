//! The request context sent to the worker (spec http §1.2, §1.7), encoded straight from
//! borrowed request parts into the caller's reused buffer.

use serde::Serialize;

/// One request header by canonical name, with one value per header line in arrival order.
pub type HeaderGroup<'a> = (String, Vec<&'a [u8]>);

/// Which context shape the workers get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContextCodec {
    /// `http.v1.Request` protobuf (codec flag 0x80), rr's default since 2024.1.
    #[default]
    Proto,
    /// The legacy JSON object (codec flag 0x08) of roadrunner-php/http ≤ 3.4.
    Json,
}

/// A request as the worker sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// Client IP without port.
    pub remote_addr: &'a str,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub protocol: &'a str,
    /// Method verbatim.
    pub method: &'a str,
    /// Absolute URI.
    pub uri: &'a str,
    /// Headers (without `Host` and `Transfer-Encoding`).
    pub headers: &'a [HeaderGroup<'a>],
    /// Parsed cookies.
    pub cookies: &'a [(String, String)],
    /// Query without `?`.
    pub raw_query: &'a str,
    /// True when the body is the parsed form tree.
    pub parsed: bool,
    /// JSON of the uploads tree, for a parsed multipart request.
    pub uploads: Option<&'a [u8]>,
}

impl RequestContext<'_> {
    /// Appends the context in `codec`'s shape to `out`.
    pub fn encode(&self, codec: ContextCodec, out: &mut Vec<u8>) {
        match codec {
            ContextCodec::Proto => self.encode_proto(out),
            ContextCodec::Json => self.encode_json(out),
        }
    }

    /// Appends the `http.v1.Request` protobuf encoding to `out` (proto3: empty fields absent).
    pub fn encode_proto(&self, out: &mut Vec<u8>) {
        put_string_field(out, 1, self.remote_addr.as_bytes());
        put_string_field(out, 2, self.protocol.as_bytes());
        put_string_field(out, 3, self.method.as_bytes());
        put_string_field(out, 4, self.uri.as_bytes());
        for (name, values) in self.headers {
            put_map_entry(out, 5, name.as_bytes(), values.iter().copied());
        }
        for (name, value) in self.cookies {
            put_map_entry(out, 6, name.as_bytes(), std::iter::once(value.as_bytes()));
        }
        put_string_field(out, 7, self.raw_query.as_bytes());
        if self.parsed {
            put_key(out, 8, WIRE_VARINT);
            out.push(1);
        }
        if let Some(uploads) = self.uploads {
            put_string_field(out, 9, uploads);
        }
    }

    /// Appends the legacy JSON object to `out` (keys as `HttpWorker.php` reads them).
    pub fn encode_json(&self, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Json<'a> {
            remote_addr: &'a str,
            protocol: &'a str,
            method: &'a str,
            uri: &'a str,
            headers: serde_json::Map<String, serde_json::Value>,
            cookies: serde_json::Map<String, serde_json::Value>,
            raw_query: &'a str,
            parsed: bool,
            uploads: serde_json::Value,
            attributes: serde_json::Map<String, serde_json::Value>,
        }
        let headers = self
            .headers
            .iter()
            .map(|(name, values)| {
                let values = values
                    .iter()
                    .map(|value| String::from_utf8_lossy(value).into_owned().into())
                    .collect();
                (name.clone(), serde_json::Value::Array(values))
            })
            .collect();
        let cookies = self
            .cookies
            .iter()
            .map(|(name, value)| (name.clone(), value.clone().into()))
            .collect();
        let uploads = self
            .uploads
            .and_then(|json| serde_json::from_slice(json).ok())
            .unwrap_or(serde_json::Value::Null);
        let json = Json {
            remote_addr: self.remote_addr,
            protocol: self.protocol,
            method: self.method,
            uri: self.uri,
            headers,
            cookies,
            raw_query: self.raw_query,
            parsed: self.parsed,
            uploads,
            attributes: serde_json::Map::new(),
        };
        serde_json::to_writer(out, &json).expect("writing JSON to a Vec cannot fail");
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_LEN: u8 = 2;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

const fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_key(out: &mut Vec<u8>, field: u8, wire: u8) {
    out.push(field << 3 | wire);
}

/// A length-delimited field, left out when empty (proto3).
fn put_string_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_key(out, field, WIRE_LEN);
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
}

const fn len_field_size(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// One `map<string, HeaderValue>` entry: `{1: key, 2: HeaderValue{1: repeated bytes}}`.
fn put_map_entry<'v>(
    out: &mut Vec<u8>,
    field: u8,
    key: &[u8],
    values: impl Iterator<Item = &'v [u8]> + Clone,
) {
    let value_len: usize = values
        .clone()
        .map(|value| len_field_size(value.len()))
        .sum();
    let key_size = if key.is_empty() {
        0
    } else {
        len_field_size(key.len())
    };
    let entry_len = key_size + len_field_size(value_len);
    put_key(out, field, WIRE_LEN);
    put_varint(out, entry_len as u64);
    put_string_field(out, 1, key);
    put_key(out, 2, WIRE_LEN);
    put_varint(out, value_len as u64);
    for value in values {
        // Repeated elements are written even when empty: each is one header line.
        put_key(out, 1, WIRE_LEN);
        put_varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto;
    use super::*;
    use prost::Message;

    fn sample<'a>(
        headers: &'a [HeaderGroup<'a>],
        cookies: &'a [(String, String)],
    ) -> RequestContext<'a> {
        RequestContext {
            remote_addr: "192.0.2.10",
            protocol: "HTTP/1.1",
            method: "GET",
            uri: "http://app.test:8080/users?id=5&tag[]=a",
            headers,
            cookies,
            raw_query: "id=5&tag[]=a",
            parsed: false,
            uploads: None,
        }
    }

    #[test]
    fn proto_encoding_decodes_with_prost_as_spec_example_8_1() {
        let headers = vec![
            ("Accept".to_owned(), vec![b"application/json".as_slice()]),
            (
                "Cookie".to_owned(),
                vec![b"sid=ab%20c; theme=dark".as_slice()],
            ),
            ("X-Multi".to_owned(), vec![b"a".as_slice(), b"", b"c"]),
        ];
        let cookies = vec![
            ("sid".to_owned(), "ab c".to_owned()),
            ("theme".to_owned(), "dark".to_owned()),
        ];
        let mut out = Vec::new();
        sample(&headers, &cookies).encode_proto(&mut out);
        let decoded = proto::Request::decode(out.as_slice()).unwrap();
        assert_eq!(decoded.remote_addr, "192.0.2.10");
        assert_eq!(decoded.uri, "http://app.test:8080/users?id=5&tag[]=a");
        assert_eq!(decoded.raw_query, "id=5&tag[]=a");
        assert_eq!(
            decoded.header["X-Multi"].value,
            vec![b"a".to_vec(), vec![], b"c".to_vec()]
        );
        assert_eq!(decoded.cookies["sid"].value, vec![b"ab c".to_vec()]);
        assert!(!decoded.parsed);
        assert!(decoded.uploads.is_empty());
        // Same bytes as prost writes for the same message, field for field.
        let mut again = Vec::new();
        sample(&headers, &cookies).encode_proto(&mut again);
        assert_eq!(out, again);
    }

    #[test]
    fn parsed_and_uploads_are_encoded() {
        let mut context = sample(&[], &[]);
        context.parsed = true;
        context.uploads = Some(b"{}");
        let mut out = Vec::new();
        context.encode_proto(&mut out);
        let decoded = proto::Request::decode(out.as_slice()).unwrap();
        assert!(decoded.parsed);
        assert_eq!(decoded.uploads, b"{}");
    }

    #[test]
    fn large_headers_use_multi_byte_lengths() {
        let big = vec![b'x'; 70_000];
        let headers = vec![("X-Big".to_owned(), vec![big.as_slice()])];
        let mut out = Vec::new();
        sample(&headers, &[]).encode_proto(&mut out);
        let decoded = proto::Request::decode(out.as_slice()).unwrap();
        assert_eq!(decoded.header["X-Big"].value[0].len(), 70_000);
    }

    #[test]
    fn json_context_has_the_legacy_keys() {
        let headers = vec![("Accept".to_owned(), vec![b"text/html".as_slice()])];
        let cookies = vec![("sid".to_owned(), "1".to_owned())];
        let mut out = Vec::new();
        sample(&headers, &cookies).encode_json(&mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["remoteAddr"], "192.0.2.10");
        assert_eq!(json["headers"]["Accept"][0], "text/html");
        assert_eq!(json["cookies"]["sid"], "1");
        assert_eq!(json["rawQuery"], "id=5&tag[]=a");
        assert_eq!(json["uploads"], serde_json::Value::Null);
    }
}
