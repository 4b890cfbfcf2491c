//! The chunked transfer coding of request bodies (RFC 9112 §7.1), incrementally: bytes in,
//! data out, no I/O.
//!
//! Work is linear in the body whatever the pieces it arrives in: a line that arrives in
//! pieces is searched for its end from where the last search stopped (not from its start),
//! each line is bounded ([`Http1Limits::max_chunk_line_bytes`]), and the trailer section as a
//! whole is bounded by [`Http1Limits::max_trailer_bytes`] (it was bounded per line, so a
//! client could send trailer lines for as long as the body's time allowed).

use super::Http1Limits;

/// Incremental chunked-body decoder (RFC 9112 §7.1): call `decode` with the bytes after the
/// head; it appends data to `out` and says how many input bytes it consumed.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    max_line_bytes: usize,
    max_trailer_bytes: usize,
    /// Bytes of the pending (incomplete) line already searched for its CRLF.
    line_scanned: usize,
    /// Bytes of the trailer section consumed so far.
    trailer_bytes: usize,
    /// The trailer section's lines, each with its CRLF, when asked to keep them (a relayed
    /// answer's trailers); bounded by `max_trailer_bytes` as the section is.
    kept_trailers: Option<Vec<u8>>,
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
            line_scanned: 0,
            trailer_bytes: 0,
            kept_trailers: None,
        }
    }

    /// The same decoder, keeping the trailer section's lines for [`Self::trailers`] instead
    /// of dropping them.
    #[must_use]
    pub fn keeping_trailers(mut self) -> Self {
        self.kept_trailers = Some(Vec::new());
        self
    }

    /// The trailer lines read so far (each ending in CRLF); empty unless kept.
    #[must_use]
    pub fn trailers(&self) -> &[u8] {
        self.kept_trailers.as_deref().unwrap_or_default()
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
                    let limit = self.max_line_bytes;
                    let Some(line) = self.next_line(&input[at..], limit)? else {
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
                    let limit = self.max_trailer_bytes - self.trailer_bytes;
                    let Some(line) = self.next_line(&input[at..], limit)? else {
                        return Ok(at);
                    };
                    let line_end = line.len();
                    self.trailer_bytes += line_end + 2;
                    if self.trailer_bytes > self.max_trailer_bytes {
                        return Err(ChunkError);
                    }
                    if let Some(kept) = self.kept_trailers.as_mut().filter(|_| line_end > 0) {
                        kept.extend_from_slice(&input[at..at + line_end + 2]);
                    }
                    at += line_end + 2;
                    if line_end == 0 {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }
}

impl ChunkedDecoder {
    /// The line at the start of `input`, without its CRLF; None while it is incomplete and
    /// within `max_bytes`. A bare LF inside it is malformed (another parser may end the line
    /// there). An incomplete line is searched again from where this search stopped.
    fn next_line<'i>(
        &mut self,
        input: &'i [u8],
        max_bytes: usize,
    ) -> Result<Option<&'i [u8]>, ChunkError> {
        // The CR of a CRLF may be the last byte searched: step back one.
        let from = self.line_scanned.saturating_sub(1).min(input.len());
        let Some(end) = find_crlf(&input[from..]).map(|end| from + end) else {
            self.line_scanned = input.len();
            return if input.len() > max_bytes {
                Err(ChunkError)
            } else {
                Ok(None)
            };
        };
        self.line_scanned = 0;
        let line = &input[..end];
        // The bound holds however the line arrived (in one read or in pieces).
        if line.len() > max_bytes || line.contains(&b'\n') {
            return Err(ChunkError);
        }
        Ok(Some(line))
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `body` fed `piece` bytes at a time, as the server does (consumed bytes are
    /// dropped, the rest is given again with what arrived).
    fn decode_in_pieces(body: &[u8], piece: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut decoder = ChunkedDecoder::default();
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for part in body.chunks(piece) {
            pending.extend_from_slice(part);
            let used = decoder.decode(&pending, &mut out)?;
            pending.drain(..used);
            if decoder.is_done() {
                break;
            }
        }
        Ok((out, decoder.is_done()))
    }

    #[test]
    fn any_split_of_a_body_decodes_the_same() {
        let body = b"3\r\nabc\r\n5;ext=1\r\ndefgh\r\n0\r\nTrailer: x\r\nMore: y\r\n\r\n";
        for piece in 1..body.len() {
            assert_eq!(
                decode_in_pieces(body, piece),
                Ok((b"abcdefgh".to_vec(), true)),
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn kept_trailers_are_the_sections_lines_however_the_body_is_split() {
        let body = b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Time: 2\r\n\r\nnext";
        for piece in 1..body.len() {
            let mut decoder = ChunkedDecoder::default().keeping_trailers();
            let (mut out, mut pending) = (Vec::new(), Vec::new());
            for part in body.chunks(piece) {
                pending.extend_from_slice(part);
                let used = decoder.decode(&pending, &mut out).unwrap();
                pending.drain(..used);
            }
            assert!(decoder.is_done(), "pieces of {piece}");
            assert_eq!((&out[..], &pending[..]), (&b"abc"[..], &b"next"[..]));
            assert_eq!(decoder.trailers(), b"X-Sum: 1\r\nX-Time: 2\r\n");
        }
        let mut dropping = ChunkedDecoder::default();
        dropping.decode(body, &mut Vec::new()).unwrap();
        assert!(dropping.is_done() && dropping.trailers().is_empty());
    }

    #[test]
    fn the_trailer_section_is_bounded_as_a_whole() {
        let limits = Http1Limits::default();
        let mut body = b"1\r\na\r\n0\r\n".to_vec();
        // Short lines, none past the per-line bound, that never end the section.
        while body.len() < limits.max_trailer_bytes * 2 {
            body.extend_from_slice(b"X-T: 1\r\n");
        }
        assert_eq!(decode_in_pieces(&body, 100), Err(ChunkError));
    }

    #[test]
    fn a_trickled_line_is_refused_past_its_bound_and_scanned_once() {
        // A size line that never ends, a byte at a time: refused at the line bound, and
        // each call searches only the new byte (the whole line each time was quadratic).
        let mut decoder = ChunkedDecoder::default();
        let mut line = b"1".to_vec();
        let mut out = Vec::new();
        let result = loop {
            line.push(b' ');
            match decoder.decode(&line, &mut out) {
                Ok(0) => assert!(decoder.line_scanned == line.len()),
                other => break other,
            }
        };
        assert_eq!(result, Err(ChunkError));
        assert!(line.len() <= Http1Limits::default().max_chunk_line_bytes + 2);
    }
}
