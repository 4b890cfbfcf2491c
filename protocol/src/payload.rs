//! What a frame means on a worker relay (spec relay-protocol §2–§5), in both directions:
//! the server side decodes [`WorkerMessage`]s and encodes requests and control frames; the
//! worker side (our native workers and test clients) does the reverse.

use crate::frame::{EncodedHeader, Flags, Frame, FrameError, FrameHeader, StreamFlags};

/// Context bytes of a worker's "stop me" reply (§4.2), matched exactly.
pub const STOP_REQUEST_CONTEXT: &[u8] = br#"{"stop":true}"#;
/// Server → worker stream STOP frame (§5): flags 0, no options, byte 10 = STOP.
pub const STREAM_STOP_FRAME: [u8; 12] = [0x13, 0, 0, 0, 0, 0, 0x96, 0xd1, 0x80, 0x34, 0x02, 0];
/// Server → worker PONG frame (§5): flags 0, no options, byte 10 = PONG.
pub const PONG_FRAME: [u8; 12] = [0x13, 0, 0, 0, 0, 0, 0x96, 0xd1, 0x80, 0x34, 0x08, 0];

/// A relay frame that could not be given a meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// A data frame must carry exactly one option, the context length (§2).
    #[error("data frame carries {count} options, expected 1 (context length)")]
    DataOptionCount {
        /// Options carried.
        count: usize,
    },
    /// Option 0 is larger than the payload (§2).
    #[error("context length {context_len} exceeds payload length {payload_len}")]
    ContextLengthOutOfRange {
        /// Option 0.
        context_len: u32,
        /// Payload length.
        payload_len: usize,
    },
    /// A control frame whose payload is not a JSON object (§3).
    #[error("control frame payload is not a JSON object: {0}")]
    ControlNotJson(String),
    /// A control frame with neither a truthy `stop` nor a `pid` key (§3.3).
    #[error("undefined control message: {0}")]
    UnknownControl(String),
    /// Handshake reply without the CONTROL bit (§3.1).
    #[error("handshake reply has no CONTROL flag")]
    HandshakeNotControl,
    /// Handshake reply whose `pid` is not an integer above zero (§3.1).
    #[error("handshake reply carries no valid pid: {0}")]
    HandshakeBadPid(String),
    /// Context and body together do not fit a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// The context + body of a data frame (§2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPayload<'a> {
    /// Codec bits of the context, as the sender set them.
    pub codec: Flags,
    /// The stream byte: STREAM and PING are the worker's (§5).
    pub stream: StreamFlags,
    /// The first option-0 bytes of the payload.
    pub context: &'a [u8],
    /// The rest of the payload.
    pub body: &'a [u8],
}

impl<'a> DataPayload<'a> {
    /// Splits a data frame into context and body (§2).
    ///
    /// # Errors
    /// [`PayloadError::DataOptionCount`] or [`PayloadError::ContextLengthOutOfRange`].
    pub fn from_frame(frame: &Frame<'a>) -> Result<Self, PayloadError> {
        let [context_len] = frame.header.options() else {
            return Err(PayloadError::DataOptionCount {
                count: frame.header.options().len(),
            });
        };
        let Some((context, body)) = frame.payload.split_at_checked(*context_len as usize) else {
            return Err(PayloadError::ContextLengthOutOfRange {
                context_len: *context_len,
                payload_len: frame.payload.len(),
            });
        };
        Ok(Self {
            codec: frame.header.flags,
            stream: frame.header.stream,
            context,
            body,
        })
    }

    /// True when more frames of this response follow (§5).
    #[must_use]
    pub fn is_streaming(&self) -> bool {
        self.stream.contains(StreamFlags::STREAM)
    }

    /// True when the worker asks for a PONG (§5 rule 4).
    #[must_use]
    pub fn wants_pong(&self) -> bool {
        self.stream.contains(StreamFlags::PING)
    }
}

/// The header of a data frame carrying `context_len + body_len` bytes. Write it, the context
/// and the body as one vectored write (§1.9).
///
/// # Errors
/// [`FrameError::PayloadTooLong`] when the payload does not fit the u32 length field.
pub fn data_header(
    codec: Flags,
    stream: StreamFlags,
    context_len: usize,
    body_len: usize,
) -> Result<EncodedHeader, FrameError> {
    let payload_len = context_len
        .checked_add(body_len)
        .and_then(|len| u32::try_from(len).ok())
        .ok_or(FrameError::PayloadTooLong {
            len: context_len.saturating_add(body_len),
        })?;
    // Fits: context_len <= payload_len, which fits a u32.
    let header = FrameHeader::with_options(codec, &[context_len as u32], payload_len)?;
    Ok(header.with_stream(stream).encode())
}

/// Appends a whole data frame to `out` (for small frames; large bodies want [`data_header`]).
///
/// # Errors
/// [`FrameError::PayloadTooLong`] when the payload does not fit a frame.
pub fn encode_data_frame(
    codec: Flags,
    stream: StreamFlags,
    context: &[u8],
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let header = data_header(codec, stream, context.len(), body.len())?;
    out.reserve(header.as_bytes().len() + context.len() + body.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(context);
    out.extend_from_slice(body);
    Ok(())
}

/// A control message (§3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMessage {
    /// `{"pid":N}`: handshake, either way. `None` when the value is truthy but not an integer
    /// (the PHP worker accepts that as a request; the server never takes it as a reply).
    Pid(Option<i64>),
    /// `{"stop":true}`: finish now and exit.
    Stop,
}

impl ControlMessage {
    /// Parses a control payload: any JSON object; `stop` is checked before `pid`, as the PHP
    /// decoder does (§3.3).
    ///
    /// # Errors
    /// [`PayloadError::ControlNotJson`] or [`PayloadError::UnknownControl`].
    pub fn parse(payload: &[u8]) -> Result<Self, PayloadError> {
        let value: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|error| PayloadError::ControlNotJson(error.to_string()))?;
        let Some(object) = value.as_object() else {
            return Err(PayloadError::ControlNotJson(lossy(payload)));
        };
        if object.get("stop").is_some_and(is_truthy) {
            return Ok(Self::Stop);
        }
        match object.get("pid") {
            Some(pid) if is_truthy(pid) => Ok(Self::Pid(pid.as_i64())),
            _ => Err(PayloadError::UnknownControl(lossy(payload))),
        }
    }
}

/// Checks a worker's handshake reply and returns the pid it reports (§3.1).
///
/// # Errors
/// [`PayloadError::HandshakeNotControl`], a JSON error, or [`PayloadError::HandshakeBadPid`].
pub fn parse_pid_reply(frame: &Frame<'_>) -> Result<u32, PayloadError> {
    if !frame.header.flags.contains(Flags::CONTROL) {
        return Err(PayloadError::HandshakeNotControl);
    }
    match ControlMessage::parse(frame.payload)? {
        ControlMessage::Pid(Some(pid)) if pid > 0 => {
            u32::try_from(pid).map_err(|_| PayloadError::HandshakeBadPid(lossy(frame.payload)))
        }
        _ => Err(PayloadError::HandshakeBadPid(lossy(frame.payload))),
    }
}

/// Appends the server's handshake request, `{"pid":<server pid>}` with flags 0x09 (§3.1).
pub fn encode_pid_request(server_pid: u32, out: &mut Vec<u8>) {
    encode_control(
        Flags::CONTROL | Flags::CODEC_JSON,
        &format_pid(server_pid),
        out,
    );
}

/// Appends a worker's handshake reply, `{"pid":<own pid>}` with flags 0x01 (§3.1).
pub fn encode_pid_reply(worker_pid: u32, out: &mut Vec<u8>) {
    encode_control(Flags::CONTROL, &format_pid(worker_pid), out);
}

/// Appends the server's `{"stop":true}` control frame, flags 0x09 (§3.2).
pub fn encode_stop(out: &mut Vec<u8>) {
    encode_control(
        Flags::CONTROL | Flags::CODEC_JSON,
        STOP_REQUEST_CONTEXT,
        out,
    );
}

/// Appends a worker's "stop me" reply: a data frame with context `{"stop":true}` and no
/// body (§4.2).
pub fn encode_stop_request(out: &mut Vec<u8>) {
    encode_data_frame(
        Flags::EMPTY,
        StreamFlags::EMPTY,
        STOP_REQUEST_CONTEXT,
        b"",
        out,
    )
    .expect("13 bytes fit a frame");
}

/// The header of a worker's ERROR frame (§4.1): flags 0x40, no options.
///
/// # Errors
/// [`FrameError::PayloadTooLong`] when the text does not fit a frame.
pub fn error_header(text_len: usize) -> Result<EncodedHeader, FrameError> {
    let len = u32::try_from(text_len).map_err(|_| FrameError::PayloadTooLong { len: text_len })?;
    Ok(FrameHeader::new(Flags::ERROR, len).encode())
}

/// A frame from a worker, given its meaning (§4): what the server acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerMessage<'a> {
    /// A response, or one chunk of a streamed response.
    Data(DataPayload<'a>),
    /// "Stop me": retire this worker and re-run the request elsewhere (§4.2).
    StopRequest,
    /// A soft error; the text is usually the exception string (§4.1).
    Error(&'a [u8]),
    /// A control message (the handshake reply).
    Control(ControlMessage),
}

impl<'a> WorkerMessage<'a> {
    /// Gives a worker's frame its meaning. ERROR is tested first and ignores options; then
    /// CONTROL; everything else is data (§2, §4.1).
    ///
    /// # Errors
    /// A [`PayloadError`] for a malformed data or control frame.
    pub fn from_frame(frame: &Frame<'a>) -> Result<Self, PayloadError> {
        let flags = frame.header.flags;
        if flags.contains(Flags::ERROR) {
            return Ok(Self::Error(frame.payload));
        }
        if flags.contains(Flags::CONTROL) {
            return ControlMessage::parse(frame.payload).map(Self::Control);
        }
        let data = DataPayload::from_frame(frame)?;
        if data.body.is_empty() && data.context == STOP_REQUEST_CONTEXT {
            return Ok(Self::StopRequest);
        }
        Ok(Self::Data(data))
    }
}

/// A frame from the server, given its meaning as the PHP worker decodes it: CONTROL, then
/// STOP, then PONG, then data (§5 rule 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    /// A control message: handshake request or stop.
    Control(ControlMessage),
    /// Abort the stream being produced.
    StreamStop,
    /// The answer to a PING.
    Pong,
    /// A request.
    Data(DataPayload<'a>),
}

impl<'a> ServerMessage<'a> {
    /// Gives a server's frame its meaning.
    ///
    /// # Errors
    /// A [`PayloadError`] for a malformed data or control frame.
    pub fn from_frame(frame: &Frame<'a>) -> Result<Self, PayloadError> {
        if frame.header.flags.contains(Flags::CONTROL) {
            return ControlMessage::parse(frame.payload).map(Self::Control);
        }
        if frame.header.stream.contains(StreamFlags::STOP) {
            return Ok(Self::StreamStop);
        }
        if frame.header.stream.contains(StreamFlags::PONG) {
            return Ok(Self::Pong);
        }
        DataPayload::from_frame(frame).map(Self::Data)
    }
}

fn encode_control(flags: Flags, json: &[u8], out: &mut Vec<u8>) {
    // Control payloads are a few bytes: always fit.
    let header = FrameHeader::new(flags, json.len() as u32);
    header
        .encode_frame_into(json, out)
        .expect("the header was made for this payload");
}

fn format_pid(pid: u32) -> Vec<u8> {
    format!(r#"{{"pid":{pid}}}"#).into_bytes()
}

/// PHP truthiness of a decoded JSON value.
fn is_truthy(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0),
        Value::String(text) => !text.is_empty() && text != "0",
        Value::Array(items) => !items.is_empty(),
        Value::Object(_) => true,
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameDecoder;

    fn decode(bytes: &[u8]) -> (FrameDecoder, usize) {
        let mut decoder = FrameDecoder::default();
        decoder.feed(bytes);
        (decoder, bytes.len())
    }

    #[test]
    fn stream_constants_match_the_encoder() {
        let stop = FrameHeader::new(Flags::EMPTY, 0)
            .with_stream(StreamFlags::STOP)
            .encode();
        let pong = FrameHeader::new(Flags::EMPTY, 0)
            .with_stream(StreamFlags::PONG)
            .encode();
        assert_eq!(stop.as_bytes(), STREAM_STOP_FRAME);
        assert_eq!(pong.as_bytes(), PONG_FRAME);
    }

    #[test]
    fn control_json_is_lenient() {
        assert_eq!(
            ControlMessage::parse(br#" { "pid" : 7 , "x": 1 } "#),
            Ok(ControlMessage::Pid(Some(7)))
        );
        assert_eq!(
            ControlMessage::parse(br#"{"pid":true}"#),
            Ok(ControlMessage::Pid(None))
        );
        assert_eq!(
            ControlMessage::parse(br#"{"stop":true,"pid":3}"#),
            Ok(ControlMessage::Stop)
        );
        assert!(matches!(
            ControlMessage::parse(br#"{"stop":false}"#),
            Err(PayloadError::UnknownControl(_))
        ));
        assert!(matches!(
            ControlMessage::parse(b"[1]"),
            Err(PayloadError::ControlNotJson(_))
        ));
        assert!(matches!(
            ControlMessage::parse(b"{"),
            Err(PayloadError::ControlNotJson(_))
        ));
    }

    #[test]
    fn pid_reply_rules() {
        let mut bytes = Vec::new();
        encode_pid_reply(31337, &mut bytes);
        let (mut decoder, _) = decode(&bytes);
        assert_eq!(
            parse_pid_reply(&decoder.next_frame().unwrap().unwrap()),
            Ok(31337)
        );

        for (flags, json) in [
            (Flags::EMPTY, &br#"{"pid":5}"#[..]),
            (Flags::CONTROL, br#"{"pid":0}"#),
            (Flags::CONTROL, br#"{"pid":-4}"#),
            (Flags::CONTROL, br#"{"pid":"12"}"#),
            (Flags::CONTROL, br#"{"pid":99999999999}"#),
        ] {
            let mut bytes = Vec::new();
            FrameHeader::new(flags, json.len() as u32)
                .encode_frame_into(json, &mut bytes)
                .unwrap();
            let (mut decoder, _) = decode(&bytes);
            assert!(
                parse_pid_reply(&decoder.next_frame().unwrap().unwrap()).is_err(),
                "{flags:?}"
            );
        }
    }

    #[test]
    fn worker_messages() {
        let mut bytes = Vec::new();
        encode_stop_request(&mut bytes);
        let error = error_header(4).unwrap();
        bytes.extend_from_slice(error.as_bytes());
        bytes.extend_from_slice(b"boom");
        encode_data_frame(
            Flags::CODEC_PROTO,
            StreamFlags::STREAM,
            b"ctx",
            b"body",
            &mut bytes,
        )
        .unwrap();
        let (mut decoder, _) = decode(&bytes);
        let mut next = || {
            WorkerMessage::from_frame(&decoder.next_frame().unwrap().unwrap())
                .map(|m| format!("{m:?}"))
        };
        assert_eq!(next().unwrap(), "StopRequest");
        assert_eq!(
            next().unwrap(),
            format!("{:?}", WorkerMessage::Error(b"boom"))
        );
        let data = next().unwrap();
        assert!(
            data.contains("STREAM") && data.contains("CODEC_PROTO"),
            "{data}"
        );
    }

    #[test]
    fn stop_context_with_a_body_is_data() {
        let mut bytes = Vec::new();
        encode_data_frame(
            Flags::EMPTY,
            StreamFlags::EMPTY,
            STOP_REQUEST_CONTEXT,
            b"x",
            &mut bytes,
        )
        .unwrap();
        let (mut decoder, _) = decode(&bytes);
        let frame = decoder.next_frame().unwrap().unwrap();
        assert!(matches!(
            WorkerMessage::from_frame(&frame),
            Ok(WorkerMessage::Data(_))
        ));
    }

    #[test]
    fn bad_data_frames() {
        let mut bytes = Vec::new();
        FrameHeader::with_options(Flags::EMPTY, &[5], 2)
            .unwrap()
            .encode_frame_into(b"ab", &mut bytes)
            .unwrap();
        FrameHeader::new(Flags::EMPTY, 2)
            .encode_frame_into(b"ab", &mut bytes)
            .unwrap();
        let (mut decoder, _) = decode(&bytes);
        assert_eq!(
            WorkerMessage::from_frame(&decoder.next_frame().unwrap().unwrap()),
            Err(PayloadError::ContextLengthOutOfRange {
                context_len: 5,
                payload_len: 2
            })
        );
        assert_eq!(
            WorkerMessage::from_frame(&decoder.next_frame().unwrap().unwrap()),
            Err(PayloadError::DataOptionCount { count: 0 })
        );
    }

    #[test]
    fn server_messages_in_php_order() {
        let mut bytes = Vec::new();
        encode_pid_request(4242, &mut bytes);
        encode_stop(&mut bytes);
        bytes.extend_from_slice(&STREAM_STOP_FRAME);
        bytes.extend_from_slice(&PONG_FRAME);
        encode_data_frame(
            Flags::CODEC_JSON,
            StreamFlags::EMPTY,
            b"{}",
            b"hi",
            &mut bytes,
        )
        .unwrap();
        let (mut decoder, _) = decode(&bytes);
        let mut next = || {
            format!(
                "{:?}",
                ServerMessage::from_frame(&decoder.next_frame().unwrap().unwrap()).unwrap()
            )
        };
        assert_eq!(
            next(),
            format!(
                "{:?}",
                ServerMessage::Control(ControlMessage::Pid(Some(4242)))
            )
        );
        assert_eq!(
            next(),
            format!("{:?}", ServerMessage::Control(ControlMessage::Stop))
        );
        assert_eq!(next(), "StreamStop");
        assert_eq!(next(), "Pong");
        let data = DataPayload {
            codec: Flags::CODEC_JSON,
            stream: StreamFlags::EMPTY,
            context: b"{}",
            body: b"hi",
        };
        assert_eq!(next(), format!("{:?}", ServerMessage::Data(data)));
    }

    #[test]
    fn payload_that_does_not_fit() {
        assert!(data_header(Flags::EMPTY, StreamFlags::EMPTY, usize::MAX, 1).is_err());
        assert!(data_header(Flags::EMPTY, StreamFlags::EMPTY, u32::MAX as usize, 1).is_err());
        assert!(data_header(Flags::EMPTY, StreamFlags::EMPTY, u32::MAX as usize, 0).is_ok());
    }
}
