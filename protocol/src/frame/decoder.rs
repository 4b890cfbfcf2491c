//! The incremental frame decoder (spec relay-protocol §1.8).
//!
//! Work: each byte is copied once into the decoder and looked at once; a header's CRC is
//! computed once when it is whole; a payload is taken when its last byte arrives (a frame in
//! pieces is never re-parsed from its start). Payloads are bounded by the decoder's limit.

use super::header::{u32_at, MAX_HEADER_WORDS, MIN_HEADER_WORDS};
use super::{header_crc, FrameError, FrameHeader, BASE_HEADER_BYTES};

/// Payload limit of a decoder made with [`FrameDecoder::default`]: 256 MiB. The wire allows
/// 4 GiB and RoadRunner trusts it; a worker that announces more than this is treated as broken.
pub const DEFAULT_MAX_PAYLOAD_BYTES: u32 = 256 * 1024 * 1024;
/// How much of a "Could not open input file" message is kept.
pub const MAX_STRAY_OUTPUT_BYTES: usize = 64 * 1024;
/// The first 12 bytes of PHP CLI's "Could not open input file: …" (§1.8 step 2).
const SCRIPT_NOT_FOUND_PREFIX: &[u8; BASE_HEADER_BYTES] = b"Could not op";

/// A frame borrowed from the decoder's buffer; valid until the next call on the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: FrameHeader,
    /// Exactly `header.payload_len` bytes.
    pub payload: &'a [u8],
}

#[derive(Debug)]
enum State {
    Framing,
    /// The relay began with "Could not op": keep the text until EOF (§1.8 step 2).
    CollectingStrayOutput,
    /// A bad frame was seen; the relay cannot be trusted any more.
    Failed(FrameError),
}

/// Room the buffer keeps once empty; more is released after the frame that needed it.
pub const RETAINED_BUFFER_BYTES_MAX: usize = 256 * 1024;

/// Turns a byte stream, split anywhere, into frames.
///
/// Feed bytes with [`feed`](Self::feed) (or read straight into the buffer lent by
/// [`take_read_buffer`](Self::take_read_buffer)), then call [`next_frame`](Self::next_frame)
/// until it returns `Ok(None)`. The buffer is reused: in steady state decoding allocates
/// nothing. Every error is final: the decoder keeps returning it.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// The capacity the buffer starts with and goes back to after a large frame.
    initial_capacity: usize,
    /// Start of the bytes not yet returned as a frame.
    start: usize,
    /// Length of the frame returned last; released on the next call.
    returned_len: usize,
    /// Bytes still missing from the frame whose header has arrived (0: none pending).
    missing_len: usize,
    max_payload_bytes: u32,
    state: State,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD_BYTES)
    }
}

impl FrameDecoder {
    /// A decoder that refuses payloads over `max_payload_bytes`.
    #[must_use]
    pub fn new(max_payload_bytes: u32) -> Self {
        Self::with_capacity(max_payload_bytes, 4096)
    }

    /// A decoder whose buffer starts with room for `capacity` bytes.
    #[must_use]
    pub fn with_capacity(max_payload_bytes: u32, capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
            initial_capacity: capacity,
            start: 0,
            returned_len: 0,
            missing_len: 0,
            max_payload_bytes,
            state: State::Framing,
        }
    }

    /// The payload limit.
    #[must_use]
    pub fn max_payload_bytes(&self) -> u32 {
        self.max_payload_bytes
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.release_returned();
        if let State::CollectingStrayOutput = self.state {
            let room = MAX_STRAY_OUTPUT_BYTES.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            return;
        }
        self.make_room(bytes.len());
        self.buf.extend_from_slice(bytes);
    }

    /// Lends the buffer for a read that appends to it (completion-based I/O owns its buffer
    /// while in flight). It holds the undecoded bytes and at least `min_spare` bytes of spare
    /// capacity; hand it back with [`restore_read_buffer`](Self::restore_read_buffer).
    #[must_use]
    ///
    /// While a large frame arrives, the buffer was sized for it exactly when its header came
    /// in: the spare room asked for is then at most what the frame still misses, so reading
    /// its last bytes does not double the buffer.
    pub fn take_read_buffer(&mut self, min_spare: usize) -> Vec<u8> {
        self.release_returned();
        let wanted = match self.missing_len {
            0 => min_spare,
            missing => min_spare.min(missing),
        };
        self.make_room(wanted);
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        std::mem::take(&mut self.buf)
    }

    /// Takes back the buffer lent by [`take_read_buffer`](Self::take_read_buffer), with
    /// whatever the read appended.
    pub fn restore_read_buffer(&mut self, buf: Vec<u8>) {
        debug_assert!(self.buf.is_empty() && self.start == 0);
        self.buf = buf;
        if let State::CollectingStrayOutput = self.state {
            self.buf.truncate(MAX_STRAY_OUTPUT_BYTES);
        }
    }

    /// Releases the frame returned last; if nothing else is buffered and the buffer grew
    /// past `RETAINED_BUFFER_BYTES_MAX` for it, the room goes back to the allocator now
    /// rather than at the next read.
    pub fn release_frame(&mut self) {
        self.release_returned();
    }

    /// Bytes received but not yet returned as a frame.
    #[must_use]
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start - self.returned_len
    }

    /// Capacity of the internal buffer (for allocation tests and metrics).
    #[must_use]
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// True while the decoder is keeping a "Could not open input file" text until EOF.
    #[must_use]
    pub fn is_collecting_stray_output(&self) -> bool {
        matches!(self.state, State::CollectingStrayOutput)
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// A [`FrameError`] for a bad header; the decoder then stays failed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        let Some((header_len, frame_len)) = self.locate_frame()? else {
            return Ok(None);
        };
        let available = &self.buf[self.start..];
        let header = FrameHeader::from_validated(&available[..header_len]);
        debug_assert_eq!(header.frame_len(), frame_len);
        self.returned_len = frame_len;
        Ok(Some(Frame {
            header,
            payload: &available[header_len..frame_len],
        }))
    }

    /// True when [`next_frame`](Self::next_frame) would return a frame now (what an async
    /// reader checks before it borrows the frame).
    ///
    /// # Errors
    /// As [`next_frame`](Self::next_frame).
    pub fn has_frame(&mut self) -> Result<bool, FrameError> {
        Ok(self.locate_frame()?.is_some())
    }

    /// Releases the frame returned last, checks the next header, and gives its (header,
    /// frame) lengths once the whole frame is buffered.
    fn locate_frame(&mut self) -> Result<Option<(usize, usize)>, FrameError> {
        self.release_returned();
        match &self.state {
            State::Framing => {}
            State::CollectingStrayOutput => return Ok(None),
            State::Failed(error) => return Err(error.clone()),
        }
        self.missing_len = 0;
        let Some(&raw_base) = self.buf[self.start..].first_chunk::<BASE_HEADER_BYTES>() else {
            return Ok(None);
        };
        if &raw_base == SCRIPT_NOT_FOUND_PREFIX {
            self.buf.drain(..self.start);
            self.start = 0;
            self.buf.truncate(MAX_STRAY_OUTPUT_BYTES);
            self.state = State::CollectingStrayOutput;
            return Ok(None);
        }
        if let Err(error) = self.check_base_header(&raw_base) {
            self.state = State::Failed(error.clone());
            return Err(error);
        }
        let header_len = 4 * usize::from(raw_base[0] & 0x0f);
        let frame_len = header_len + u32_at(&raw_base, 2) as usize;
        let available = self.buf.len() - self.start;
        if available < frame_len {
            // Room for the whole frame now, once: no doubling on the way to a large one.
            self.missing_len = frame_len - available;
            if self.buf.capacity() - self.buf.len() < self.missing_len {
                self.buf.drain(..self.start);
                self.start = 0;
                self.buf.reserve_exact(self.missing_len);
            }
            return Ok(None);
        }
        Ok(Some((header_len, frame_len)))
    }

    /// Tells the decoder the relay reached EOF.
    ///
    /// # Errors
    /// [`FrameError::ScriptNotFound`] with the worker's text if the relay began with it,
    /// [`FrameError::Truncated`] if a frame was cut off, or the error the decoder failed with.
    pub fn finish(&mut self) -> Result<(), FrameError> {
        self.release_returned();
        match &self.state {
            State::Failed(error) => Err(error.clone()),
            State::CollectingStrayOutput => Err(FrameError::ScriptNotFound {
                output: String::from_utf8_lossy(&self.buf).trim_end().to_owned(),
            }),
            State::Framing if self.buffered_len() > 0 => Err(FrameError::Truncated {
                buffered: self.buffered_len(),
            }),
            State::Framing => Ok(()),
        }
    }

    /// Validates the fixed 12 bytes (§1.5, §1.6, §1.7). The CRC comes first: a worker that
    /// printed text produces a header whose other fields are noise too, and the CRC error
    /// is the one that names the cause.
    fn check_base_header(&self, raw: &[u8; BASE_HEADER_BYTES]) -> Result<(), FrameError> {
        let expected = header_crc(&[raw[0], raw[1], raw[2], raw[3], raw[4], raw[5]]);
        let actual = u32_at(raw, 6);
        if expected != actual {
            return Err(FrameError::BadCrc {
                header: *raw,
                expected,
                actual,
            });
        }
        let words = raw[0] & 0x0f;
        if !(MIN_HEADER_WORDS..=MAX_HEADER_WORDS).contains(&words) {
            return Err(FrameError::HeaderLengthOutOfRange { words });
        }
        let len = u32_at(raw, 2);
        if len > self.max_payload_bytes {
            return Err(FrameError::PayloadTooLarge {
                len,
                max: self.max_payload_bytes,
            });
        }
        Ok(())
    }

    fn release_returned(&mut self) {
        self.start += self.returned_len;
        self.returned_len = 0;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > RETAINED_BUFFER_BYTES_MAX.max(self.initial_capacity) {
                // A large frame is gone: its room goes back to the allocator instead of
                // staying with an idle relay (one per worker and shard).
                self.buf = Vec::with_capacity(self.initial_capacity);
            }
        }
    }

    /// Makes room for `additional` bytes, moving undecoded bytes to the front rather than
    /// growing when that is enough.
    fn make_room(&mut self, additional: usize) {
        let spare = self.buf.capacity() - self.buf.len();
        if spare >= additional {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(additional);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Flags, StreamFlags};

    fn encoded(flags: Flags, options: &[u32], payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader::with_options(flags, options, payload.len() as u32).unwrap();
        let mut out = Vec::new();
        header.encode_frame_into(payload, &mut out).unwrap();
        out
    }

    #[test]
    fn one_byte_at_a_time() {
        let bytes = encoded(Flags::CODEC_JSON, &[2], b"{}body");
        let mut decoder = FrameDecoder::default();
        for (index, byte) in bytes.iter().enumerate() {
            decoder.feed(std::slice::from_ref(byte));
            let frame = decoder.next_frame().unwrap();
            if index + 1 < bytes.len() {
                assert!(frame.is_none(), "frame before byte {index}");
            } else {
                let frame = frame.unwrap();
                assert_eq!(frame.header.options(), [2]);
                assert_eq!(frame.payload, b"{}body");
            }
        }
        assert_eq!(decoder.next_frame().unwrap(), None);
        decoder.finish().unwrap();
    }

    #[test]
    fn several_frames_in_one_feed() {
        let mut bytes = encoded(Flags::EMPTY, &[0], b"one");
        bytes.extend(encoded(Flags::ERROR, &[], b"two"));
        let mut decoder = FrameDecoder::default();
        decoder.feed(&bytes);
        assert_eq!(decoder.next_frame().unwrap().unwrap().payload, b"one");
        let second = decoder.next_frame().unwrap().unwrap();
        assert_eq!(
            (second.header.flags, second.payload),
            (Flags::ERROR, &b"two"[..])
        );
        assert_eq!(decoder.next_frame().unwrap(), None);
        assert_eq!(decoder.buffered_len(), 0);
    }

    #[test]
    fn bad_crc_names_the_stray_text_and_sticks() {
        let mut decoder = FrameDecoder::default();
        decoder.feed(b"Hello world! this was echoed");
        let error = decoder.next_frame().unwrap_err();
        assert!(matches!(error, FrameError::BadCrc { .. }));
        assert!(error.to_string().contains("\"Hello world!\""), "{error}");
        assert_eq!(decoder.next_frame().unwrap_err(), error);
        assert_eq!(decoder.finish().unwrap_err(), error);
    }

    #[test]
    fn header_length_out_of_range() {
        for words in [0u8, 1, 2, 14, 15] {
            let mut raw = [0x10 | words, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let crc = header_crc(&[raw[0], 0, 0, 0, 0, 0]);
            raw[6..10].copy_from_slice(&crc.to_le_bytes());
            let mut decoder = FrameDecoder::default();
            decoder.feed(&raw);
            assert_eq!(
                decoder.next_frame(),
                Err(FrameError::HeaderLengthOutOfRange { words })
            );
        }
    }

    #[test]
    fn payload_over_the_limit_is_refused_before_it_arrives() {
        let mut decoder = FrameDecoder::new(16);
        let header = FrameHeader::new(Flags::EMPTY, 17).encode();
        decoder.feed(header.as_bytes());
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::PayloadTooLarge { len: 17, max: 16 })
        );
    }

    #[test]
    fn script_not_found_is_reported_at_eof() {
        let mut decoder = FrameDecoder::default();
        decoder.feed(b"Could not open inpu");
        assert_eq!(decoder.next_frame(), Ok(None));
        assert!(decoder.is_collecting_stray_output());
        decoder.feed(b"t file: worker.php\n");
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(FrameError::ScriptNotFound {
                output: "Could not open input file: worker.php".into()
            })
        );
    }

    #[test]
    fn stray_output_is_bounded() {
        let mut decoder = FrameDecoder::default();
        decoder.feed(b"Could not op");
        assert_eq!(decoder.next_frame(), Ok(None));
        for _ in 0..100 {
            decoder.feed(&[b'x'; 4096]);
        }
        let mut lent = decoder.take_read_buffer(4096);
        lent.extend_from_slice(&[b'y'; 4096]);
        decoder.restore_read_buffer(lent);
        let Err(FrameError::ScriptNotFound { output }) = decoder.finish() else {
            panic!()
        };
        assert_eq!(output.len(), MAX_STRAY_OUTPUT_BYTES);
    }

    #[test]
    fn truncated_frame_at_eof() {
        let bytes = encoded(Flags::EMPTY, &[0], b"abcdef");
        let mut decoder = FrameDecoder::default();
        decoder.feed(&bytes[..10]);
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(FrameError::Truncated { buffered: 10 })
        );
    }

    #[test]
    fn the_room_of_a_large_frame_is_released_once_it_is_taken() {
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_PAYLOAD_BYTES);
        let frame = encoded(Flags::EMPTY, &[0], &vec![b'x'; 4 << 20]);
        // Read as a relay reads: the header first, then the rest in 64 KiB reads.
        decoder.feed(&frame[..16]);
        assert!(decoder.next_frame().unwrap().is_none());
        for chunk in frame[16..].chunks(64 * 1024) {
            let mut lent = decoder.take_read_buffer(64 * 1024);
            lent.extend_from_slice(chunk);
            decoder.restore_read_buffer(lent);
            assert!(
                decoder.buffer_capacity() < frame.len() + 64,
                "sized once, never doubled"
            );
        }
        assert_eq!(
            decoder.next_frame().unwrap().unwrap().payload.len(),
            4 << 20
        );
        let lent = decoder.take_read_buffer(64);
        assert!(
            lent.capacity() <= RETAINED_BUFFER_BYTES_MAX,
            "{}",
            lent.capacity()
        );
        decoder.restore_read_buffer(lent);
        assert!(decoder.next_frame().unwrap().is_none());
    }

    #[test]
    fn lent_buffer_round_trip() {
        let bytes = encoded(Flags::EMPTY, &[0], b"payload").repeat(3);
        let mut decoder = FrameDecoder::default();
        decoder.feed(&bytes[..5]);
        let mut lent = decoder.take_read_buffer(64);
        assert_eq!(lent, bytes[..5]);
        assert!(lent.capacity() - lent.len() >= 64);
        lent.extend_from_slice(&bytes[5..]);
        decoder.restore_read_buffer(lent);
        for _ in 0..3 {
            assert_eq!(decoder.next_frame().unwrap().unwrap().payload, b"payload");
        }
        assert_eq!(decoder.next_frame(), Ok(None));
    }

    #[test]
    fn stream_byte_and_reserved_byte_survive() {
        let mut header = FrameHeader::with_options(Flags::EMPTY, &[0], 1).unwrap();
        header = header.with_stream(StreamFlags::STREAM | StreamFlags::PING);
        header.reserved = 0xAB;
        let mut bytes = Vec::new();
        header.encode_frame_into(b"x", &mut bytes).unwrap();
        let mut decoder = FrameDecoder::default();
        decoder.feed(&bytes);
        assert_eq!(decoder.next_frame().unwrap().unwrap().header, header);
    }
}
