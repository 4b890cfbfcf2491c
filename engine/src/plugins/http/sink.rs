//! Writes a worker's reply to the client (spec http §3): one response with Content-Length
//! for a single frame, chunked transfer for a stream (or for a frame with trailers: the
//! headers its `Trailer` header names go in the trailer section, §3.1d), interim 1xx
//! heads, rr's answers for bad statuses and errors.
//!
//! A single-frame reply is only formatted while the worker is checked out, and written once
//! the pool has it back ([`HttpSink::finish`]): a client that does not read cannot pin a
//! worker. A streamed reply keeps its worker while frames flow, and each write is bounded by
//! `write_timeout`; a client that stalls past it is treated as gone (the worker is told to
//! stop its stream) and the connection is closed.

use super::answer::{AnswerWriter, ConnectionLine, RETAINED_BUFFER_BYTES_MAX};
use super::gzip;
use super::sendfile::{self, SendFile};
use super::wire::{self, DateCache};
use super::worker_headers::{copy_worker_headers, push_worker_header, Strip, WorkerHeaders};
use crate::clock::unix_seconds;
use crate::plugins::client_io::WriteEnd;
use crate::plugins::Lifecycle;
use crate::pool::{ExecError, ReplyFrame, ReplySink};
use ringrunner_protocol::http::{decode_response, ResponseHead, TrailerNames};
use std::io::Write as _;
use std::time::Duration;

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

/// The response side of one request, written through `W` (HTTP/1.x or an HTTP/2 stream).
pub struct HttpSink<'a, W: AnswerWriter> {
    writer: W,
    out: &'a mut Vec<u8>,
    facts: RequestFacts,
    /// Shutdown state: once stopping, every answer says `Connection: close`.
    lifecycle: Option<&'a Lifecycle>,
    /// Bound on each write to the client.
    write_timeout: Duration,
    /// The connection's Date header cache.
    date: &'a mut DateCache,
    /// `out` holds a complete answer not yet written (see [`HttpSink::finish`]).
    pending: bool,
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
    /// Header lines the middleware adds to every answer (`headers`: its `response` and CORS
    /// headers), written before the worker's.
    middleware_head: &'a [u8],
    /// `gzip` wraps the worker and the client accepts gzip (not HEAD).
    compress: bool,
    /// A streamed reply being gzip-compressed: each frame goes out sync-flushed.
    gzip_stream: Option<flate2::write::GzEncoder<Vec<u8>>>,
    /// The `sendfile` middleware's state for this response.
    sendfile: sendfile::Mode,
    /// The trailer section's header lines (spec http §3.1d), sent after the last chunk.
    trailer_lines: Vec<u8>,
}

impl<W: AnswerWriter> std::fmt::Debug for HttpSink<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("status", &self.status)
            .field("head_sent", &self.head_sent)
            .finish_non_exhaustive()
    }
}

impl<'a, W: AnswerWriter> HttpSink<'a, W> {
    /// A sink writing through `writer` from the reused buffer `out`; `write_timeout` is
    /// what the writer bounds each write by (for the log line).
    pub fn new(
        writer: W,
        out: &'a mut Vec<u8>,
        facts: RequestFacts,
        (lifecycle, write_timeout): (&'a Lifecycle, Duration),
        date: &'a mut DateCache,
    ) -> Self {
        let mut sink = Self::unbound(writer, out, facts, date);
        sink.lifecycle = Some(lifecycle);
        sink.write_timeout = write_timeout;
        sink
    }

    /// A sink without shutdown state (tests of the response bytes).
    #[cfg(test)]
    pub(super) fn detached(
        writer: W,
        out: &'a mut Vec<u8>,
        facts: RequestFacts,
        date: &'a mut DateCache,
    ) -> Self {
        Self::unbound(writer, out, facts, date)
    }

    fn unbound(
        writer: W,
        out: &'a mut Vec<u8>,
        facts: RequestFacts,
        date: &'a mut DateCache,
    ) -> Self {
        Self {
            writer,
            out,
            facts,
            date,
            lifecycle: None,
            write_timeout: Duration::from_secs(60),
            pending: false,
            head_sent: false,
            streaming: false,
            ended: false,
            close: !facts.keep_alive,
            status: 0,
            written: 0,
            middleware_head: &[],
            compress: false,
            gzip_stream: None,
            sendfile: sendfile::Mode::Off,
            trailer_lines: Vec::new(),
        }
    }

    /// Lets a worker's `X-Sendfile` answer be replaced by the file (the `sendfile`
    /// middleware).
    pub fn set_sendfile(&mut self, on: bool) {
        self.sendfile = if on {
            sendfile::Mode::Watching
        } else {
            sendfile::Mode::Off
        };
    }

    /// With `sendfile` on and an `X-Sendfile` in the worker's head: keeps the path and the
    /// worker's other headers for the file's answer; true when the answer is replaced.
    fn take_sendfile(&mut self, head: &ResponseHead<'_>) -> bool {
        if !matches!(self.sendfile, sendfile::Mode::Watching) {
            return false;
        }
        let mut path = None;
        head.for_each_header(|name, values| {
            if name.eq_ignore_ascii_case(sendfile::HEADER) {
                path = values
                    .next()
                    .map(|v| String::from_utf8_lossy(v).trim().to_owned());
            }
        });
        let Some(path) = path.filter(|path| !path.is_empty()) else {
            return false;
        };
        let mut header_lines = Vec::new();
        head.for_each_header(|name, values| {
            if !sendfile::replaced_by_the_file(name) {
                push_worker_header(&mut header_lines, name, values, true);
            }
        });
        self.sendfile = sendfile::Mode::Replace(SendFile { path, header_lines });
        // The worker's body and later frames are not sent.
        self.head_sent = true;
        self.ended = true;
        true
    }

    /// Answers with the file the worker named (after the worker is back in the pool).
    async fn send_file(&mut self, send: SendFile) {
        if !self.close && self.lifecycle.is_some_and(Lifecycle::is_stopping) {
            self.close = true;
        }
        let how = sendfile::Answer {
            is_head: self.facts.is_head,
            close: self.close,
            middleware_head: self.middleware_head,
        };
        let sent = sendfile::answer(&mut self.writer, &send, how, self.out).await;
        self.status = sent.status;
        match sent.written {
            Some(bytes) => self.written += bytes,
            None => self.close = true,
        }
        if self.out.capacity() > RETAINED_BUFFER_BYTES_MAX {
            *self.out = Vec::new();
        }
    }

    /// Lets a whole (single-frame) reply be sent gzip-compressed when gzip's rules allow.
    pub fn set_compress(&mut self, compress: bool) {
        self.compress = compress;
    }

    /// Header lines (each ending in CRLF) to put on the answer before the worker's headers.
    pub fn set_middleware_head(&mut self, lines: &'a [u8]) {
        self.middleware_head = lines;
    }

    /// Writes `out` to the client; false (and `close`) when the client is gone or stopped
    /// reading for `write_timeout`.
    async fn flush(&mut self) -> bool {
        self.pending = false;
        let sent = self.writer.send(self.out, self.ended).await;
        if self.out.capacity() > RETAINED_BUFFER_BYTES_MAX {
            *self.out = Vec::new();
        }
        match sent {
            Ok(len) => {
                self.written += len;
                true
            }
            Err(end) => {
                if end == WriteEnd::Stalled {
                    tracing::warn!(target: "http", timeout = ?self.write_timeout,
                        "client stopped reading its response: write_timeout elapsed, connection closed");
                }
                self.close = true;
                false
            }
        }
    }

    /// Writes the answer the sink holds, if any (a single-frame reply or one of rr's own
    /// answers); called once the worker is back in the pool.
    pub async fn flush_pending(&mut self) {
        if self.pending {
            self.flush().await;
        }
    }

    /// Ends the head in `out`: its framing and what it says of the connection.
    fn close_head(&mut self, streamed: bool) {
        if !self.close && self.lifecycle.is_some_and(Lifecycle::is_stopping) {
            // Stopping: the client must not send its next request on this connection.
            self.close = true;
        }
        let connection = ConnectionLine::of(self.close, self.facts.minor_version);
        self.writer.close_head(self.out, streamed, connection);
    }

    /// Formats a complete response with a plain-text body (rr's own error answers); it is
    /// written by [`HttpSink::flush_pending`].
    pub fn send_plain(&mut self, status: u16, extra: &[(&[u8], &[u8])], body: &[u8]) {
        self.writer.open_head(self.out, status);
        self.out.extend_from_slice(self.middleware_head);
        for (name, value) in extra {
            wire::header(self.out, name, value);
        }
        if !body.is_empty() {
            wire::header(self.out, b"Content-Type", b"text/plain; charset=utf-8");
            wire::header(self.out, b"X-Content-Type-Options", b"nosniff");
        }
        self.date.header(self.out, unix_seconds());
        wire::header(
            self.out,
            b"Content-Length",
            body.len().to_string().as_bytes(),
        );
        self.close_head(false);
        if !self.facts.is_head {
            self.out.extend_from_slice(body);
        }
        self.status = status;
        self.head_sent = true;
        self.ended = true;
        self.pending = true;
    }

    /// After the exec (the worker is back in the pool): answers errors and replies that sent
    /// no final head, ends open streams, writes what is pending.
    pub async fn finish(
        &mut self,
        result: Result<(), ExecError>,
        internal_error_code: u16,
        debug: bool,
    ) {
        if let sendfile::Mode::Replace(send) = std::mem::take(&mut self.sendfile) {
            if result.is_ok() {
                self.pending = false;
                self.send_file(send).await;
                return;
            }
            // The worker failed after its head: rr's error answer, as without the file.
            self.head_sent = false;
            self.ended = false;
        }
        match result {
            Ok(()) if !self.head_sent => self.send_plain(200, &[], b""),
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
                self.send_plain(internal_error_code, no_workers, body.as_bytes());
            }
            Err(error) => {
                // Headers are out: end the body so the client sees a short, complete reply.
                tracing::error!(target: "http", %error, "worker failed mid-stream");
                if self.streaming && !self.ended {
                    self.ended = true;
                    if self.facts.minor_version == 1 && !self.close {
                        self.writer.end_chunks(self.out, &self.trailer_lines);
                        self.pending = true;
                    } else {
                        self.close = true;
                    }
                }
            }
        }
        self.flush_pending().await;
    }

    pub(super) fn write_head(
        &mut self,
        status: u16,
        head: &ResponseHead<'_>,
        first_body: &[u8],
        last: bool,
    ) {
        let facts = self.facts;
        self.writer.open_head(self.out, status);
        self.out.extend_from_slice(self.middleware_head);
        let bodiless = !wire::status_has_body(status);
        // A whole reply is compressed at once; a streamed one frame by frame (sync flushes).
        let gzip = self.compress
            && !bodiless
            && (!last || !first_body.is_empty())
            && gzip::allowed(head, first_body);
        let compressed = (gzip && last).then(|| gzip::compress(first_body));
        if gzip && !last {
            self.gzip_stream = Some(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            ));
        }
        let strip = Strip {
            opt_out: self.compress,
            ranges: gzip,
        };
        let mark = self.out.len();
        let no_trailers = TrailerNames::default();
        let mut found = copy_worker_headers(head, strip, &no_trailers, self.out, None);
        if found.lists_trailers {
            // Rare: walked again now that the trailers' names are known (quietly: the first
            // walk reported every dropped header).
            self.out.truncate(mark);
            let names = TrailerNames::of(head);
            found =
                copy_worker_headers(head, strip, &names, self.out, Some(&mut self.trailer_lines));
        }
        let WorkerHeaders {
            has_type,
            has_date,
            worker_length,
            close,
            ..
        } = found;
        self.close |= close;
        if !has_type && !first_body.is_empty() && !bodiless {
            wire::header(
                self.out,
                b"Content-Type",
                wire::sniff_content_type(first_body).as_bytes(),
            );
        }
        if !has_date {
            self.date.header(self.out, unix_seconds());
        }
        if gzip {
            wire::header(self.out, b"Content-Encoding", b"gzip");
        }
        let first_body = compressed.as_deref().unwrap_or(first_body);
        // Trailers need chunks: a whole reply with some is chunked too (on HTTP/1.0, and
        // with no body to end, they are dropped, as Go's server drops them).
        let chunk_whole = last
            && !self.trailer_lines.is_empty()
            && facts.minor_version == 1
            && !facts.is_head
            && !bodiless;
        if last && !chunk_whole {
            if !bodiless {
                let length = match (facts.is_head, worker_length) {
                    (true, Some(length)) => length,
                    _ => first_body.len() as u64,
                };
                self.out.extend_from_slice(b"Content-Length: ");
                wire::push_decimal(self.out, length);
                self.out.extend_from_slice(b"\r\n");
            }
        } else {
            // HTTP/1.0: no chunks, the close ends the body.
            self.close |= facts.minor_version == 0;
            self.streaming = true;
        }
        self.close_head(self.streaming);
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
        let packed;
        let body = match self.gzip_stream.as_mut() {
            None => body,
            Some(encoder) => {
                // Writing to a Vec cannot fail; the flush makes this frame decodable now.
                let _ = encoder.write_all(body);
                packed = if last {
                    self.gzip_stream
                        .take()
                        .and_then(|encoder| encoder.finish().ok())
                        .unwrap_or_default()
                } else {
                    let _ = encoder.flush();
                    std::mem::take(encoder.get_mut())
                };
                &packed[..]
            }
        };
        if self.streaming {
            self.writer.push_chunk(self.out, body);
            if last {
                self.writer.end_chunks(self.out, &self.trailer_lines);
            }
        } else {
            self.out.extend_from_slice(body);
        }
        self.ended |= last;
    }
}

impl<W: AnswerWriter> ReplySink for HttpSink<'_, W> {
    async fn frame(&mut self, frame: ReplyFrame<'_>) -> bool {
        if matches!(self.sendfile, sendfile::Mode::Replace(_)) {
            // The rest of a reply replaced by a file is read and dropped.
            return true;
        }
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
                    self.send_plain(500, &[], format!("{error}\n").as_bytes());
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
                self.send_plain(500, &[], text.as_bytes());
                return false;
            }
        };
        if status == 101 {
            tracing::error!(target: "http", "status 101 from worker: upgrades are not supported");
            return true;
        }
        if status < 200 {
            if self.facts.minor_version == 1 {
                self.writer.open_head(self.out, status);
                let out = &mut *self.out;
                head.for_each_header(|name, values| push_worker_header(out, name, values, true));
                self.writer
                    .close_head(self.out, false, ConnectionLine::Kept);
                return self.flush().await;
            }
            return true;
        }
        if self.take_sendfile(&head) {
            return true;
        }
        self.write_head(status, &head, frame.body, frame.last);
        if frame.last {
            // The whole answer is formatted: it goes out after the worker is back.
            self.pending = true;
            return true;
        }
        self.flush().await
    }
}

/// Go's `html.EscapeString`.
pub(super) fn html_escape(text: &str) -> String {
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
