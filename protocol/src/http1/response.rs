//! Bytes of HTTP/1.x responses: status lines, headers, the Date header, content sniffing,
//! chunks. The caller gives the time (this crate has no clock).

use std::io::Write;

/// Go's `http.StatusText` for the codes a worker commonly sends; others get Go's
/// `status code N`.
#[must_use]
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        422 => "Unprocessable Entity",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Appends `HTTP/1.x <status> <reason>\r\n` (once per answer: digits appended by hand,
/// not through `fmt`).
pub fn status_line(out: &mut Vec<u8>, minor_version: u8, status: u16) {
    out.extend_from_slice(b"HTTP/1.");
    push_decimal(out, u64::from(minor_version));
    out.push(b' ');
    push_decimal(out, u64::from(status));
    out.push(b' ');
    let text = reason(status);
    if text.is_empty() {
        out.extend_from_slice(b"status code ");
        push_decimal(out, u64::from(status));
    } else {
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// False for the statuses whose answers never carry a body (1xx, 204, 304): RFC 9110
/// §8.6 forbids a `Content-Length` on 1xx and 204, and on a 304 it would have to be the
/// length of the 200 that was not sent, so none is written on any of them.
#[must_use]
pub const fn status_has_body(status: u16) -> bool {
    !matches!(status, 100..=199 | 204 | 304)
}

/// Appends `value` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `Name: value\r\n`; CR and LF in a value are replaced by spaces (no header
/// injection from a worker).
pub fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    push_value_line(out, value);
}

/// [`header`] with the name in Go's canonical form (`x-id` → `X-Id`).
pub fn canonical_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    crate::http::push_canonical_header_name(name, out);
    push_value_line(out, value);
}

/// Why a worker's header line was left out of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DroppedHeader {
    /// The name is empty or has a byte that is not an RFC 9110 token character: written
    /// verbatim it could end the line and add headers of the worker's choosing (Go drops such
    /// names too).
    BadName,
    /// The value holds CR, LF or NUL: a line break would split the response and NUL is
    /// refused by clients. Deviation from rr: Go's HTTP/1 writer turns CR and LF into spaces and
    /// passes NUL; its HTTP/2 writer drops the value, as we do on both.
    BadValue,
}

/// A worker's header line in Go's canonical form, or why it is dropped instead (nothing is
/// written then). Linear in the line.
///
/// # Errors
/// [`DroppedHeader`] when the name is not a token or the value holds CR, LF or NUL.
pub fn worker_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> Result<(), DroppedHeader> {
    if name.is_empty() || !name.iter().all(|&byte| crate::http::is_token_byte(byte)) {
        return Err(DroppedHeader::BadName);
    }
    if value.iter().any(|&byte| matches!(byte, b'\r' | b'\n' | 0)) {
        return Err(DroppedHeader::BadValue);
    }
    canonical_header(out, name, value);
    Ok(())
}

/// `: value\r\n`, CR and LF in the value replaced by spaces.
fn push_value_line(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(b": ");
    out.extend(
        value
            .iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// The Date header's value, formatted at most once a second (a connection keeps one, so
/// the hot path formats no date for most responses and allocates nothing once warm).
#[derive(Debug, Default, Clone)]
pub struct DateCache {
    second: u64,
    text: String,
}

impl DateCache {
    /// Appends `Date: <IMF-fixdate>\r\n` for `unix_seconds`.
    pub fn header(&mut self, out: &mut Vec<u8>, unix_seconds: u64) {
        if self.second != unix_seconds || self.text.is_empty() {
            // Rebuilt in place: the String keeps its buffer from second to second.
            self.second = unix_seconds;
            self.text.clear();
            write_imf_fixdate(&mut self.text, unix_seconds);
        }
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(self.text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `Date: <IMF-fixdate>\r\n` formatted now (rare answers; the hot path uses a
/// [`DateCache`]).
pub fn date_header(out: &mut Vec<u8>, unix_seconds: u64) {
    let mut text = String::new();
    write_imf_fixdate(&mut text, unix_seconds);
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for Unix seconds.
#[must_use]
pub fn imf_fixdate(unix: u64) -> String {
    let mut out = String::with_capacity(29);
    write_imf_fixdate(&mut out, unix);
    out
}

/// Appends [`imf_fixdate`]'s text to `out`.
fn write_imf_fixdate(out: &mut String, unix: u64) {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = super::civil(unix);
    let _ = std::fmt::Write::write_fmt(
        out,
        format_args!(
            "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            DAYS[c.weekday as usize],
            c.day,
            MONTHS[(c.month - 1) as usize],
            c.year,
            c.hour,
            c.minute,
            c.second
        ),
    );
}

/// A Content-Type for a body that has none (the common cases of WHATWG sniffing, as Go's
/// `http.DetectContentType`).
#[must_use]
pub fn sniff_content_type(body: &[u8]) -> &'static str {
    let data = &body[..body.len().min(512)];
    let trimmed = data.trim_ascii_start();
    const HTML: [&[u8]; 17] = [
        b"<!DOCTYPE HTML",
        b"<HTML",
        b"<HEAD",
        b"<SCRIPT",
        b"<IFRAME",
        b"<H1",
        b"<DIV",
        b"<FONT",
        b"<TABLE",
        b"<A",
        b"<STYLE",
        b"<TITLE",
        b"<B",
        b"<BODY",
        b"<BR",
        b"<P",
        b"<!--",
    ];
    for tag in HTML {
        if trimmed.len() > tag.len()
            && trimmed[..tag.len()].eq_ignore_ascii_case(tag)
            && matches!(trimmed[tag.len()], b' ' | b'>')
        {
            return "text/html; charset=utf-8";
        }
    }
    if trimmed.starts_with(b"<?xml") {
        return "text/xml; charset=utf-8";
    }
    if data.starts_with(b"%PDF-") {
        return "application/pdf";
    }
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        return "image/png";
    }
    if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        return "image/gif";
    }
    if data.starts_with(b"\xff\xd8\xff") {
        return "image/jpeg";
    }
    let binary = data
        .iter()
        .any(|&b| matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1a | 0x1c..=0x1f));
    if binary {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// Appends one chunk of a chunked body.
pub fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if !data.is_empty() {
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// The last chunk of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A complete short response that closes the connection (parse errors, 413), dated
/// `unix_seconds`.
#[must_use]
pub fn plain_response(
    minor_version: u8,
    status: u16,
    body: &str,
    close: bool,
    unix_seconds: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    status_line(&mut out, minor_version, status);
    header(&mut out, b"Content-Type", b"text/plain; charset=utf-8");
    if status >= 400 {
        header(&mut out, b"X-Content-Type-Options", b"nosniff");
    }
    date_header(&mut out, unix_seconds);
    header(
        &mut out,
        b"Content-Length",
        body.len().to_string().as_bytes(),
    );
    if close {
        header(&mut out, b"Connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdate() {
        let mut cache = DateCache::default();
        let mut out = Vec::new();
        cache.header(&mut out, 784_111_777);
        cache.header(&mut out, 784_111_778);
        assert_eq!(
            out,
            b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nDate: Sun, 06 Nov 1994 08:49:38 GMT\r\n"
        );
        assert_eq!(imf_fixdate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(imf_fixdate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(imf_fixdate(1_709_251_200), "Fri, 01 Mar 2024 00:00:00 GMT");
    }

    proptest::proptest! {
        #[test]
        fn push_decimal_writes_what_display_writes(value: u64) {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, value);
            proptest::prop_assert_eq!(out, format!("x{value}").into_bytes());
        }
    }

    #[test]
    fn sniffing_and_status_lines() {
        assert_eq!(
            sniff_content_type(b"<html><body>"),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            sniff_content_type(b"  <!DOCTYPE html>"),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            sniff_content_type(b"{\"a\":1}"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(sniff_content_type(b"\x00\x01"), "application/octet-stream");
        let mut out = Vec::new();
        status_line(&mut out, 1, 599);
        status_line(&mut out, 0, 404);
        status_line(&mut out, 1, 200);
        assert_eq!(
            out,
            b"HTTP/1.1 599 status code 599\r\nHTTP/1.0 404 Not Found\r\nHTTP/1.1 200 OK\r\n"
        );
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        push_decimal(&mut out, u64::MAX);
        assert_eq!(out, b"018446744073709551615");
        let mut out = Vec::new();
        header(&mut out, b"X", b"a\r\nSet-Cookie: evil");
        assert_eq!(out, b"X: a  Set-Cookie: evil\r\n");
    }
}
