//! The frame header (spec relay-protocol §1.1–§1.6) and its encoder.

use super::{Flags, FrameError, StreamFlags};

/// The frame version every sender writes (§1.2).
pub const VERSION: u8 = 1;
/// A header without options: 3 words.
pub const BASE_HEADER_BYTES: usize = 12;
/// The most options a header may carry (§1.6).
pub const MAX_OPTIONS: usize = 10;
/// The largest header: 13 words.
pub const MAX_HEADER_BYTES: usize = BASE_HEADER_BYTES + 4 * MAX_OPTIONS;
/// Header length in words without options.
pub(crate) const MIN_HEADER_WORDS: u8 = 3;
/// Header length in words with [`MAX_OPTIONS`] options.
pub(crate) const MAX_HEADER_WORDS: u8 = 3 + MAX_OPTIONS as u8;

/// CRC-32/ISO-HDLC (zlib, PHP `crc32()`) of header bytes 0..6 (§1.5).
#[must_use]
pub fn header_crc(first_six: &[u8; 6]) -> u32 {
    crc32fast::hash(first_six)
}

/// Everything in a frame but its payload.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The version nibble. Senders write [`VERSION`]; receivers accept any value (§1.2).
    pub version: u8,
    /// The flags byte.
    pub flags: Flags,
    /// The stream byte (offset 10).
    pub stream: StreamFlags,
    /// Byte 11: senders write 0, receivers ignore it. Kept so a decoded frame re-encodes as is.
    pub reserved: u8,
    /// Payload length in bytes.
    pub payload_len: u32,
    options: [u32; MAX_OPTIONS],
    option_count: u8,
}

impl FrameHeader {
    /// A version-1 header without options.
    #[must_use]
    pub const fn new(flags: Flags, payload_len: u32) -> Self {
        Self {
            version: VERSION,
            flags,
            stream: StreamFlags::EMPTY,
            reserved: 0,
            payload_len,
            options: [0; MAX_OPTIONS],
            option_count: 0,
        }
    }

    /// A version-1 header with the given options.
    ///
    /// # Errors
    /// [`FrameError::TooManyOptions`] when more than [`MAX_OPTIONS`] are given.
    pub fn with_options(
        flags: Flags,
        options: &[u32],
        payload_len: u32,
    ) -> Result<Self, FrameError> {
        let mut header = Self::new(flags, payload_len);
        header.set_options(options)?;
        Ok(header)
    }

    /// Replaces the options.
    ///
    /// # Errors
    /// [`FrameError::TooManyOptions`] when more than [`MAX_OPTIONS`] are given.
    pub fn set_options(&mut self, options: &[u32]) -> Result<(), FrameError> {
        if options.len() > MAX_OPTIONS {
            return Err(FrameError::TooManyOptions {
                count: options.len(),
            });
        }
        self.options[..options.len()].copy_from_slice(options);
        self.options[options.len()..].fill(0);
        // Checked just above: at most MAX_OPTIONS (10), fits a u8.
        self.option_count = options.len() as u8;
        Ok(())
    }

    /// `self` with the stream byte set to `stream`.
    #[must_use]
    pub const fn with_stream(mut self, stream: StreamFlags) -> Self {
        self.stream = stream;
        self
    }

    /// The options, in order.
    #[must_use]
    pub fn options(&self) -> &[u32] {
        &self.options[..usize::from(self.option_count)]
    }

    /// Header length in 32-bit words (the low nibble of byte 0): 3 + options.
    #[must_use]
    pub const fn header_words(&self) -> u8 {
        MIN_HEADER_WORDS + self.option_count
    }

    /// Header length in bytes, options included.
    #[must_use]
    pub const fn header_len(&self) -> usize {
        4 * self.header_words() as usize
    }

    /// Header plus payload, in bytes.
    #[must_use]
    pub const fn frame_len(&self) -> usize {
        self.header_len() + self.payload_len as usize
    }

    /// Writes the header (CRC included) into a fixed buffer, so the caller can send it with
    /// the payload parts as one vectored write without copying the payload (§1.9).
    #[must_use]
    pub fn encode(&self) -> EncodedHeader {
        let mut bytes = [0u8; MAX_HEADER_BYTES];
        bytes[0] = (self.version << 4) | self.header_words();
        bytes[1] = self.flags.bits();
        bytes[2..6].copy_from_slice(&self.payload_len.to_le_bytes());
        let crc = header_crc(&[bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]]);
        bytes[6..10].copy_from_slice(&crc.to_le_bytes());
        bytes[10] = self.stream.bits();
        bytes[11] = self.reserved;
        for (slot, option) in bytes[BASE_HEADER_BYTES..]
            .chunks_exact_mut(4)
            .zip(self.options())
        {
            slot.copy_from_slice(&option.to_le_bytes());
        }
        EncodedHeader {
            bytes,
            len: self.header_len() as u8,
        }
    }

    /// Appends header and payload to `out`: the whole frame as one contiguous unit.
    ///
    /// # Errors
    /// [`FrameError::PayloadLengthMismatch`] when `payload` is not `payload_len` bytes long.
    pub fn encode_frame_into(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        if payload.len() != self.payload_len as usize {
            return Err(FrameError::PayloadLengthMismatch {
                header: self.payload_len,
                actual: payload.len(),
            });
        }
        out.reserve(self.frame_len());
        out.extend_from_slice(self.encode().as_bytes());
        out.extend_from_slice(payload);
        Ok(())
    }

    /// Builds a header from the fields of an already validated raw header.
    pub(crate) fn from_validated(raw: &[u8]) -> Self {
        debug_assert!(raw.len() >= BASE_HEADER_BYTES && raw.len().is_multiple_of(4));
        let mut header = Self::new(Flags(raw[1]), u32_at(raw, 2));
        header.version = raw[0] >> 4;
        header.stream = StreamFlags(raw[10]);
        header.reserved = raw[11];
        let count = (raw.len() - BASE_HEADER_BYTES) / 4;
        for (index, option) in header.options[..count].iter_mut().enumerate() {
            *option = u32_at(raw, BASE_HEADER_BYTES + 4 * index);
        }
        header.option_count = count as u8;
        header
    }
}

impl std::fmt::Debug for FrameHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameHeader")
            .field("version", &self.version)
            .field("flags", &self.flags)
            .field("stream", &self.stream)
            .field("options", &self.options())
            .field("payload_len", &self.payload_len)
            .finish()
    }
}

/// An encoded header: 12 to 52 bytes in a fixed array, no allocation.
#[derive(Clone, Copy)]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER_BYTES],
    len: u8,
}

impl EncodedHeader {
    /// The header bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for EncodedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncodedHeader(")?;
        for byte in self.as_bytes() {
            write!(f, "{byte:02x}")?;
        }
        write!(f, ")")
    }
}

impl AsRef<[u8]> for EncodedHeader {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

pub(crate) fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes([
        bytes[offset],
        bytes[offset + 1],
        bytes[offset + 2],
        bytes[offset + 3],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value_and_spec_example() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        // spec §1.5: header bytes 13 00 00 00 00 00 -> CRC 0x3480D196.
        assert_eq!(header_crc(&[0x13, 0, 0, 0, 0, 0]), 0x3480_D196);
    }

    #[test]
    fn bare_header_layout() {
        let header = FrameHeader::new(Flags::EMPTY, 0).with_stream(StreamFlags::PONG);
        assert_eq!(
            header.encode().as_bytes(),
            [0x13, 0, 0, 0, 0, 0, 0x96, 0xd1, 0x80, 0x34, 0x08, 0]
        );
    }

    #[test]
    fn options_follow_the_base_header() {
        let header = FrameHeader::with_options(Flags::CODEC_JSON, &[1, 16], 22).unwrap();
        let encoded = header.encode();
        assert_eq!(encoded.as_bytes().len(), 20);
        assert_eq!(encoded.as_bytes()[0], 0x15);
        assert_eq!(&encoded.as_bytes()[12..], [1, 0, 0, 0, 16, 0, 0, 0]);
        assert_eq!(FrameHeader::from_validated(encoded.as_bytes()), header);
    }

    #[test]
    fn at_most_ten_options() {
        assert!(FrameHeader::with_options(Flags::EMPTY, &[7; 10], 0).is_ok());
        assert_eq!(
            FrameHeader::with_options(Flags::EMPTY, &[7; 11], 0),
            Err(FrameError::TooManyOptions { count: 11 })
        );
    }

    #[test]
    fn encode_frame_checks_the_payload_length() {
        let mut out = Vec::new();
        let header = FrameHeader::new(Flags::EMPTY, 3);
        assert!(header.encode_frame_into(b"ab", &mut out).is_err());
        header.encode_frame_into(b"abc", &mut out).unwrap();
        assert_eq!(out.len(), 15);
    }
}
