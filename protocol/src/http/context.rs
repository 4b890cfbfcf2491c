//! The request context sent to the worker (spec http §1.2, §1.7), encoded straight from
//! borrowed request parts into the caller's reused buffer.
//!
//! Work: header grouping compares a name with the groups seen so far, so it is quadratic in
//! the number of header lines, which the head parser bounds ([`crate::http1::MAX_HEADERS`],
//! 128: at most about 8,000 short comparisons); the encoding is one pass over the parts.

use super::cookies::CookieJar;
use super::push_canonical_header_name;
use std::ops::Range;

/// A request's headers grouped by canonical name, as ranges: reused from request to request
/// (clear, push each line), so that once warm it allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct HeaderTable {
    /// Canonical names back to back.
    names: Vec<u8>,
    /// Each group's name in `names`, in first-seen order.
    groups: Vec<Range<usize>>,
    /// Each header line in arrival order: its group, its value's range, and whether that
    /// range is in `own` (a value the server added) rather than the source.
    lines: Vec<(usize, Range<usize>, bool)>,
    /// Values added by the server (`http.headers.request`), back to back.
    own: Vec<u8>,
}

impl HeaderTable {
    /// Forgets every header.
    pub fn clear(&mut self) {
        self.names.clear();
        self.groups.clear();
        self.lines.clear();
        self.own.clear();
    }

    /// Adds a header line: `name` as received, `value` the range of its value in the source
    /// buffer later given to [`HeaderTable::view`].
    pub fn push(&mut self, name: &[u8], value: Range<usize>) {
        let group = self.group_of(name);
        self.lines.push((group, value, false));
    }

    /// Adds a header line whose value the table keeps itself (a header the server adds to
    /// the request, after those the client sent).
    pub fn push_owned(&mut self, name: &[u8], value: &[u8]) {
        let group = self.group_of(name);
        let start = self.own.len();
        self.own.extend_from_slice(value);
        self.lines.push((group, start..self.own.len(), true));
    }

    /// Replaces every line of `name` by one whose value the table keeps (Go's
    /// `Header.Set`: the `otel` middleware's `Traceparent` replaces the client's).
    pub fn set_owned(&mut self, name: &[u8], value: &[u8]) {
        let group = self.group_of(name);
        self.lines.retain(|(line_group, _, _)| *line_group != group);
        let start = self.own.len();
        self.own.extend_from_slice(value);
        self.lines.push((group, start..self.own.len(), true));
    }

    /// The group of `name` (canonicalised), made when new.
    fn group_of(&mut self, name: &[u8]) -> usize {
        let start = self.names.len();
        push_canonical_header_name(name, &mut self.names);
        let canonical = start..self.names.len();
        let known = self
            .groups
            .iter()
            .position(|group| self.names[group.clone()] == self.names[canonical.clone()]);
        match known {
            Some(group) => {
                self.names.truncate(start);
                group
            }
            None => {
                self.groups.push(canonical);
                self.groups.len() - 1
            }
        }
    }

    /// The table over the buffer its value ranges point into.
    #[must_use]
    pub const fn view<'a>(&'a self, source: &'a [u8]) -> Headers<'a> {
        Headers {
            table: self,
            source,
        }
    }
}

/// A [`HeaderTable`] over its source buffer.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    table: &'a HeaderTable,
    source: &'a [u8],
}

impl<'a> Headers<'a> {
    /// (canonical name, the values of its lines in arrival order), groups in first-seen order.
    pub fn iter(
        &self,
    ) -> impl Iterator<Item = (&'a [u8], impl Iterator<Item = &'a [u8]> + Clone)> + '_ {
        let (table, source) = (self.table, self.source);
        table.groups.iter().enumerate().map(move |(group, name)| {
            let values = table
                .lines
                .iter()
                .filter(move |(line_group, _, _)| *line_group == group)
                .map(move |(_, range, owned)| {
                    if *owned {
                        &table.own[range.clone()]
                    } else {
                        &source[range.clone()]
                    }
                });
            (&table.names[name.clone()], values)
        })
    }
}

/// Which context shape the workers get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextCodec {
    /// `http.v1.Request` protobuf (codec flag 0x80), rr's only shape since 2024.1: byte-exact
    /// headers, but PHP decodes it slowly without the protobuf C extension.
    Proto,
    /// The JSON object (codec flag 0x08) every roadrunner-php/http version reads (3.5+ detect
    /// the codec from the first payload and answer in kind).
    Json,
}

impl ContextCodec {
    /// The frame's codec flag bits for this shape.
    #[must_use]
    pub const fn flags(self) -> crate::Flags {
        match self {
            Self::Proto => crate::Flags::CODEC_PROTO,
            Self::Json => crate::Flags::CODEC_JSON,
        }
    }
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
    pub headers: Headers<'a>,
    /// Parsed cookies.
    pub cookies: &'a CookieJar,
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
        for (name, values) in self.headers.iter() {
            put_map_entry(out, 5, name, values);
        }
        for (name, value) in self.cookies.iter() {
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

    /// Appends the JSON object to `out` (keys as `HttpWorker.php` reads them), written
    /// straight into `out`: nothing is allocated once `out` has grown to size.
    ///
    /// JSON strings hold text only: header and cookie bytes that are not valid UTF-8 are
    /// replaced by U+FFFD, as Go's `encoding/json` did in rr's JSON era. The protobuf
    /// context carries them byte for byte.
    pub fn encode_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"remoteAddr\":");
        put_json_string(out, self.remote_addr.as_bytes());
        out.extend_from_slice(b",\"protocol\":");
        put_json_string(out, self.protocol.as_bytes());
        out.extend_from_slice(b",\"method\":");
        put_json_string(out, self.method.as_bytes());
        out.extend_from_slice(b",\"uri\":");
        put_json_string(out, self.uri.as_bytes());
        out.extend_from_slice(b",\"headers\":{");
        for (index, (name, values)) in self.headers.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            put_json_string(out, name);
            out.extend_from_slice(b":[");
            for (nth, value) in values.enumerate() {
                if nth > 0 {
                    out.push(b',');
                }
                put_json_string(out, value);
            }
            out.push(b']');
        }
        out.extend_from_slice(b"},\"cookies\":{");
        for (index, (name, value)) in self.cookies.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            put_json_string(out, name.as_bytes());
            out.push(b':');
            put_json_string(out, value.as_bytes());
        }
        out.extend_from_slice(b"},\"rawQuery\":");
        put_json_string(out, self.raw_query.as_bytes());
        out.extend_from_slice(if self.parsed {
            b",\"parsed\":true"
        } else {
            b",\"parsed\":false"
        });
        out.extend_from_slice(b",\"uploads\":");
        match self.uploads {
            // Our own uploads tree: a JSON document already.
            Some(uploads) if !uploads.is_empty() => out.extend_from_slice(uploads),
            _ => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"attributes\":{}}");
    }
}

/// Appends `bytes` as a JSON string: quotes, escapes for `"`, `\\` and control characters,
/// U+FFFD for each invalid UTF-8 sequence.
fn put_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut plain_from = 0;
        for (at, &byte) in valid.iter().enumerate() {
            let escape: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f => b"",
                _ => continue,
            };
            out.extend_from_slice(&valid[plain_from..at]);
            plain_from = at + 1;
            if escape.is_empty() {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            } else {
                out.extend_from_slice(escape);
            }
        }
        out.extend_from_slice(&valid[plain_from..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    out.push(b'"');
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

    /// A header table over `source` for `lines` given as (name, value) with the values
    /// concatenated into `source`.
    fn table(lines: &[(&str, &[u8])]) -> (HeaderTable, Vec<u8>) {
        let mut table = HeaderTable::default();
        let mut source = Vec::new();
        for (name, value) in lines {
            let start = source.len();
            source.extend_from_slice(value);
            table.push(name.as_bytes(), start..source.len());
        }
        (table, source)
    }

    #[test]
    fn a_header_the_server_sets_replaces_the_client_s() {
        let (mut table, source) = table(&[("traceparent", b"client"), ("x-a", b"1")]);
        table.set_owned(b"Traceparent", b"server");
        table.set_owned(b"Uber-Trace-Id", b"jaeger");
        let seen: Vec<(Vec<u8>, Vec<Vec<u8>>)> = table
            .view(&source)
            .iter()
            .map(|(name, values)| (name.to_vec(), values.map(<[u8]>::to_vec).collect()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (b"Traceparent".to_vec(), vec![b"server".to_vec()]),
                (b"X-A".to_vec(), vec![b"1".to_vec()]),
                (b"Uber-Trace-Id".to_vec(), vec![b"jaeger".to_vec()]),
            ]
        );
    }

    #[test]
    fn headers_the_server_adds_follow_the_client_s() {
        let (mut table, source) = table(&[("x-a", b"1"), ("accept", b"*/*")]);
        table.push_owned(b"X-A", b"added");
        table.push_owned(b"x-new", b"n");
        let view = table.view(&source);
        let groups: Vec<(Vec<u8>, Vec<Vec<u8>>)> = view
            .iter()
            .map(|(name, values)| (name.to_vec(), values.map(<[u8]>::to_vec).collect()))
            .collect();
        assert_eq!(
            groups,
            [
                (b"X-A".to_vec(), vec![b"1".to_vec(), b"added".to_vec()]),
                (b"Accept".to_vec(), vec![b"*/*".to_vec()]),
                (b"X-New".to_vec(), vec![b"n".to_vec()]),
            ]
        );
        table.clear();
        assert_eq!(table.view(&source).iter().count(), 0);
    }

    fn jar(header: &[u8]) -> CookieJar {
        let mut jar = CookieJar::default();
        jar.parse([header]);
        jar
    }

    fn sample<'a>(headers: Headers<'a>, cookies: &'a CookieJar) -> RequestContext<'a> {
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
        let (headers, source) = table(&[
            ("accept", b"application/json"),
            ("x-multi", b"a"),
            ("Cookie", b"sid=ab%20c; theme=dark"),
            ("X-MULTI", b""),
            ("X-Multi", b"c"),
        ]);
        let cookies = jar(b"sid=ab%20c; theme=dark");
        let mut out = Vec::new();
        sample(headers.view(&source), &cookies).encode_proto(&mut out);
        let decoded = proto::Request::decode(out.as_slice()).unwrap();
        assert_eq!(decoded.remote_addr, "192.0.2.10");
        assert_eq!(decoded.uri, "http://app.test:8080/users?id=5&tag[]=a");
        assert_eq!(decoded.raw_query, "id=5&tag[]=a");
        assert_eq!(
            decoded.header["Accept"].value,
            vec![b"application/json".to_vec()]
        );
        assert_eq!(
            decoded.header["X-Multi"].value,
            vec![b"a".to_vec(), vec![], b"c".to_vec()]
        );
        assert_eq!(decoded.header.len(), 3);
        assert_eq!(decoded.cookies["sid"].value, vec![b"ab c".to_vec()]);
        assert!(!decoded.parsed);
        assert!(decoded.uploads.is_empty());
        // prost writes the same message to the same length (map order aside).
        assert_eq!(decoded.encode_to_vec().len(), out.len());
    }

    #[test]
    fn parsed_and_uploads_are_encoded() {
        let (headers, source) = table(&[]);
        let cookies = CookieJar::default();
        let mut context = sample(headers.view(&source), &cookies);
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
        let (headers, source) = table(&[("X-Big", &big)]);
        let cookies = CookieJar::default();
        let mut out = Vec::new();
        sample(headers.view(&source), &cookies).encode_proto(&mut out);
        let decoded = proto::Request::decode(out.as_slice()).unwrap();
        assert_eq!(decoded.header["X-Big"].value[0].len(), 70_000);
    }

    #[test]
    fn a_reused_table_forgets_the_previous_request() {
        let (mut headers, _) = table(&[("A", b"1"), ("B", b"2")]);
        headers.clear();
        headers.push(b"c", 0..1);
        let source = b"3";
        let seen: Vec<(Vec<u8>, Vec<Vec<u8>>)> = headers
            .view(source)
            .iter()
            .map(|(name, values)| (name.to_vec(), values.map(<[u8]>::to_vec).collect()))
            .collect();
        assert_eq!(seen, vec![(b"C".to_vec(), vec![b"3".to_vec()])]);
    }

    #[test]
    fn json_strings_escape_and_replace_what_json_cannot_hold() {
        let (headers, source) = table(&[
            ("X-Quote", b"say \"hi\"\\ \t\x01\x7f"),
            ("X-Bytes", b"caf\xc3\xa9 \xff\xfe end"),
        ]);
        let cookies = jar(b"a=%22q%22");
        let mut context = sample(headers.view(&source), &cookies);
        context.parsed = true;
        context.uploads = Some(br#"{"doc":{"name":"r.pdf","size":3}}"#);
        let mut out = Vec::new();
        context.encode_json(&mut out);
        let json: serde_json::Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        assert_eq!(json["headers"]["X-Quote"][0], "say \"hi\"\\ \t\u{1}\u{7f}");
        assert_eq!(json["headers"]["X-Bytes"][0], "café \u{fffd}\u{fffd} end");
        assert_eq!(json["cookies"]["a"], "\"q\"");
        assert_eq!(json["parsed"], true);
        assert_eq!(json["uploads"]["doc"]["size"], 3);
        assert_eq!(json["attributes"], serde_json::json!({}));
    }

    proptest::proptest! {
        #[test]
        fn any_header_bytes_make_valid_json(value in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let (headers, source) = table(&[("X-Any", &value)]);
            let cookies = CookieJar::default();
            let mut out = Vec::new();
            sample(headers.view(&source), &cookies).encode_json(&mut out);
            let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let text = json["headers"]["X-Any"][0].as_str().unwrap().to_owned();
            proptest::prop_assert_eq!(text, String::from_utf8_lossy(&value).into_owned());
        }
    }

    #[test]
    fn json_context_has_the_legacy_keys() {
        let (headers, source) = table(&[("Accept", b"text/html")]);
        let cookies = jar(b"sid=1");
        let mut out = Vec::new();
        sample(headers.view(&source), &cookies).encode_json(&mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["remoteAddr"], "192.0.2.10");
        assert_eq!(json["headers"]["Accept"][0], "text/html");
        assert_eq!(json["cookies"]["sid"], "1");
        assert_eq!(json["rawQuery"], "id=5&tag[]=a");
        assert_eq!(json["uploads"], serde_json::Value::Null);
    }
}
