//! The request head: parsed with httparse into byte ranges of the connection's read buffer
//! (nothing allocated per request), the checks Go's server makes before a handler runs, and
//! the framing decisions of RFC 9112 §6.
//!
//! Work per head: httparse is one pass over its bytes (at most [`MAX_HEAD_BYTES`]); each
//! header looked up by name is a scan of at most [`MAX_HEADERS`] lines, a fixed number of
//! times a request. A head arriving in pieces is parsed again only as
//! [`HeadScan`](super::HeadScan) allows, so a trickled head costs about three passes.

use super::Http1Limits;
use std::ops::Range;

/// Header lines the parser has room for: the most [`Http1Limits::max_header_lines`] can be.
pub const MAX_HEADERS: usize = 128;
/// Largest request head by default (Go's `DefaultMaxHeaderBytes` is 1 MiB; more → 431).
pub const MAX_HEAD_BYTES: usize = 1 << 20;

/// A parsed head as ranges into the buffer it was parsed from.
#[derive(Debug, Default, Clone)]
pub struct Head {
    /// Bytes of the head, blank line included.
    pub len: usize,
    /// Method.
    pub method: Range<usize>,
    /// Request target.
    pub target: Range<usize>,
    /// 0 = HTTP/1.0, 1 = HTTP/1.1.
    pub minor_version: u8,
    /// (name, value) per header line.
    pub headers: Vec<(Range<usize>, Range<usize>)>,
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request the server must refuse, with the status and the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed request line or headers.
    BadRequest(&'static str),
    /// A request Go's server refuses with its own text (`400 Bad Request: <reason>`); the
    /// value is that whole text.
    Refused(&'static str),
    /// Too many headers or a head too large.
    TooLarge,
    /// A transfer coding other than chunked.
    UnsupportedTransferEncoding,
}

impl HeadError {
    /// Status line and body, as Go's server answers.
    #[must_use]
    pub const fn status(self) -> (u16, &'static str) {
        match self {
            Self::BadRequest(_) => (400, "400 Bad Request"),
            Self::Refused(text) => (400, text),
            Self::TooLarge => (431, "431 Request Header Fields Too Large"),
            Self::UnsupportedTransferEncoding => (501, "Unsupported transfer encoding"),
        }
    }
}

impl Head {
    /// Parses a head at the start of `buf` within the default [`Http1Limits`]. `Ok(None)`
    /// when more bytes are needed.
    ///
    /// # Errors
    /// [`HeadError`] for malformed or oversized heads.
    pub fn parse(buf: &[u8], head: &mut Self) -> Result<Option<()>, HeadError> {
        Self::parse_within(buf, head, &Http1Limits::default())
    }

    /// [`Head::parse`] within `limits`.
    ///
    /// # Errors
    /// [`HeadError`] for malformed heads and heads past the limits.
    pub fn parse_within(
        buf: &[u8],
        head: &mut Self,
        limits: &Http1Limits,
    ) -> Result<Option<()>, HeadError> {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let lines = limits.max_header_lines.clamp(1, MAX_HEADERS);
        let mut request = httparse::Request::new(&mut storage[..lines]);
        let status = match request.parse(buf) {
            Ok(status) => status,
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(error) => {
                return Err(HeadError::BadRequest(match error {
                    httparse::Error::Version => "malformed HTTP version",
                    httparse::Error::Token | httparse::Error::Status => "malformed request line",
                    _ => "malformed request headers",
                }))
            }
        };
        let httparse::Status::Complete(len) = status else {
            return if buf.len() > limits.max_head_bytes {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        };
        if len > limits.max_head_bytes {
            return Err(HeadError::TooLarge);
        }
        let base = buf.as_ptr() as usize;
        let range = |part: &[u8]| {
            let start = part.as_ptr() as usize - base;
            start..start + part.len()
        };
        head.len = len;
        head.method = range(request.method.unwrap_or_default().as_bytes());
        head.target = range(request.path.unwrap_or_default().as_bytes());
        head.minor_version = request.version.unwrap_or(1);
        head.headers.clear();
        for header in request.headers.iter() {
            head.headers
                .push((range(header.name.as_bytes()), range(header.value)));
        }
        Ok(Some(()))
    }

    /// What Go's server checks before a handler sees the request: a `Host` header on
    /// HTTP/1.1, exactly one, well-formed; a target in origin form (`/path`), absolute form
    /// (`scheme://…`) or `*`. CONNECT (authority form) is refused: there is no tunnel here,
    /// and the worker would get a URI made of two authorities.
    ///
    /// # Errors
    /// [`HeadError::Refused`] with Go's text, or [`HeadError::BadRequest`].
    pub fn validate(&self, buf: &[u8]) -> Result<(), HeadError> {
        if &buf[self.method.clone()] == b"CONNECT" {
            return Err(HeadError::BadRequest("CONNECT is not supported"));
        }
        let target = &buf[self.target.clone()];
        if !(target.starts_with(b"/") || target == b"*" || is_absolute_form(target)) {
            return Err(HeadError::BadRequest(
                "request target is not a path or absolute URI",
            ));
        }
        let mut hosts = self.values(buf, "host");
        match (hosts.next(), hosts.next()) {
            (None, _) if self.minor_version == 1 => Err(HeadError::Refused(
                "400 Bad Request: missing required Host header",
            )),
            (Some(_), Some(_)) => Err(HeadError::Refused("400 Bad Request: too many Host headers")),
            (Some(host), None) if !host.iter().all(|&b| is_host_byte(b)) => {
                Err(HeadError::Refused("400 Bad Request: malformed Host header"))
            }
            _ => Ok(()),
        }
    }

    /// True when the request names both `Transfer-Encoding` and `Content-Length`: the body
    /// is read as chunked, the length is not forwarded, and the connection closes after the
    /// answer (RFC 9112 §6.1), so nothing smuggled after the body is read as a request.
    #[must_use]
    pub fn has_length_and_coding(&self, buf: &[u8]) -> bool {
        self.value(buf, "transfer-encoding").is_some()
            && self.value(buf, "content-length").is_some()
    }

    /// The values of header `name` (case-insensitive), in order.
    pub fn values<'b>(&'b self, buf: &'b [u8], name: &'b str) -> impl Iterator<Item = &'b [u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| buf[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(move |(_, v)| &buf[v.clone()])
    }

    /// The first value of header `name`.
    #[must_use]
    pub fn value<'b>(&'b self, buf: &'b [u8], name: &'b str) -> Option<&'b [u8]> {
        self.values(buf, name).next()
    }

    /// Body framing (RFC 9112 §6.3): chunked wins over Content-Length; Content-Length values
    /// must agree.
    ///
    /// # Errors
    /// Bad or conflicting lengths, unknown codings.
    pub fn body_kind(&self, buf: &[u8]) -> Result<BodyKind, HeadError> {
        let mut codings = self.values(buf, "transfer-encoding").peekable();
        if codings.peek().is_some() {
            let mut last_is_chunked = false;
            for value in codings {
                for coding in value.split(|&b| b == b',') {
                    let coding = coding.trim_ascii();
                    if coding.is_empty() {
                        continue;
                    }
                    if !coding.eq_ignore_ascii_case(b"chunked") || last_is_chunked {
                        return Err(HeadError::UnsupportedTransferEncoding);
                    }
                    last_is_chunked = true;
                }
            }
            if self.minor_version == 0 || !last_is_chunked {
                return Err(HeadError::BadRequest("transfer encoding without chunked"));
            }
            return Ok(BodyKind::Chunked);
        }
        let mut length: Option<u64> = None;
        for value in self.values(buf, "content-length") {
            for part in value.split(|&b| b == b',') {
                let part = part.trim_ascii();
                if part.is_empty() || !part.iter().all(u8::is_ascii_digit) || part.len() > 19 {
                    return Err(HeadError::BadRequest("bad Content-Length"));
                }
                let parsed: u64 = std::str::from_utf8(part)
                    .ok()
                    .and_then(|p| p.parse().ok())
                    .ok_or(HeadError::BadRequest("bad Content-Length"))?;
                if length.is_some_and(|known| known != parsed) {
                    return Err(HeadError::BadRequest("conflicting Content-Length"));
                }
                length = Some(parsed);
            }
        }
        Ok(match length {
            None | Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
        })
    }

    /// Whether the connection stays open after this request (RFC 9112 §9.3).
    #[must_use]
    pub fn keep_alive(&self, buf: &[u8]) -> bool {
        let mut close = false;
        let mut keep = false;
        for value in self.values(buf, "connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        if close {
            false
        } else {
            self.minor_version == 1 || keep
        }
    }
}

/// `scheme:/…` with an RFC 3986 scheme, as Go's `url.ParseRequestURI` accepts.
fn is_absolute_form(target: &[u8]) -> bool {
    let Some(colon) = target.iter().position(|&b| b == b':') else {
        return false;
    };
    let scheme = &target[..colon];
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && target[colon + 1..].starts_with(b"/")
}

/// Bytes Go's `httpguts.ValidHostHeader` accepts in a Host value.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'-'
                | b'.'
                | b':'
                | b';'
                | b'='
                | b'['
                | b']'
                | b'_'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::ChunkedDecoder;

    fn parse(text: &[u8]) -> Result<Option<Head>, HeadError> {
        let mut head = Head::default();
        Head::parse(text, &mut head).map(|done| done.map(|()| head))
    }

    #[test]
    fn heads_parse_into_ranges() {
        let buf =
            b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-A: 1\r\nX-A: 2\r\n\r\nabc";
        let head = parse(buf).unwrap().unwrap();
        assert_eq!(&buf[head.method.clone()], b"POST");
        assert_eq!(&buf[head.target.clone()], b"/a?b=1");
        assert_eq!(head.len, buf.len() - 3);
        assert_eq!(head.values(buf, "x-a").collect::<Vec<_>>(), [b"1", b"2"]);
        assert_eq!(head.body_kind(buf), Ok(BodyKind::Length(3)));
        assert!(head.keep_alive(buf));
    }

    #[test]
    fn incomplete_bad_and_oversized_heads() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        assert!(matches!(
            parse(b"GET / HTTP/9.9\r\n\r\n"),
            Err(HeadError::BadRequest(_))
        ));
        assert!(matches!(
            parse(b"G\x01T / HTTP/1.1\r\n\r\n"),
            Err(HeadError::BadRequest(_))
        ));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn framing_rules() {
        let kind = |text: &[u8]| parse(text).unwrap().unwrap().body_kind(text);
        assert_eq!(
            kind(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            Ok(BodyKind::Chunked)
        );
        assert_eq!(
            kind(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(HeadError::UnsupportedTransferEncoding)
        );
        assert!(
            kind(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").is_err()
        );
        assert!(kind(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").is_err());
        assert_eq!(
            kind(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
            Ok(BodyKind::Length(5))
        );
        let close = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
        assert!(!parse(close).unwrap().unwrap().keep_alive(close));
        let old = b"GET / HTTP/1.0\r\n\r\n";
        assert!(!parse(old).unwrap().unwrap().keep_alive(old));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut head = Head::default();
            if let Ok(Some(())) = Head::parse(&bytes, &mut head) {
                proptest::prop_assert!(head.len <= bytes.len());
                let _ = head.body_kind(&bytes);
                let _ = head.keep_alive(&bytes);
            }
            let mut out = Vec::new();
            if let Ok(used) = ChunkedDecoder::default().decode(&bytes, &mut out) {
                proptest::prop_assert!(used <= bytes.len() && out.len() <= bytes.len());
            }
        }

        #[test]
        fn valid_heads_survive_any_split(split in 0usize..60) {
            let text = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok";
            let split = split.min(text.len());
            let mut head = Head::default();
            let partial = Head::parse(&text[..split], &mut head);
            proptest::prop_assert!(matches!(partial, Ok(None) | Ok(Some(()))));
            proptest::prop_assert_eq!(Head::parse(text, &mut head), Ok(Some(())));
        }
    }

    #[test]
    fn go_refuses_bad_hosts_and_targets() {
        let check = |text: &[u8]| parse(text).unwrap().unwrap().validate(text);
        assert_eq!(check(b"GET /a HTTP/1.1\r\nHost: h:1\r\n\r\n"), Ok(()));
        assert_eq!(check(b"GET /a HTTP/1.0\r\n\r\n"), Ok(()));
        assert_eq!(check(b"GET http://h/a HTTP/1.1\r\nHost: h\r\n\r\n"), Ok(()));
        assert_eq!(check(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), Ok(()));
        assert_eq!(
            check(b"GET /a HTTP/1.1\r\n\r\n"),
            Err(HeadError::Refused(
                "400 Bad Request: missing required Host header"
            ))
        );
        assert_eq!(
            check(b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(HeadError::Refused("400 Bad Request: too many Host headers"))
        );
        assert_eq!(
            check(b"GET /a HTTP/1.1\r\nHost: a b\r\n\r\n"),
            Err(HeadError::Refused("400 Bad Request: malformed Host header"))
        );
        for bad in [
            &b"GET xecho HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
            b"GET 1http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(
                matches!(check(bad), Err(HeadError::BadRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn chunk_lines_with_bare_line_feeds_are_refused() {
        for body in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5;a\nb\r\nhello\r\n",
            b"0\r\nX: a\nb\r\n\r\n",
        ] {
            assert!(
                ChunkedDecoder::default()
                    .decode(body, &mut Vec::new())
                    .is_err(),
                "{body:?}"
            );
        }
        let mut decoder = ChunkedDecoder::default();
        decoder.decode(b"fffffff\r\nab", &mut Vec::new()).unwrap();
        assert_eq!(decoder.announced_remaining(), 0xfff_ffff - 2);
    }

    #[test]
    fn chunked_bodies_decode_across_splits() {
        let body = b"3\r\nabc\r\n5;ext=1\r\ndefgh\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for split in 0..body.len() {
            let mut decoder = ChunkedDecoder::default();
            let mut out = Vec::new();
            let first = decoder.decode(&body[..split], &mut out).unwrap();
            let mut rest = body[first..split].to_vec();
            rest.extend_from_slice(&body[split..]);
            let second = decoder.decode(&rest, &mut out).unwrap();
            assert!(decoder.is_done(), "split {split}");
            assert_eq!(out, b"abcdefgh");
            assert_eq!(&rest[second..], b"NEXT");
        }
        let mut decoder = ChunkedDecoder::default();
        assert!(decoder.decode(b"zz\r\n", &mut Vec::new()).is_err());
        assert!(ChunkedDecoder::default()
            .decode(b"1\r\naXX", &mut Vec::new())
            .is_err());
    }
}
