//! HTTP/1.1 requests as a sans-IO state machine's parts: the head parser with Go's checks,
//! the body framing rules and the chunked decoder, each within [`Http1Limits`]. The server
//! feeds them bytes from its sockets; they never read, write or look at a clock.

mod chunked;
mod head;

pub use chunked::{ChunkError, ChunkedDecoder};
pub use head::{BodyKind, Head, HeadError, MAX_HEADERS, MAX_HEAD_BYTES};

/// The bounds a request must stay within; past each, a defined refusal (431 for the head,
/// 400 for a chunk line or trailers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http1Limits {
    /// Header lines in one head (at most [`MAX_HEADERS`]).
    pub max_header_lines: usize,
    /// Bytes of one head, request line and blank line included.
    pub max_head_bytes: usize,
    /// Bytes of one chunk-size line.
    pub max_chunk_line_bytes: usize,
    /// Bytes of the trailer section after the last chunk.
    pub max_trailer_bytes: usize,
}

impl Default for Http1Limits {
    /// Go's: 1 MiB heads (`DefaultMaxHeaderBytes`); ours: 128 header lines, 1 KiB chunk
    /// lines, 64 KiB of trailers.
    fn default() -> Self {
        Self {
            max_header_lines: MAX_HEADERS,
            max_head_bytes: MAX_HEAD_BYTES,
            max_chunk_line_bytes: 1024,
            max_trailer_bytes: 64 * 1024,
        }
    }
}
