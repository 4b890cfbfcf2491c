//! The chunked transfer coding of request bodies (RFC 9112 §7.1), incrementally: bytes in,
//! data out, no I/O.

use super::Http1Limits;

/// Incremental chunked-body decoder (RFC 9112 §7.1): call `decode` with the bytes after the
/// head; it appends data to `out` and says how many input bytes it consumed.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    max_line_bytes: usize,
    max_trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::within(&Http1Limits::default())
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked encoding")]
pub struct ChunkError;

impl ChunkedDecoder {
    /// A decoder for one body, within `limits`' chunk-line and trailer bounds.
    #[must_use]
    pub fn within(limits: &Http1Limits) -> Self {
        Self {
            state: ChunkState::default(),
            max_line_bytes: limits.max_chunk_line_bytes,
            max_trailer_bytes: limits.max_trailer_bytes,
        }
    }

    /// True after the last chunk and the trailers.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Bytes of the chunk being read that have not arrived yet: a size line announcing more
    /// than the body may hold is refused before its data is read.
    #[must_use]
    pub fn announced_remaining(&self) -> u64 {
        match self.state {
            ChunkState::Data(left) => left,
            _ => 0,
        }
    }

    /// Decodes what it can of `input`; returns the bytes consumed.
    ///
    /// # Errors
    /// A bad size line or a missing CRLF.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut at = 0;
        loop {
            match self.state {
                ChunkState::Done => return Ok(at),
                ChunkState::Size => {
                    let Some(line) = next_line(&input[at..], self.max_line_bytes)? else {
                        return Ok(at);
                    };
                    // A bare CR in the line: another parser may split it elsewhere.
                    if line.contains(&b'\r') {
                        return Err(ChunkError);
                    }
                    let line_end = line.len();
                    let size_text = line
                        .split(|&b| b == b';')
                        .next()
                        .unwrap_or_default()
                        .trim_ascii();
                    if size_text.is_empty() || size_text.len() > 15 {
                        return Err(ChunkError);
                    }
                    let size = std::str::from_utf8(size_text)
                        .ok()
                        .and_then(|t| u64::from_str_radix(t, 16).ok())
                        .ok_or(ChunkError)?;
                    at += line_end + 2;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let available = (input.len() - at) as u64;
                    if available == 0 {
                        return Ok(at);
                    }
                    let take = left.min(available) as usize;
                    out.extend_from_slice(&input[at..at + take]);
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    if input.len() - at < 2 {
                        return Ok(at);
                    }
                    if &input[at..at + 2] != b"\r\n" {
                        return Err(ChunkError);
                    }
                    at += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = next_line(&input[at..], self.max_trailer_bytes)? else {
                        return Ok(at);
                    };
                    let line_end = line.len();
                    at += line_end + 2;
                    if line_end == 0 {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }
}

/// The line at the start of `input`, without its CRLF; None while it is incomplete and
/// within `max_bytes`. A bare LF inside it is malformed (another parser may end the line
/// there).
fn next_line(input: &[u8], max_bytes: usize) -> Result<Option<&[u8]>, ChunkError> {
    let Some(end) = find_crlf(input) else {
        return if input.len() > max_bytes {
            Err(ChunkError)
        } else {
            Ok(None)
        };
    };
    let line = &input[..end];
    if line.contains(&b'\n') {
        return Err(ChunkError);
    }
    Ok(Some(line))
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}
