//! The goridge frame (spec relay-protocol §1).

mod decoder;
mod flags;
mod header;

pub use decoder::{Frame, FrameDecoder, DEFAULT_MAX_PAYLOAD_BYTES, MAX_STRAY_OUTPUT_BYTES};
pub use flags::{Flags, StreamFlags};
pub use header::{
    header_crc, EncodedHeader, FrameHeader, BASE_HEADER_BYTES, MAX_HEADER_BYTES, MAX_OPTIONS,
    VERSION,
};

use std::fmt;

/// Every way a frame can be bad, or be asked for that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header CRC does not match bytes 0..6 (§1.8 step 4). The relay can no longer be
    /// trusted; the usual cause is a worker that printed to STDOUT.
    #[error("invalid frame header CRC (expected {expected:#010x}, got {actual:#010x}); header bytes {}; the worker probably wrote to STDOUT: see https://docs.roadrunner.dev/error-codes/stdout-crc", Printable(header))]
    BadCrc {
        /// The first 12 bytes as received.
        header: [u8; BASE_HEADER_BYTES],
        /// CRC computed over bytes 0..6.
        expected: u32,
        /// CRC stored at bytes 6..10.
        actual: u32,
    },
    /// Header length nibble outside 3..=13 (§1.6).
    #[error("invalid frame header length: {words} words (valid: 3 to 13)")]
    HeaderLengthOutOfRange {
        /// The low nibble of byte 0.
        words: u8,
    },
    /// Payload length above the decoder's limit (§1.7).
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Length announced by the header.
        len: u32,
        /// The decoder's limit.
        max: u32,
    },
    /// The relay began with PHP CLI's "Could not open input file: …" (§1.8 step 2).
    #[error("worker script not found: {output}")]
    ScriptNotFound {
        /// Everything the worker wrote, up to [`MAX_STRAY_OUTPUT_BYTES`].
        output: String,
    },
    /// The relay closed in the middle of a frame.
    #[error("relay closed in the middle of a frame ({buffered} bytes received of it)")]
    Truncated {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
    /// More than 10 options asked of the encoder.
    #[error("a frame carries at most 10 options, {count} given")]
    TooManyOptions {
        /// Options asked for.
        count: usize,
    },
    /// A payload larger than the u32 length field can describe.
    #[error("payload of {len} bytes does not fit a frame")]
    PayloadTooLong {
        /// Payload bytes asked for.
        len: usize,
    },
    /// The payload handed to the encoder is not as long as its header says.
    #[error("payload is {actual} bytes but the header says {header}")]
    PayloadLengthMismatch {
        /// Length in the header.
        header: u32,
        /// Length of the slice.
        actual: usize,
    },
}

/// Shows raw header bytes as hex and, since they are usually stray text, as text too.
struct Printable<'a>(&'a [u8]);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(" (\"")?;
        for &byte in self.0 {
            let printable = byte.is_ascii_graphic() || byte == b' ';
            if printable {
                write!(f, "{}", byte as char)?;
            } else {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        f.write_str("\")")
    }
}
