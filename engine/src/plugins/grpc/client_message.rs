//! A gRPC client's request message on the wire: the 5-byte prefix and the message, gzip
//! compressed when asked. The gRPC clients (otel's OTLP export, centrifuge's API calls)
//! share it.

use flate2::write::GzEncoder;
use ringrunner_protocol::grpc::{Prefix, PREFIX_LEN};
use std::io::Write;

/// Why a message could not be framed.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The compressor failed.
    Io(std::io::Error),
    /// Past the prefix's 32-bit length.
    TooLarge,
}

/// The length-prefixed message, gzip-compressed (and flagged so) when `gzip`.
pub(crate) fn framed_message(message: &[u8], gzip: bool) -> Result<Vec<u8>, FrameError> {
    let compressed;
    let payload = if gzip {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(message).map_err(FrameError::Io)?;
        compressed = encoder.finish().map_err(FrameError::Io)?;
        &compressed[..]
    } else {
        message
    };
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge)?;
    let mut framed = Vec::with_capacity(PREFIX_LEN + payload.len());
    framed.extend_from_slice(
        &Prefix {
            compressed: gzip,
            len,
        }
        .to_bytes(),
    );
    framed.extend_from_slice(payload);
    Ok(framed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_message_is_prefixed_and_compressed_when_asked() {
        let plain = framed_message(b"hello", false).unwrap();
        assert_eq!(plain, b"\0\0\0\0\x05hello");
        let gzipped = framed_message(b"hello", true).unwrap();
        assert_eq!(gzipped[0], 1);
        let len = u32::from_be_bytes(gzipped[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, gzipped.len() - PREFIX_LEN);
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&gzipped[PREFIX_LEN..])
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, b"hello");
    }
}
