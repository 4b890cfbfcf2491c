//! Writes a worker's reply to the client as its frames arrive (spec http §3): one response
//! with Content-Length for a single frame, chunked transfer for a stream, interim 1xx heads,
//! rr's answers for bad statuses and errors.

use super::wire::{self, LAST_CHUNK};
use crate::pool::{ExecError, ReplyFrame, ReplySink};
use ringrunner_protocol::http::{decode_response, ResponseHead};
use std::io::Write as _;
use tokio_uring::net::TcpStream;

/// Per-request facts the sink needs.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts {
    /// 0 or 1.
    pub minor_version: u8,
    /// HEAD: heads only.
    pub is_head: bool,
    /// The client wants the connection kept.
    pub keep_alive: bool,
}

/// The response side of one request.
pub struct HttpSink<'a> {
    /// None only in tests that look at the bytes without a socket.
    stream: Option<&'a TcpStream>,
    out: &'a mut Vec<u8>,
    facts: RequestFacts,
    head_sent: bool,
    /// A chunked (or, on HTTP/1.0, close-delimited) stream is open.
    streaming: bool,
    ended: bool,
    /// The connection must close after this response.
    pub close: bool,
    /// Status sent, for the access log.
    pub status: u16,
    /// Bytes written, for the access log.
    pub written: u64,
}

impl std::fmt::Debug for HttpSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("status", &self.status)
            .field("head_sent", &self.head_sent)
            .finish_non_exhaustive()
    }
}

impl<'a> HttpSink<'a> {
    /// A sink writing to `stream` through the reused buffer `out`.
    pub fn new(stream: &'a TcpStream, out: &'a mut Vec<u8>, facts: RequestFacts) -> Self {
        Self::with_stream(Some(stream), out, facts)
    }

    /// A sink that only fills `out` (tests of the response bytes).
    #[cfg(test)]
    pub(super) fn detached(out: &'a mut Vec<u8>, facts: RequestFacts) -> Self {
        Self::with_stream(None, out, facts)
    }

    fn with_stream(
        stream: Option<&'a TcpStream>,
        out: &'a mut Vec<u8>,
        facts: RequestFacts,
    ) -> Self {
        Self {
            stream,
            out,
            facts,
            head_sent: false,
            streaming: false,
            ended: false,
            close: !facts.keep_alive,
            status: 0,
            written: 0,
        }
    }

    /// Writes `out` to the client; false (and `close`) when the client is gone.
    async fn flush(&mut self) -> bool {
        let buffer = std::mem::take(self.out);
        let len = buffer.len() as u64;
        let Some(stream) = self.stream else {
            *self.out = buffer;
            return true;
        };
        let (result, mut buffer) = stream.write_all(buffer).await;
        buffer.clear();
        *self.out = buffer;
        if result.is_err() {
            self.close = true;
            return false;
        }
        self.written += len;
        true
    }

    fn connection_header(&mut self) {
        if self.close {
            wire::header(self.out, b"Connection", b"close");
        } else if self.facts.minor_version == 0 {
            wire::header(self.out, b"Connection", b"keep-alive");
        }
    }

    /// A complete response with a plain-text body (rr's own error answers).
    pub async fn send_plain(&mut self, status: u16, extra: &[(&[u8], &[u8])], body: &[u8]) {
        self.out.clear();
        wire::status_line(self.out, self.facts.minor_version, status);
        for (name, value) in extra {
            wire::header(self.out, name, value);
        }
        if !body.is_empty() {
            wire::header(self.out, b"Content-Type", b"text/plain; charset=utf-8");
            wire::header(self.out, b"X-Content-Type-Options", b"nosniff");
        }
        wire::date_header(self.out);
        wire::header(
            self.out,
            b"Content-Length",
            body.len().to_string().as_bytes(),
        );
        self.connection_header();
        self.out.extend_from_slice(b"\r\n");
        if !self.facts.is_head {
            self.out.extend_from_slice(body);
        }
        self.status = status;
        self.head_sent = true;
        self.ended = true;
        self.flush().await;
    }

    /// After the exec: answers errors and replies that sent no final head, ends open streams.
    pub async fn finish(
        &mut self,
        result: Result<(), ExecError>,
        internal_error_code: u16,
        debug: bool,
    ) {
        match result {
            Ok(()) if !self.head_sent => self.send_plain(200, &[], b"").await,
            Ok(()) => {}
            Err(error) if !self.head_sent => {
                tracing::error!(target: "http", %error, "error processing request");
                let no_workers: &[(&[u8], &[u8])] = if matches!(error, ExecError::NoFreeWorkers) {
                    &[(b"No-Workers", b"true")]
                } else {
                    &[]
                };
                let body = if debug {
                    html_escape(&error.to_string())
                } else {
                    String::new()
                };
                self.send_plain(internal_error_code, no_workers, body.as_bytes())
                    .await;
            }
            Err(error) => {
                // Headers are out: end the body so the client sees a short, complete reply.
                tracing::error!(target: "http", %error, "worker failed mid-stream");
                if self.streaming && !self.ended {
                    self.ended = true;
                    if self.facts.minor_version == 1 {
                        self.out.extend_from_slice(LAST_CHUNK);
                        self.flush().await;
                    } else {
                        self.close = true;
                    }
                }
            }
        }
    }

    pub(super) fn write_head(
        &mut self,
        status: u16,
        head: &ResponseHead<'_>,
        first_body: &[u8],
        last: bool,
    ) {
        let facts = self.facts;
        self.out.clear();
        wire::status_line(self.out, facts.minor_version, status);
        let mut has_type = false;
        let mut has_date = false;
        let mut worker_length = None;
        let (out, close) = (&mut *self.out, &mut self.close);
        head.for_each_header(|name, mut values| {
            let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
            if is(b"content-length") {
                // Honoured for HEAD only; the body we relay sets it otherwise.
                worker_length = values
                    .next()
                    .and_then(|value| std::str::from_utf8(value).ok()?.trim().parse::<u64>().ok());
                return;
            }
            if is(b"transfer-encoding") || is(b"connection") || is(b"keep-alive") {
                if is(b"connection")
                    && Iterator::any(&mut values, |v| v.eq_ignore_ascii_case(b"close"))
                {
                    *close = true;
                }
                return;
            }
            has_type |= is(b"content-type");
            has_date |= is(b"date");
            for value in values {
                wire::canonical_header(out, name, value);
            }
        });
        let bodiless = status == 204 || status == 304;
        if !has_type && !first_body.is_empty() && !bodiless {
            wire::header(
                self.out,
                b"Content-Type",
                wire::sniff_content_type(first_body).as_bytes(),
            );
        }
        if !has_date {
            wire::date_header(self.out);
        }
        if last {
            if !bodiless {
                let length = match (facts.is_head, worker_length) {
                    (true, Some(length)) => length,
                    _ => first_body.len() as u64,
                };
                let _ = write!(self.out, "Content-Length: {length}\r\n");
            }
        } else if facts.minor_version == 1 {
            wire::header(self.out, b"Transfer-Encoding", b"chunked");
            self.streaming = true;
        } else {
            self.close = true;
            self.streaming = true;
        }
        self.connection_header();
        self.out.extend_from_slice(b"\r\n");
        self.status = status;
        self.head_sent = true;
        if facts.is_head || bodiless {
            self.ended = last;
            return;
        }
        self.append_body(first_body, last);
    }

    fn append_body(&mut self, body: &[u8], last: bool) {
        if self.facts.is_head {
            self.ended |= last;
            return;
        }
        if self.streaming && self.facts.minor_version == 1 {
            wire::chunk(self.out, body);
            if last {
                self.out.extend_from_slice(LAST_CHUNK);
            }
        } else {
            self.out.extend_from_slice(body);
        }
        self.ended |= last;
    }
}

impl ReplySink for HttpSink<'_> {
    async fn frame(&mut self, frame: ReplyFrame<'_>) -> bool {
        if self.head_sent {
            if self.ended {
                return false;
            }
            // Later contexts are ignored (rr logs "superfluous WriteHeader").
            self.append_body(frame.body, frame.last);
            return self.flush().await;
        }
        let head = if frame.context.is_empty() {
            ResponseHead::status_only(200)
        } else {
            match decode_response(frame.codec, frame.context) {
                Ok(head) => head,
                Err(error) => {
                    tracing::error!(target: "http", %error, "worker answered garbage");
                    self.send_plain(500, &[], format!("{error}\n").as_bytes())
                        .await;
                    return false;
                }
            }
        };
        let status = match u16::try_from(head.status) {
            Ok(0) => 200,
            Ok(status) if (100..600).contains(&status) => status,
            _ => {
                let text = format!("unknown status code from worker: {}\n", head.status);
                tracing::error!(target: "http", status = head.status, "unknown status code from worker");
                self.send_plain(500, &[], text.as_bytes()).await;
                return false;
            }
        };
        if status == 101 {
            tracing::error!(target: "http", "status 101 from worker: upgrades are not supported");
            return true;
        }
        if status < 200 {
            if self.facts.minor_version == 1 {
                self.out.clear();
                wire::status_line(self.out, 1, status);
                let out = &mut *self.out;
                head.for_each_header(|name, values| {
                    for value in values {
                        wire::canonical_header(out, name, value);
                    }
                });
                self.out.extend_from_slice(b"\r\n");
                return self.flush().await;
            }
            return true;
        }
        self.write_head(status, &head, frame.body, frame.last);
        self.flush().await
    }
}

/// Go's `html.EscapeString`.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
