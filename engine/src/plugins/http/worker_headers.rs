//! The worker's headers on the way to an answer's head (spec http §3.1d): the framing ones
//! are ours and left out, `Trailer` is not sent and the headers it names are set apart for
//! the trailer section, and a name or value that would split the answer is dropped with a
//! log line.

use super::wire;
use ringrunner_protocol::http::{ResponseHead, TrailerNames, TRAILER_HEADER};

/// Which of the worker's headers `gzip` takes off its answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Strip {
    /// `No-Gzip-Compression` (gzip wraps the worker).
    pub opt_out: bool,
    /// `Accept-Ranges` (the answer is compressed).
    pub ranges: bool,
}

/// What a walk of the worker's headers found.
#[derive(Debug, Default)]
pub(super) struct WorkerHeaders {
    pub has_type: bool,
    pub has_date: bool,
    /// The worker's `Content-Length` (honoured for HEAD only).
    pub worker_length: Option<u64>,
    /// The worker said `Connection: close`.
    pub close: bool,
    /// The worker sent a `Trailer` header (spec http §3.1d).
    pub lists_trailers: bool,
}

/// Copies the worker's headers into the head in `out`, less the framing ones (ours) and
/// `Trailer`; with `trailer_lines`, those `trailer_names` lists go there instead (and the
/// dropped ones are not reported again).
pub(super) fn copy_worker_headers(
    head: &ResponseHead<'_>,
    strip: Strip,
    trailer_names: &TrailerNames,
    out: &mut Vec<u8>,
    mut trailer_lines: Option<&mut Vec<u8>>,
) -> WorkerHeaders {
    let mut found = WorkerHeaders::default();
    let report = trailer_lines.is_none();
    head.for_each_header(|name, mut values| {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        if (strip.opt_out && is(b"no-gzip-compression")) || (strip.ranges && is(b"accept-ranges")) {
            return;
        }
        if is(b"content-length") {
            found.worker_length = values
                .next()
                .and_then(|value| std::str::from_utf8(value).ok()?.trim().parse::<u64>().ok());
            return;
        }
        if is(b"transfer-encoding") || is(b"connection") || is(b"keep-alive") {
            found.close |= is(b"connection")
                && Iterator::any(&mut values, |v| v.eq_ignore_ascii_case(b"close"));
            return;
        }
        // spec http §3.1d: the list is not sent; what it names goes after the body.
        if is(TRAILER_HEADER) {
            found.lists_trailers = true;
            return;
        }
        if let Some(lines) = trailer_lines.as_deref_mut() {
            if trailer_names.contains(name) {
                push_worker_header(lines, name, values, report);
                return;
            }
        }
        found.has_type |= is(b"content-type");
        found.has_date |= is(b"date");
        push_worker_header(out, name, values, report);
    });
    found
}

/// Writes the lines of one of the worker's headers, leaving out (with a log line when
/// `report`) a name that is not a token or a value with CR, LF or NUL: the worker's bytes
/// never split the response.
pub(super) fn push_worker_header<'v>(
    out: &mut Vec<u8>,
    name: &[u8],
    values: impl Iterator<Item = &'v [u8]>,
    report: bool,
) {
    for value in values {
        if let (Err(reason), true) = (wire::worker_header(out, name, value), report) {
            let header = String::from_utf8_lossy(name);
            tracing::warn!(target: "http", header = %header.escape_debug(), ?reason,
                "worker header dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringrunner_protocol::http::decode_response;
    use ringrunner_protocol::Flags;

    const KEEP_ALL: Strip = Strip {
        opt_out: false,
        ranges: false,
    };

    #[test]
    fn the_named_headers_go_to_the_trailer_lines_and_the_list_nowhere() {
        let json = br#"{"status":200,"headers":{"X-Sum":["1"],"Trailer":["X-Sum, X-Bad"],
            "X-Bad":["a\r\nb"],"Content-Length":["9"],"X-Kept":["k"]}}"#;
        let head = decode_response(Flags::CODEC_JSON, json).unwrap();
        let mut head_lines = Vec::new();
        let first = copy_worker_headers(
            &head,
            KEEP_ALL,
            &TrailerNames::default(),
            &mut head_lines,
            None,
        );
        assert!(first.lists_trailers);
        assert_eq!(first.worker_length, Some(9));
        assert_eq!(head_lines, b"X-Sum: 1\r\nX-Kept: k\r\n");
        let (mut head_lines, mut trailer_lines) = (Vec::new(), Vec::new());
        let names = TrailerNames::of(&head);
        copy_worker_headers(
            &head,
            KEEP_ALL,
            &names,
            &mut head_lines,
            Some(&mut trailer_lines),
        );
        assert_eq!(head_lines, b"X-Kept: k\r\n");
        assert_eq!(trailer_lines, b"X-Sum: 1\r\n");
    }
}
