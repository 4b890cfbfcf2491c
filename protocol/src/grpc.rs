//! gRPC over HTTP/2, the sans-IO parts (spec grpc; the wire format is gRPC's
//! "PROTOCOL-HTTP2"): the 5-byte message prefix and a unary request reader with a size
//! limit checked before the message is buffered, `grpc-timeout` values, the percent-encoding
//! of `grpc-message`, status codes with grpc-go's names, and `google.rpc.Status`.

use std::time::Duration;

/// Bytes of the prefix before every message: a compressed flag and a big-endian length.
pub const PREFIX_LEN: usize = 5;

/// Why a request's messages could not be read; each maps to the status grpc-go answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The prefix announces a message past the limit (nothing of it was buffered).
    #[error("grpc: received message larger than max ({len} vs. {max})")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The compressed flag is set, but the call named no encoding (or `identity`).
    #[error("grpc: compressed flag set with identity or empty encoding")]
    CompressedWithoutEncoding,
    /// A flag byte other than 0 or 1.
    #[error("grpc: invalid compressed flag {0}")]
    BadFlag(u8),
    /// The stream ended inside a prefix or a message, or without any message.
    #[error("unexpected EOF")]
    Truncated,
    /// A unary call's stream carried a second message.
    #[error("grpc: received more than one request message for a unary method")]
    SecondMessage,
}

impl FramingError {
    /// The status a client gets for it.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            Self::TooLarge { .. } => Code::ResourceExhausted,
            Self::CompressedWithoutEncoding
            | Self::BadFlag(_)
            | Self::Truncated
            | Self::SecondMessage => Code::Internal,
        }
    }
}

/// A message's prefix: whether it is compressed, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The compressed flag.
    pub compressed: bool,
    /// Bytes of message that follow.
    pub len: u32,
}

impl Prefix {
    /// Reads a prefix.
    ///
    /// # Errors
    /// A flag byte other than 0 or 1.
    pub fn parse(bytes: [u8; PREFIX_LEN]) -> Result<Self, FramingError> {
        let compressed = match bytes[0] {
            0 => false,
            1 => true,
            other => return Err(FramingError::BadFlag(other)),
        };
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        Ok(Self { compressed, len })
    }

    /// The prefix of an uncompressed message of `len` bytes.
    #[must_use]
    pub fn encode(len: u32) -> [u8; PREFIX_LEN] {
        Self {
            compressed: false,
            len,
        }
        .to_bytes()
    }

    /// This prefix's five bytes: the compressed flag, then the big-endian length.
    #[must_use]
    pub fn to_bytes(self) -> [u8; PREFIX_LEN] {
        let [a, b, c, d] = self.len.to_be_bytes();
        [u8::from(self.compressed), a, b, c, d]
    }
}

/// Reads the one message of a unary request from the DATA frames as they arrive: the
/// prefix is checked against `max_len` as soon as its five bytes are in, so an oversize
/// message is refused before any of it is kept, and a message is buffered only up to the
/// length its prefix announced.
#[derive(Debug)]
pub struct UnaryReader {
    max_len: u64,
    /// Whether the call named a message encoding other than `identity`.
    encoded: bool,
    prefix: [u8; PREFIX_LEN],
    prefix_filled: usize,
    /// Set once the prefix is read.
    announced: Option<Prefix>,
    message: Vec<u8>,
}

impl UnaryReader {
    /// A reader for messages of at most `max_len` bytes; `encoded`: the call's
    /// `grpc-encoding` is set and not `identity`.
    #[must_use]
    pub fn new(max_len: u64, encoded: bool) -> Self {
        Self {
            max_len,
            encoded,
            prefix: [0; PREFIX_LEN],
            prefix_filled: 0,
            announced: None,
            message: Vec::new(),
        }
    }

    /// Takes the next bytes of the request body.
    ///
    /// # Errors
    /// An oversize message, a bad or unsupported flag, or bytes past the first message.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), FramingError> {
        while !bytes.is_empty() {
            let Some(prefix) = self.announced else {
                let take = (PREFIX_LEN - self.prefix_filled).min(bytes.len());
                self.prefix[self.prefix_filled..self.prefix_filled + take]
                    .copy_from_slice(&bytes[..take]);
                self.prefix_filled += take;
                bytes = &bytes[take..];
                if self.prefix_filled == PREFIX_LEN {
                    self.announce()?;
                }
                continue;
            };
            let wanted = prefix.len as usize - self.message.len();
            if wanted == 0 {
                return Err(FramingError::SecondMessage);
            }
            let take = wanted.min(bytes.len());
            self.message.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    fn announce(&mut self) -> Result<(), FramingError> {
        let prefix = Prefix::parse(self.prefix)?;
        if u64::from(prefix.len) > self.max_len {
            return Err(FramingError::TooLarge {
                len: u64::from(prefix.len),
                max: self.max_len,
            });
        }
        if prefix.compressed && !self.encoded {
            return Err(FramingError::CompressedWithoutEncoding);
        }
        self.message = Vec::with_capacity(prefix.len as usize);
        self.announced = Some(prefix);
        Ok(())
    }

    /// The request once its stream ended: the message and whether it is compressed.
    ///
    /// # Errors
    /// A stream that ended without a whole message.
    pub fn finish(self) -> Result<(Vec<u8>, bool), FramingError> {
        match self.announced {
            Some(prefix) if self.message.len() == prefix.len as usize => {
                Ok((self.message, prefix.compressed))
            }
            _ => Err(FramingError::Truncated),
        }
    }
}

/// Takes the first whole message off `buffer` (a stream's bytes so far), for calls that
/// carry several (server reflection's bidirectional stream); None until one is whole. The
/// prefix is checked against `max_len` as soon as it is in.
///
/// # Errors
/// A message past `max_len`, a compressed or bad flag.
pub fn take_message(buffer: &mut Vec<u8>, max_len: u64) -> Result<Option<Vec<u8>>, FramingError> {
    let Some(prefix) = buffer.first_chunk::<PREFIX_LEN>() else {
        return Ok(None);
    };
    let prefix = Prefix::parse(*prefix)?;
    if u64::from(prefix.len) > max_len {
        return Err(FramingError::TooLarge {
            len: u64::from(prefix.len),
            max: max_len,
        });
    }
    if prefix.compressed {
        return Err(FramingError::CompressedWithoutEncoding);
    }
    let end = PREFIX_LEN + prefix.len as usize;
    if buffer.len() < end {
        return Ok(None);
    }
    let message = buffer[PREFIX_LEN..end].to_vec();
    buffer.drain(..end);
    Ok(Some(message))
}

/// Reads a `grpc-timeout` value: at most 8 ASCII digits and a unit (`H M S m u n`). None
/// for anything else (the caller then serves the call without a deadline).
#[must_use]
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Percent-encodes a status message for `grpc-message`: every byte outside the printable
/// ASCII range, and `%` itself, becomes `%XX` (the message is UTF-8 underneath).
#[must_use]
pub fn encode_message(message: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(message.len());
    for &byte in message.as_bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 15)]));
        }
    }
    out
}

/// Reads back a `grpc-message`: `%XX` sequences decoded, anything malformed kept as it is
/// (as grpc-go does), invalid UTF-8 replaced.
#[must_use]
pub fn decode_message(encoded: &[u8]) -> String {
    let hex = |byte: u8| char::from(byte).to_digit(16);
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        if encoded[i] == b'%' && i + 2 < encoded.len() {
            if let (Some(high), Some(low)) = (hex(encoded[i + 1]), hex(encoded[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(encoded[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// gRPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// The code of a number; anything out of range is `Unknown`, as grpc-go reads it.
    #[must_use]
    pub fn from_i32(code: i32) -> Self {
        const ALL: [Code; 17] = [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ];
        usize::try_from(code)
            .ok()
            .and_then(|index| ALL.get(index).copied())
            .unwrap_or(Code::Unknown)
    }

    /// grpc-go's name for it (`NotFound`), as rr's error log lines print it.
    #[must_use]
    pub fn go_name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Cancelled => "Canceled",
            Self::Unknown => "Unknown",
            Self::InvalidArgument => "InvalidArgument",
            Self::DeadlineExceeded => "DeadlineExceeded",
            Self::NotFound => "NotFound",
            Self::AlreadyExists => "AlreadyExists",
            Self::PermissionDenied => "PermissionDenied",
            Self::ResourceExhausted => "ResourceExhausted",
            Self::FailedPrecondition => "FailedPrecondition",
            Self::Aborted => "Aborted",
            Self::OutOfRange => "OutOfRange",
            Self::Unimplemented => "Unimplemented",
            Self::Internal => "Internal",
            Self::Unavailable => "Unavailable",
            Self::DataLoss => "DataLoss",
            Self::Unauthenticated => "Unauthenticated",
        }
    }
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    /// `type.googleapis.com/<full name>`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The message's bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.Status`: what a PHP `GRPCException` sends (base64 in the `error` header) and
/// what `grpc-status-details-bin` carries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// The code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = Prefix::encode(u32::try_from(message.len()).unwrap()).to_vec();
        out.extend_from_slice(message);
        out
    }

    #[test]
    fn an_oversize_prefix_is_refused_before_its_message_arrives() {
        let mut reader = UnaryReader::new(1_048_576, false);
        let prefix = Prefix::encode(2_097_157);
        assert_eq!(reader.feed(&prefix[..3]), Ok(()));
        assert_eq!(
            reader.feed(&prefix[3..]),
            Err(FramingError::TooLarge {
                len: 2_097_157,
                max: 1_048_576
            })
        );
        assert_eq!(
            FramingError::TooLarge {
                len: 2_097_157,
                max: 1_048_576
            }
            .to_string(),
            "grpc: received message larger than max (2097157 vs. 1048576)"
        );
    }

    #[test]
    fn a_compressed_flag_needs_an_encoding() {
        let mut reader = UnaryReader::new(100, false);
        assert_eq!(
            reader.feed(&[1, 0, 0, 0, 1, b'x']),
            Err(FramingError::CompressedWithoutEncoding)
        );
        let mut reader = UnaryReader::new(100, true);
        reader.feed(&[1, 0, 0, 0, 1, b'x']).unwrap();
        assert_eq!(reader.finish(), Ok((b"x".to_vec(), true)));
        assert_eq!(
            UnaryReader::new(9, false).feed(&[7, 0, 0, 0, 0]),
            Err(FramingError::BadFlag(7))
        );
    }

    #[test]
    fn a_lying_length_or_a_second_message_fails() {
        let mut reader = UnaryReader::new(100, false);
        reader.feed(&[0, 0, 0, 0, 10, b'a', b'b']).unwrap();
        assert_eq!(reader.finish(), Err(FramingError::Truncated));
        assert_eq!(
            UnaryReader::new(100, false).finish(),
            Err(FramingError::Truncated)
        );
        let mut reader = UnaryReader::new(100, false);
        let mut two = framed(b"one");
        two.extend(framed(b"two"));
        assert_eq!(reader.feed(&two), Err(FramingError::SecondMessage));
        let mut empty = UnaryReader::new(0, false);
        empty.feed(&framed(b"")).unwrap();
        assert_eq!(empty.finish(), Ok((Vec::new(), false)));
    }

    #[test]
    fn messages_are_taken_off_a_stream_one_by_one() {
        let mut buffer = framed(b"one");
        buffer.extend(framed(b"two"));
        buffer.extend(&framed(b"three")[..4]);
        assert_eq!(take_message(&mut buffer, 10), Ok(Some(b"one".to_vec())));
        assert_eq!(take_message(&mut buffer, 10), Ok(Some(b"two".to_vec())));
        assert_eq!(take_message(&mut buffer, 10), Ok(None));
        buffer.extend(&framed(b"three")[4..]);
        assert_eq!(take_message(&mut buffer, 10), Ok(Some(b"three".to_vec())));
        assert!(buffer.is_empty());
        let mut big = Prefix::encode(11).to_vec();
        assert_eq!(
            take_message(&mut big, 10),
            Err(FramingError::TooLarge { len: 11, max: 10 })
        );
    }

    #[test]
    fn timeouts_read_as_grpc_writes_them() {
        assert_eq!(parse_timeout(b"500m"), Some(Duration::from_millis(500)));
        assert_eq!(parse_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [&b""[..], b"m", b"123456789m", b"1x", b"-1S", b"1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn messages_are_percent_encoded_outside_printable_ascii() {
        assert_eq!(encode_message("thing k42 not found"), "thing k42 not found");
        assert_eq!(encode_message("50% ü\n"), "50%25 %C3%BC%0A");
        assert_eq!(decode_message(b"50%25 %C3%BC%0A"), "50% ü\n");
        assert_eq!(decode_message(b"%zz%4"), "%zz%4");
    }

    #[test]
    fn codes_have_grpc_go_names() {
        assert_eq!(Code::from_i32(5), Code::NotFound);
        assert_eq!(Code::from_i32(99), Code::Unknown);
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::NotFound.go_name(), "NotFound");
    }

    proptest! {
        #[test]
        fn any_split_of_a_framed_message_reads_back(
            message in proptest::collection::vec(any::<u8>(), 0..600),
            split in 0usize..700,
        ) {
            let wire = framed(&message);
            let split = split.min(wire.len());
            let mut reader = UnaryReader::new(600, false);
            reader.feed(&wire[..split]).unwrap();
            reader.feed(&wire[split..]).unwrap();
            prop_assert_eq!(reader.finish(), Ok((message, false)));
        }

        #[test]
        fn arbitrary_bytes_never_panic_nor_buffer_past_the_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            max in 0u64..128,
        ) {
            let mut reader = UnaryReader::new(max, false);
            let _ = reader.feed(&bytes);
            prop_assert!(reader.message.capacity() as u64 <= max);
            let _ = reader.finish();
        }

        #[test]
        fn encoded_messages_decode_back(text in ".*") {
            let encoded = encode_message(&text);
            prop_assert!(encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode_message(encoded.as_bytes()), text);
        }
    }
}
