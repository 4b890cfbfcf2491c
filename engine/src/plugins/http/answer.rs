//! The answer side of the request core. Whatever answers a request (the worker's reply
//! through [`HttpSink`](super::sink::HttpSink), rr's own error answers, a static file, an
//! `X-Sendfile` file, a CORS preflight) builds it the same way, in a reused buffer: a
//! status, header lines (`Name: value` CRLF, as [`wire`](super::wire) writes them), body
//! bytes, and, at the end of a streamed body, trailer lines. An [`AnswerWriter`] frames
//! those for its front end's wire: HTTP/1.x bytes on the connection ([`Http1Writer`]), or
//! HEADERS, DATA and trailing HEADERS on an HTTP/2 stream (`http2::StreamWriter`).

use super::wire::{self, LAST_CHUNK};
use crate::aio::{Backend, Stream};
use crate::plugins::client_io::{write_all_within, WriteEnd};
use std::time::Duration;

/// A response buffer kept for the next request holds at most this much; a larger one (after
/// a big reply) is given back to the allocator.
pub const RETAINED_BUFFER_BYTES_MAX: usize = 256 * 1024;

/// What an HTTP/1 head says of the connection after the answer (HTTP/2 has no such line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionLine {
    /// Nothing: HTTP/1.1 keeps the connection.
    Kept,
    /// `Connection: close`.
    Close,
    /// `Connection: keep-alive` (an HTTP/1.0 client asked for it).
    KeepAlive,
}

impl ConnectionLine {
    /// The line for an answer to an HTTP/1.`minor_version` request, closed or kept.
    #[must_use]
    pub fn of(close: bool, minor_version: u8) -> Self {
        match (close, minor_version) {
            (true, _) => Self::Close,
            (false, 0) => Self::KeepAlive,
            (false, _) => Self::Kept,
        }
    }
}

/// Frames an answer for one front end's wire and sends it.
///
/// The calls come in this order: [`open_head`](Self::open_head), the header lines (pushed
/// by the caller), [`close_head`](Self::close_head), body bytes (pushed as they are, or
/// through [`push_chunk`](Self::push_chunk) for a streamed body, which
/// [`end_chunks`](Self::end_chunks) ends), and [`send`](Self::send) whenever what the
/// buffer holds should go out. An interim (1xx) head is opened, closed and sent before the
/// final one.
pub(crate) trait AnswerWriter {
    /// The HTTP/1 minor version of the request (1 for HTTP/2: streamed bodies, trailers
    /// and interim heads are all allowed).
    fn minor_version(&self) -> u8;

    /// The I/O backend of the shard (to open files with).
    fn backend(&self) -> Backend;

    /// Starts a head with `status` in `out` (cleared first).
    fn open_head(&mut self, out: &mut Vec<u8>, status: u16);

    /// Ends the head whose header lines follow [`open_head`](Self::open_head) in `out`:
    /// `streamed`, a body whose length is not known (HTTP/1.1 chunks it); `connection`,
    /// what an HTTP/1 head says of the connection.
    fn close_head(&mut self, out: &mut Vec<u8>, streamed: bool, connection: ConnectionLine);

    /// Appends a part of a streamed body.
    fn push_chunk(&mut self, out: &mut Vec<u8>, body: &[u8]);

    /// Ends a streamed body, with the trailer section's lines (spec http §3.1d).
    fn end_chunks(&mut self, out: &mut Vec<u8>, trailer_lines: &[u8]);

    /// Sends what `out` holds and empties it, keeping its capacity where it can (a write
    /// cut short by its timeout may keep the buffer); `last`: the answer ends with it. The
    /// bytes sent, or why the client cannot take them.
    async fn send(&mut self, out: &mut Vec<u8>, last: bool) -> Result<u64, WriteEnd>;
}

/// A writer lent to a sink for one answer (the stream keeps it to look at afterwards).
impl<W: AnswerWriter> AnswerWriter for &mut W {
    fn minor_version(&self) -> u8 {
        (**self).minor_version()
    }

    fn backend(&self) -> Backend {
        (**self).backend()
    }

    fn open_head(&mut self, out: &mut Vec<u8>, status: u16) {
        (**self).open_head(out, status);
    }

    fn close_head(&mut self, out: &mut Vec<u8>, streamed: bool, connection: ConnectionLine) {
        (**self).close_head(out, streamed, connection);
    }

    fn push_chunk(&mut self, out: &mut Vec<u8>, body: &[u8]) {
        (**self).push_chunk(out, body);
    }

    fn end_chunks(&mut self, out: &mut Vec<u8>, trailer_lines: &[u8]) {
        (**self).end_chunks(out, trailer_lines);
    }

    async fn send(&mut self, out: &mut Vec<u8>, last: bool) -> Result<u64, WriteEnd> {
        (**self).send(out, last).await
    }
}

/// HTTP/1.x: the answer is the bytes the buffer holds, written to the connection.
#[derive(Debug)]
pub struct Http1Writer<'a> {
    /// None only in tests that look at the bytes without a socket.
    stream: Option<&'a Stream>,
    minor_version: u8,
    /// Bound on each write to the client.
    write_timeout: Duration,
    /// A streamed body is chunked (HTTP/1.1).
    chunked: bool,
}

impl<'a> Http1Writer<'a> {
    /// A writer to `stream` for an HTTP/1.`minor_version` request.
    #[must_use]
    pub fn new(stream: &'a Stream, minor_version: u8, write_timeout: Duration) -> Self {
        Self {
            stream: Some(stream),
            minor_version,
            write_timeout,
            chunked: false,
        }
    }

    /// A writer that leaves the answer in its buffer (tests of the answer bytes).
    #[cfg(test)]
    #[must_use]
    pub fn detached(minor_version: u8) -> Self {
        Self {
            stream: None,
            minor_version,
            write_timeout: Duration::from_secs(60),
            chunked: false,
        }
    }
}

impl AnswerWriter for Http1Writer<'_> {
    fn minor_version(&self) -> u8 {
        self.minor_version
    }

    fn backend(&self) -> Backend {
        self.stream.map_or(Backend::Uring, Stream::backend)
    }

    fn open_head(&mut self, out: &mut Vec<u8>, status: u16) {
        out.clear();
        wire::status_line(out, self.minor_version, status);
    }

    fn close_head(&mut self, out: &mut Vec<u8>, streamed: bool, connection: ConnectionLine) {
        // HTTP/1.0 has no chunks: a streamed body is delimited by the close.
        self.chunked = streamed && self.minor_version == 1;
        if self.chunked {
            wire::header(out, b"Transfer-Encoding", b"chunked");
        }
        match connection {
            ConnectionLine::Kept => {}
            ConnectionLine::Close => wire::header(out, b"Connection", b"close"),
            ConnectionLine::KeepAlive => wire::header(out, b"Connection", b"keep-alive"),
        }
        out.extend_from_slice(b"\r\n");
    }

    fn push_chunk(&mut self, out: &mut Vec<u8>, body: &[u8]) {
        if self.chunked {
            wire::chunk(out, body);
        } else {
            out.extend_from_slice(body);
        }
    }

    fn end_chunks(&mut self, out: &mut Vec<u8>, trailer_lines: &[u8]) {
        if !self.chunked {
            return;
        }
        if trailer_lines.is_empty() {
            out.extend_from_slice(LAST_CHUNK);
            return;
        }
        out.extend_from_slice(b"0\r\n");
        out.extend_from_slice(trailer_lines);
        out.extend_from_slice(b"\r\n");
    }

    async fn send(&mut self, out: &mut Vec<u8>, _last: bool) -> Result<u64, WriteEnd> {
        let Some(stream) = self.stream else {
            return Ok(0);
        };
        let buffer = std::mem::take(out);
        let len = buffer.len() as u64;
        let (result, buffer) = write_all_within(stream, buffer, self.write_timeout).await;
        if let Some(mut buffer) = buffer {
            buffer.clear();
            *out = buffer;
        }
        result.map(|()| len)
    }
}
