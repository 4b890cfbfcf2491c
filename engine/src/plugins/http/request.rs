//! From a parsed request to what the worker gets (spec http §1, §2, §6): the absolute URI,
//! canonical header groups, cookies, the body class, and the client address.
//!
//! Work: linear in the head, as the parts it calls are (the URI and query one pass each,
//! header grouping bounded by the head's 128 lines, cookies through a hash index past a few);
//! the body class is a substring search of the `Content-Type` value.

use super::head::Head;
use ringrunner_protocol::http::{CookieJar, HeaderTable};
use std::net::IpAddr;

/// How the body goes to the worker (spec http §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyClass {
    /// HEAD and OPTIONS: no body is sent.
    None,
    /// `application/x-www-form-urlencoded`.
    UrlEncoded,
    /// `multipart/form-data`.
    Multipart,
    /// Anything else: the raw bytes.
    Raw,
}

/// Classifies by method and the first Content-Type (case-sensitive substring, as rr does).
#[must_use]
pub fn body_class(method: &[u8], content_type: Option<&[u8]>) -> BodyClass {
    if method == b"HEAD" || method == b"OPTIONS" {
        return BodyClass::None;
    }
    let contains = |needle: &[u8]| {
        content_type.is_some_and(|value| value.windows(needle.len()).any(|w| w == needle))
    };
    if contains(b"application/x-www-form-urlencoded") {
        BodyClass::UrlEncoded
    } else if contains(b"multipart/form-data") {
        BodyClass::Multipart
    } else {
        BodyClass::Raw
    }
}

/// What the request context is built from, kept per connection and refilled per request so
/// that, once warm, a request allocates nothing for it.
#[derive(Debug, Default)]
pub struct RequestScratch {
    /// Header groups by canonical name.
    pub headers: HeaderTable,
    /// Parsed cookies.
    pub cookies: CookieJar,
    /// The absolute URI.
    pub uri: String,
    /// The query without `?`.
    pub raw_query: String,
    /// The client address.
    pub remote_addr: String,
    /// The connection is TLS: an origin-form target's URI is `https://…`.
    pub https: bool,
    /// The request came as an HTTP/2 stream: the worker's `protocol` is `HTTP/2.0`.
    pub http2: bool,
    /// The peer `remote_addr` holds the text of, when no proxy header can change it: the
    /// same connection's next request reuses it.
    remote_addr_of: Option<IpAddr>,
}

impl RequestScratch {
    /// Refills every part from the request `head` parsed out of `buf`, sent by `peer`.
    pub fn fill(&mut self, head: &Head, buf: &[u8], peer: IpAddr, trusted: &[Subnet]) {
        write_uri_and_query(
            &buf[head.target.clone()],
            head.value(buf, "host"),
            self.https,
            &mut self.uri,
            &mut self.raw_query,
        );
        fill_headers(head, buf, &mut self.headers);
        self.cookies.parse(head.values(buf, "cookie"));
        let proxied = trusted.iter().any(|subnet| subnet.contains(peer));
        if proxied || self.remote_addr_of != Some(peer) {
            write_remote_addr(peer, trusted, head, buf, &mut self.remote_addr);
            self.remote_addr_of = (!proxied).then_some(peer);
        }
    }
}

/// Header groups by canonical name in arrival order, without `Host` and `Transfer-Encoding`
/// (spec http §1.5), into `table` (cleared first). A chunked body has no length to tell:
/// a `Content-Length` sent beside the coding is dropped (Go deletes it too).
pub fn fill_headers(head: &Head, buf: &[u8], table: &mut HeaderTable) {
    table.clear();
    let chunked = head.value(buf, "transfer-encoding").is_some();
    for (name, value) in &head.headers {
        let name = &buf[name.clone()];
        if name.eq_ignore_ascii_case(b"host")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || (chunked && name.eq_ignore_ascii_case(b"content-length"))
        {
            continue;
        }
        table.push(name, value.clone());
    }
}

/// Appends `bytes` without CR and LF (invalid UTF-8 replaced). Most targets and hosts are
/// valid UTF-8 with neither: those are copied whole, not char by char.
fn push_clean(out: &mut String, bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if !text.contains(['\r', '\n']) {
            out.push_str(text);
            return;
        }
    }
    out.extend(
        String::from_utf8_lossy(bytes)
            .chars()
            .filter(|c| *c != '\r' && *c != '\n'),
    );
}

/// The absolute URI and the raw query (spec http §1.4) into `uri` and `query` (cleared
/// first): absolute-form targets as sent, origin-form as `http://<Host><target>` (or
/// `https://` on TLS); CR and LF removed.
pub fn write_uri_and_query(
    target: &[u8],
    host: Option<&[u8]>,
    https: bool,
    uri: &mut String,
    query: &mut String,
) {
    uri.clear();
    query.clear();
    let absolute = target.starts_with(b"http://") || target.starts_with(b"https://");
    if absolute {
        push_clean(uri, target);
    } else {
        uri.push_str(if https { "https://" } else { "http://" });
        push_clean(uri, host.unwrap_or_default());
        if target != b"*" {
            push_clean(uri, target);
        }
    }
    push_clean(query, raw_query(target));
}

/// The query of a request target: after the first `?`, before any `#`; empty without one.
#[must_use]
pub fn raw_query(target: &[u8]) -> &[u8] {
    let Some(at) = target.iter().position(|&b| b == b'?') else {
        return &[];
    };
    let rest = &target[at + 1..];
    let end = rest.iter().position(|&b| b == b'#').unwrap_or(rest.len());
    &rest[..end]
}

/// [`write_uri_and_query`] into new strings.
#[must_use]
pub fn uri_and_query(target: &[u8], host: Option<&[u8]>) -> (String, String) {
    let (mut uri, mut query) = (String::new(), String::new());
    write_uri_and_query(target, host, false, &mut uri, &mut query);
    (uri, query)
}

/// A parsed `trusted_subnets` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: IpAddr,
    prefix: u8,
}

impl Subnet {
    /// Parses `10.0.0.0/8` or `::1/128`.
    ///
    /// # Errors
    /// A text that is not a CIDR.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("invalid CIDR address: {text}");
        let (address, prefix) = text.trim().split_once('/').ok_or_else(bad)?;
        let network: IpAddr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { network, prefix })
    }

    /// Whether `ip` is inside.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) if self.network.is_ipv4() => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            other => other,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The client address (spec http §6) into `out` (cleared first): the peer IP, or, when the
/// peer is a trusted proxy, the first address the proxy headers give (v5.1 order),
/// normalised.
pub fn write_remote_addr(
    peer: IpAddr,
    trusted: &[Subnet],
    head: &Head,
    buf: &[u8],
    out: &mut String,
) {
    out.clear();
    if !trusted.is_empty() && trusted.iter().any(|subnet| subnet.contains(peer)) {
        let text = |name: &'static str| {
            head.value(buf, name)
                .and_then(|value| std::str::from_utf8(value).ok())
        };
        let from_headers = if let Some(forwarded) = text("forwarded") {
            forwarded_for(forwarded)
        } else if let Some(xff) = text("x-forwarded-for") {
            xff.split(',').next()
        } else {
            text("x-real-ip")
        }
        .filter(|value| !value.is_empty())
        .or_else(|| text("true-client-ip"))
        .or_else(|| text("cf-connecting-ip"));
        if let Some(value) = from_headers.filter(|value| !value.is_empty()) {
            normalise_address(value, out);
            return;
        }
    }
    write_canonical_ip(peer, out);
}

/// [`write_remote_addr`] into a new string.
#[must_use]
pub fn remote_addr(peer: IpAddr, trusted: &[Subnet], head: &Head, buf: &[u8]) -> String {
    let mut out = String::new();
    write_remote_addr(peer, trusted, head, buf, &mut out);
    out
}

/// The first `for=` of a `Forwarded` header, quotes removed.
fn forwarded_for(value: &str) -> Option<&str> {
    value.split([';', ',']).map(str::trim).find_map(|part| {
        part.get(..4)
            .filter(|key| key.eq_ignore_ascii_case("for="))
            .map(|_| part[4..].trim_matches('"'))
    })
}

/// Normalises as rr's handler does: no `:` → as is; `host:port` / `[v6]:port` → host; a bare
/// IPv6 → canonical; anything else with a `:` → empty.
fn normalise_address(value: &str, out: &mut String) {
    if !value.contains(':') {
        out.push_str(value);
    } else if let Ok(ip) = value.parse::<IpAddr>() {
        write_canonical_ip(ip, out);
    } else if let Ok(socket) = value.parse::<std::net::SocketAddr>() {
        write_canonical_ip(socket.ip(), out);
    } else if let Some((host, port)) = value.rsplit_once(':') {
        if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(host);
        }
    }
}

fn write_canonical_ip(ip: IpAddr, out: &mut String) {
    use std::fmt::Write as _;
    let _ = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => write!(out, "{v4}"),
            None => write!(out, "{v6}"),
        },
        IpAddr::V4(v4) => write!(out, "{v4}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(text: &[u8]) -> Head {
        let mut head = Head::default();
        Head::parse(text, &mut head).unwrap().unwrap();
        head
    }

    proptest::proptest! {
        /// The whole-copy fast path appends exactly what the char-by-char path does.
        #[test]
        fn push_clean_copies_what_the_lossy_path_would(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let mut fast = String::from("x");
            push_clean(&mut fast, &bytes);
            let slow: String = String::from_utf8_lossy(&bytes)
                .chars()
                .filter(|c| *c != '\r' && *c != '\n')
                .collect();
            proptest::prop_assert_eq!(fast, format!("x{slow}"));
        }

        /// Valid UTF-8 (the fast path's input), with and without line breaks.
        #[test]
        fn push_clean_keeps_text_less_its_line_breaks(text in "[a-z/?=&\r\né]{0,40}") {
            let mut out = String::new();
            push_clean(&mut out, text.as_bytes());
            proptest::prop_assert_eq!(out, text.replace(['\r', '\n'], ""));
        }
    }

    #[test]
    fn push_clean_drops_line_breaks_and_replaces_bad_utf8() {
        let mut out = String::new();
        push_clean(&mut out, b"/a\r\nb");
        push_clean(&mut out, b"/\xff");
        push_clean(&mut out, "/é".as_bytes());
        assert_eq!(out, "/ab/\u{fffd}/é");
    }

    #[test]
    fn uri_and_query_follow_spec_1_4() {
        assert_eq!(
            uri_and_query(b"/users?id=5&tag[]=a", Some(b"app.test:8080")),
            (
                "http://app.test:8080/users?id=5&tag[]=a".into(),
                "id=5&tag[]=a".into()
            )
        );
        assert_eq!(
            uri_and_query(b"http://h/p?q=1", Some(b"other")),
            ("http://h/p?q=1".into(), "q=1".into())
        );
    }

    #[test]
    fn headers_group_without_host_and_transfer_encoding() {
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nx-a: 1\r\nCookie: a=b\r\nX-A: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = head_of(buf);
        let mut table = HeaderTable::default();
        fill_headers(&head, buf, &mut table);
        let groups: Vec<(Vec<u8>, Vec<Vec<u8>>)> = table
            .view(buf)
            .iter()
            .map(|(name, values)| (name.to_vec(), values.map(<[u8]>::to_vec).collect()))
            .collect();
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[0],
            (b"X-A".to_vec(), vec![b"1".to_vec(), b"2".to_vec()])
        );
        assert_eq!(groups[1].0, b"Cookie");
    }

    #[test]
    fn classes_by_method_and_content_type() {
        assert_eq!(
            body_class(b"HEAD", Some(b"application/x-www-form-urlencoded")),
            BodyClass::None
        );
        assert_eq!(
            body_class(
                b"POST",
                Some(b"application/x-www-form-urlencoded; charset=utf-8")
            ),
            BodyClass::UrlEncoded
        );
        assert_eq!(
            body_class(b"POST", Some(b"multipart/form-data; boundary=X")),
            BodyClass::Multipart
        );
        assert_eq!(
            body_class(b"POST", Some(b"Multipart/Form-Data")),
            BodyClass::Raw
        );
        assert_eq!(body_class(b"GET", None), BodyClass::Raw);
    }

    #[test]
    fn trusted_proxies_give_the_client_address() {
        let trusted = [
            Subnet::parse("10.0.0.0/8").unwrap(),
            Subnet::parse("::1/128").unwrap(),
        ];
        let buf = b"GET / HTTP/1.1\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.2\r\nX-Real-Ip: 1.1.1.1\r\n\r\n";
        let head = head_of(buf);
        assert_eq!(
            remote_addr("10.1.2.3".parse().unwrap(), &trusted, &head, buf),
            "203.0.113.7"
        );
        assert_eq!(
            remote_addr("192.0.2.1".parse().unwrap(), &trusted, &head, buf),
            "192.0.2.1"
        );
        let buf = b"GET / HTTP/1.1\r\nForwarded: for=\"[2001:db8::1]:4711\";proto=http\r\n\r\n";
        let head = head_of(buf);
        assert_eq!(
            remote_addr("::1".parse().unwrap(), &trusted, &head, buf),
            "2001:db8::1"
        );
        assert!(Subnet::parse("10.0.0.0/33").is_err());
        assert!(Subnet::parse("x").is_err());
    }
}
