//! The HTTP plugin's worker-facing shapes (spec http §1, §2): the request context as rr sends
//! it (protobuf `http.v1.Request` by default, the legacy JSON object as an option), the
//! worker's response context (protobuf or JSON, accepted either way), cookie parsing, header
//! name canonicalisation, the answer's trailer names, the urlencoded form → `parsed` data tree and the multipart splitter.

mod context;
mod cookies;
mod form;
pub mod multipart;
mod response;
mod response_json;
mod trailers;

pub use context::{ContextCodec, HeaderTable, Headers, RequestContext};
pub use cookies::CookieJar;
pub use form::{
    check_field_count, group_by_name, parse_urlencoded, DataTree, FormError, MAX_FIELDS,
};
pub use response::{decode_response, ResponseError, ResponseHead};
pub use trailers::{TrailerNames, TRAILER_HEADER};

/// The protobuf messages of `http.v1` (package `http.v1`, spec http §1.2, §1.3). Used to
/// decode worker responses and, in tests, to check our hand-written request encoder.
pub mod proto {
    use std::collections::HashMap;

    /// `http.v1.HeaderValue`.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct HeaderValue {
        /// One element per header line.
        #[prost(bytes = "vec", repeated, tag = "1")]
        pub value: Vec<Vec<u8>>,
    }

    /// `http.v1.Request`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        /// Client IP without port.
        #[prost(string, tag = "1")]
        pub remote_addr: String,
        /// `HTTP/1.1` …
        #[prost(string, tag = "2")]
        pub protocol: String,
        /// Method verbatim.
        #[prost(string, tag = "3")]
        pub method: String,
        /// Absolute URI.
        #[prost(string, tag = "4")]
        pub uri: String,
        /// Headers by canonical name.
        #[prost(map = "string, message", tag = "5")]
        pub header: HashMap<String, HeaderValue>,
        /// Parsed cookies, one value each.
        #[prost(map = "string, message", tag = "6")]
        pub cookies: HashMap<String, HeaderValue>,
        /// Query string without `?`.
        #[prost(string, tag = "7")]
        pub raw_query: String,
        /// True when the body is the parsed form tree.
        #[prost(bool, tag = "8")]
        pub parsed: bool,
        /// JSON of the uploads tree.
        #[prost(bytes = "vec", tag = "9")]
        pub uploads: Vec<u8>,
        /// PSR-7 attributes.
        #[prost(map = "string, message", tag = "10")]
        pub attributes: HashMap<String, HeaderValue>,
    }

    /// `http.v1.Response`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Response {
        /// HTTP status.
        #[prost(int64, tag = "1")]
        pub status: i64,
        /// Headers; several values make several header lines.
        #[prost(map = "string, message", tag = "2")]
        pub headers: HashMap<String, HeaderValue>,
    }
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `x-request-id` → `X-Request-Id`. A name with a
/// byte that is not a token character is returned unchanged, as Go does.
#[must_use]
pub fn canonical_header_name(name: &[u8]) -> String {
    let mut out = Vec::with_capacity(name.len());
    push_canonical_header_name(name, &mut out);
    String::from_utf8(out)
        .unwrap_or_else(|bytes| String::from_utf8_lossy(bytes.as_bytes()).into_owned())
}

/// Appends [`canonical_header_name`]'s bytes to `out` without allocating.
pub fn push_canonical_header_name(name: &[u8], out: &mut Vec<u8>) {
    let valid = !name.is_empty() && name.iter().all(|&byte| is_token_byte(byte));
    if !valid {
        out.extend_from_slice(name);
        return;
    }
    let mut upper = true;
    out.extend(name.iter().map(|&byte| {
        let canonical = if upper {
            byte.to_ascii_uppercase()
        } else {
            byte.to_ascii_lowercase()
        };
        upper = byte == b'-';
        canonical
    }));
}

/// RFC 9110 `tchar`.
#[must_use]
pub const fn is_token_byte(byte: u8) -> bool {
    matches!(byte,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// Decodes `%XX` escapes and, when `plus_is_space`, `+` as a space (Go's
/// `url.QueryUnescape`). None on a bad escape or when the result is not UTF-8.
#[must_use]
pub fn percent_decode(text: &[u8], plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    decode_escapes(text, plus_is_space, &mut out)?;
    // One UTF-8 check, here (percent_decode_into would check the same bytes first).
    String::from_utf8(out).ok()
}

/// [`percent_decode`] appending to `out`; false (and `out` unchanged) on a bad escape or
/// when the decoded bytes are not UTF-8. Only the appended bytes are checked, so filling one
/// buffer with many values costs time linear in their total (checking the whole buffer each
/// time made a header of 100,000 cookies quadratic).
pub fn percent_decode_into(text: &[u8], plus_is_space: bool, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let ok = decode_escapes(text, plus_is_space, out).is_some()
        && std::str::from_utf8(&out[start..]).is_ok();
    if !ok {
        out.truncate(start);
    }
    ok
}

fn decode_escapes(text: &[u8], plus_is_space: bool, out: &mut Vec<u8>) -> Option<()> {
    let mut index = 0;
    while index < text.len() {
        match text[index] {
            b'%' => {
                let high = hex_value(*text.get(index + 1)?)?;
                let low = hex_value(*text.get(index + 2)?)?;
                out.push(high << 4 | low);
                index += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    Some(())
}

const fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_canonicalised_as_go_does() {
        assert_eq!(canonical_header_name(b"x-request-id"), "X-Request-Id");
        assert_eq!(canonical_header_name(b"CONTENT-TYPE"), "Content-Type");
        assert_eq!(canonical_header_name(b"bad name"), "bad name");
    }

    #[test]
    fn percent_decoding_follows_query_unescape() {
        assert_eq!(percent_decode(b"ab%20c+d", true).unwrap(), "ab c d");
        assert_eq!(percent_decode(b"a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode(b"%zz", true), None);
        assert_eq!(percent_decode(b"%4", true), None);
        assert_eq!(percent_decode(b"%ff", true), None);
    }
}
