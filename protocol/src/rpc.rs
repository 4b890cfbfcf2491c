//! goridge RPC framing (spec relay-protocol §6): a request frame carries the sequence number
//! and the method-name length as its two options; the payload is the method name followed by
//! the encoded argument. The reply echoes both.
//!
//! Work: constant per frame beyond the frame decoder's single pass over its bytes (the
//! method name is a slice of the payload; nothing is searched).

use crate::frame::{EncodedHeader, Flags, Frame, FrameError, FrameHeader};
use std::fmt;

/// The one codec a request resolves to (§6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Protocol Buffers (0x80).
    Proto,
    /// JSON (0x08); the PHP client's default.
    Json,
    /// Raw bytes (0x04).
    Raw,
    /// MessagePack (0x10).
    Msgpack,
    /// Go gob (0x20); also what a request with no codec bit resolves to.
    Gob,
}

impl Codec {
    /// Resolves the codec of a request from its flags: PROTO, then JSON, RAW, MSGPACK, GOB;
    /// none of these means GOB (§6.4).
    #[must_use]
    pub fn resolve(flags: Flags) -> Self {
        [
            (Flags::CODEC_PROTO, Self::Proto),
            (Flags::CODEC_JSON, Self::Json),
            (Flags::CODEC_RAW, Self::Raw),
            (Flags::CODEC_MSGPACK, Self::Msgpack),
            (Flags::CODEC_GOB, Self::Gob),
        ]
        .into_iter()
        .find(|(bit, _)| flags.contains(*bit))
        .map_or(Self::Gob, |(_, codec)| codec)
    }

    /// The flag bit of this codec.
    #[must_use]
    pub const fn flag(self) -> Flags {
        match self {
            Self::Proto => Flags::CODEC_PROTO,
            Self::Json => Flags::CODEC_JSON,
            Self::Raw => Flags::CODEC_RAW,
            Self::Msgpack => Flags::CODEC_MSGPACK,
            Self::Gob => Flags::CODEC_GOB,
        }
    }
}

/// An RPC frame whose header cannot be processed; RoadRunner closes the connection without a
/// reply (§6.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcFrameError {
    /// RPC frames carry exactly two options.
    #[error("RPC frame carries {count} options, expected 2 (sequence, method length)")]
    OptionCount {
        /// Options carried.
        count: usize,
    },
    /// Option 1 is larger than the payload.
    #[error("method name length {method_len} exceeds payload length {payload_len}")]
    MethodLengthOutOfRange {
        /// Option 1.
        method_len: u32,
        /// Payload length.
        payload_len: usize,
    },
    /// The reply does not fit a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// A method call that cannot be routed; the texts are Go `net/rpc`'s (§6.5), sent back in an
/// ERROR reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcCallError {
    /// No dot in the method name.
    #[error("rpc: service/method request ill-formed: {0}")]
    IllFormed(String),
    /// No such service.
    #[error("rpc: can't find service {0}")]
    NoService(String),
    /// The service has no such method.
    #[error("rpc: can't find method {0}")]
    NoMethod(String),
}

/// One decoded RPC message, request or reply.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RpcMessage<'a> {
    /// Option 0, echoed in the reply.
    pub seq: u32,
    /// The flags byte as sent.
    pub flags: Flags,
    /// `Service.Method`, as sent (echoed byte for byte).
    pub method: &'a [u8],
    /// The encoded argument or reply; the error text when ERROR is set.
    pub body: &'a [u8],
}

impl<'a> RpcMessage<'a> {
    /// Splits an RPC frame (§6.2, §6.3).
    ///
    /// # Errors
    /// [`RpcFrameError::OptionCount`] or [`RpcFrameError::MethodLengthOutOfRange`].
    pub fn from_frame(frame: &Frame<'a>) -> Result<Self, RpcFrameError> {
        let [seq, method_len] = frame.header.options() else {
            return Err(RpcFrameError::OptionCount {
                count: frame.header.options().len(),
            });
        };
        let Some((method, body)) = frame.payload.split_at_checked(*method_len as usize) else {
            return Err(RpcFrameError::MethodLengthOutOfRange {
                method_len: *method_len,
                payload_len: frame.payload.len(),
            });
        };
        Ok(Self {
            seq: *seq,
            flags: frame.header.flags,
            method,
            body,
        })
    }

    /// The codec of a request, and of its reply (§6.4).
    #[must_use]
    pub fn codec(&self) -> Codec {
        Codec::resolve(self.flags)
    }

    /// True for an error reply.
    #[must_use]
    pub fn is_error(&self) -> bool {
        self.flags.contains(Flags::ERROR)
    }

    /// Splits `Service.Method` at its last dot, as Go `net/rpc` does.
    ///
    /// # Errors
    /// [`RpcCallError::IllFormed`] when there is no dot or the name is not UTF-8.
    pub fn service_method(&self) -> Result<(&'a str, &'a str), RpcCallError> {
        let name = std::str::from_utf8(self.method).map_err(|_| {
            RpcCallError::IllFormed(String::from_utf8_lossy(self.method).into_owned())
        })?;
        name.rsplit_once('.')
            .ok_or_else(|| RpcCallError::IllFormed(name.to_owned()))
    }
}

impl fmt::Debug for RpcMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcMessage")
            .field("seq", &self.seq)
            .field("flags", &self.flags)
            .field("method", &String::from_utf8_lossy(self.method))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The header of an RPC frame: write it, the method name and the body as one vectored
/// write. A request passes its codec bits as `flags`; a reply passes the resolved codec's
/// bit, with ERROR added for an error reply (§6.3).
///
/// # Errors
/// [`FrameError::PayloadTooLong`] when method and body do not fit a frame.
pub fn rpc_header(
    seq: u32,
    flags: Flags,
    method_len: usize,
    body_len: usize,
) -> Result<EncodedHeader, FrameError> {
    let too_long = || FrameError::PayloadTooLong {
        len: method_len.saturating_add(body_len),
    };
    let payload_len = method_len.checked_add(body_len).ok_or_else(too_long)?;
    let payload_len = u32::try_from(payload_len).map_err(|_| too_long())?;
    // method_len <= payload_len, which fits a u32.
    let header = FrameHeader::with_options(flags, &[seq, method_len as u32], payload_len)?;
    Ok(header.encode())
}

/// Appends a whole RPC frame.
///
/// # Errors
/// [`FrameError::PayloadTooLong`] when method and body do not fit a frame.
pub fn encode_rpc_frame(
    seq: u32,
    flags: Flags,
    method: &[u8],
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let header = rpc_header(seq, flags, method.len(), body.len())?;
    out.reserve(header.as_bytes().len() + method.len() + body.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(method);
    out.extend_from_slice(body);
    Ok(())
}

/// Appends the reply to `request`: its codec, seq and method echoed; ERROR and the error
/// text when `result` is an error (§6.3, §6.5).
///
/// # Errors
/// [`FrameError::PayloadTooLong`] when the reply does not fit a frame.
pub fn encode_rpc_reply(
    request: &RpcMessage<'_>,
    result: Result<&[u8], &str>,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let codec = request.codec().flag();
    match result {
        Ok(body) => encode_rpc_frame(request.seq, codec, request.method, body, out),
        Err(text) => encode_rpc_frame(
            request.seq,
            codec | Flags::ERROR,
            request.method,
            text.as_bytes(),
            out,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameDecoder;

    #[test]
    fn codec_priority() {
        assert_eq!(
            Codec::resolve(Flags::CODEC_GOB | Flags::CODEC_PROTO),
            Codec::Proto
        );
        assert_eq!(
            Codec::resolve(Flags::CODEC_JSON | Flags::CODEC_RAW),
            Codec::Json
        );
        assert_eq!(
            Codec::resolve(Flags::CODEC_RAW | Flags::CODEC_MSGPACK),
            Codec::Raw
        );
        assert_eq!(
            Codec::resolve(Flags::CODEC_MSGPACK | Flags::CODEC_GOB),
            Codec::Msgpack
        );
        assert_eq!(Codec::resolve(Flags::EMPTY), Codec::Gob);
        assert_eq!(Codec::resolve(Flags::ERROR | Flags::CONTROL), Codec::Gob);
    }

    #[test]
    fn service_method_splits_at_the_last_dot() {
        let message = |method: &'static [u8]| RpcMessage {
            seq: 0,
            flags: Flags::EMPTY,
            method,
            body: b"",
        };
        assert_eq!(
            message(b"informer.Workers").service_method(),
            Ok(("informer", "Workers"))
        );
        assert_eq!(message(b"a.b.C").service_method(), Ok(("a.b", "C")));
        assert_eq!(
            message(b"nodot").service_method().unwrap_err().to_string(),
            "rpc: service/method request ill-formed: nodot"
        );
        assert_eq!(
            RpcCallError::NoService("x.Y".into()).to_string(),
            "rpc: can't find service x.Y"
        );
        assert_eq!(
            RpcCallError::NoMethod("x.Y".into()).to_string(),
            "rpc: can't find method x.Y"
        );
    }

    #[test]
    fn reply_echoes_seq_method_and_codec() {
        let mut bytes = Vec::new();
        encode_rpc_frame(
            9,
            Flags::CODEC_GOB | Flags::CODEC_PROTO,
            b"rpc.Version",
            b"",
            &mut bytes,
        )
        .unwrap();
        let mut decoder = FrameDecoder::default();
        decoder.feed(&bytes);
        let frame = decoder.next_frame().unwrap().unwrap();
        let request = RpcMessage::from_frame(&frame).unwrap();
        let mut reply = Vec::new();
        encode_rpc_reply(&request, Err("nope"), &mut reply).unwrap();
        let mut decoder = FrameDecoder::default();
        decoder.feed(&reply);
        let frame = decoder.next_frame().unwrap().unwrap();
        let reply = RpcMessage::from_frame(&frame).unwrap();
        assert_eq!(reply.flags, Flags::CODEC_PROTO | Flags::ERROR);
        assert_eq!(
            (reply.seq, reply.method, reply.body),
            (9, &b"rpc.Version"[..], &b"nope"[..])
        );
        assert!(reply.is_error());
    }

    #[test]
    fn malformed_rpc_frames() {
        let mut bytes = Vec::new();
        FrameHeader::with_options(Flags::CODEC_JSON, &[1], 0)
            .unwrap()
            .encode_frame_into(b"", &mut bytes)
            .unwrap();
        FrameHeader::with_options(Flags::CODEC_JSON, &[1, 9], 3)
            .unwrap()
            .encode_frame_into(b"abc", &mut bytes)
            .unwrap();
        let mut decoder = FrameDecoder::default();
        decoder.feed(&bytes);
        let first = decoder.next_frame().unwrap().unwrap();
        assert_eq!(
            RpcMessage::from_frame(&first),
            Err(RpcFrameError::OptionCount { count: 1 })
        );
        let second = decoder.next_frame().unwrap().unwrap();
        assert_eq!(
            RpcMessage::from_frame(&second),
            Err(RpcFrameError::MethodLengthOutOfRange {
                method_len: 9,
                payload_len: 3
            })
        );
    }
}
