//! The goridge wire protocol that RoadRunner speaks with its PHP workers and RPC clients,
//! as pure functions and state machines over byte slices: no I/O, no clock, no threads.
//!
//! - [`frame`]: the goridge frame (spec relay-protocol §1): header, flags, CRC, options, an
//!   incremental [`FrameDecoder`] and a zero-copy header encoder.
//! - [`payload`]: what a frame means on a worker relay (§2–§5): data, control, error, stop
//!   request, stream STOP/PING/PONG.
//! - [`rpc`]: goridge RPC framing (§6): sequence numbers, method names, codec resolution.
//! - [`http1`]: HTTP/1.1 request heads, Go's checks, body framing and the chunked decoder.
//! - [`otlp`]: OpenTelemetry trace export messages and the trace context headers.
//! - [`http`]: the worker-facing HTTP context (spec http §1, §2): protobuf and JSON request and
//!   response shapes, cookies, the urlencoded form tree.
//! - [`centrifuge`]: the centrifuge proxy's methods and event types, the API's methods, and
//!   a protobuf wire-format check.
//! - [`temporal`]: the temporal plugin's `Frame`/`Message` envelope and its JSON context.
#![forbid(unsafe_code)]

pub mod centrifuge;
pub mod fcgi;
pub mod frame;
pub mod grpc;
pub mod http;
pub mod http1;
pub mod otlp;
pub mod payload;
pub mod rpc;
pub mod temporal;

pub use frame::{
    EncodedHeader, Flags, Frame, FrameDecoder, FrameError, FrameHeader, StreamFlags,
    DEFAULT_MAX_PAYLOAD_BYTES,
};
