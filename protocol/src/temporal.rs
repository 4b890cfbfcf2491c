//! The temporal plugin's worker protocol (spec temporal "Wire protocol"): one goridge frame
//! each way with flags 0; rr's payload is a JSON context followed by a protobuf
//! `temporal.v1.Frame`, the worker's an empty context and a `Frame`.
//!
//! Nested Temporal messages (`Failure`, `Payloads`, `Header`) are kept here as their encoded
//! bytes: a length-delimited field reads the same whether declared a message or `bytes`, so
//! this crate decodes the envelope without Temporal's whole API, and the engine decodes the
//! nested messages with Temporal's own types, losing no field.

use prost::Message as _;
use serde::{Deserialize, Serialize};

/// Most messages one frame may carry (a workflow batch is a handful; this bounds the
/// allocation a worker's reply can ask for).
pub const MAX_MESSAGES_PER_FRAME: usize = 10_000;

/// `temporal.v1.Frame`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    /// The messages, in order.
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Message>,
}

/// `temporal.v1.Message`: a request when `command` is set, else a response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    /// rr's request id, or the SDK's command id (9001 up) and the response to it.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The command name; empty on a response.
    #[prost(string, tag = "2")]
    pub command: String,
    /// The command's options as JSON.
    #[prost(bytes = "vec", tag = "3")]
    pub options: Vec<u8>,
    /// An encoded `temporal.api.failure.v1.Failure`, when the message carries one.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub failure: Option<Vec<u8>>,
    /// An encoded `temporal.api.common.v1.Payloads`, when present.
    #[prost(bytes = "vec", optional, tag = "5")]
    pub payloads: Option<Vec<u8>>,
    /// An encoded `temporal.api.common.v1.Header`, when present.
    #[prost(bytes = "vec", optional, tag = "6")]
    pub header: Option<Vec<u8>>,
    /// Context copy: events in the workflow's history.
    #[prost(int64, tag = "7")]
    pub history_length: i64,
    /// Context copy: rr's id of the workflow run.
    #[prost(string, tag = "8")]
    pub run_id: String,
    /// Context copy: the task queue.
    #[prost(string, tag = "9")]
    pub task_queue: String,
    /// Context copy: the workflow's "now".
    #[prost(string, tag = "10")]
    pub tick_time: String,
    /// Context copy: the workflow is replaying.
    #[prost(bool, tag = "11")]
    pub replay: bool,
    /// Context copy: the server suggests continue-as-new.
    #[prost(bool, tag = "12")]
    pub continue_as_new_suggested: bool,
    /// Context copy: history size in bytes.
    #[prost(int64, tag = "13")]
    pub history_size: i64,
    /// The workflow worker's PID.
    #[prost(uint64, tag = "14")]
    pub wwpid: u64,
}

impl Message {
    /// True for a request (a command), false for a response.
    #[must_use]
    pub fn is_command(&self) -> bool {
        !self.command.is_empty()
    }
}

/// What is wrong with a worker's frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemporalFrameError {
    /// Not a `temporal.v1.Frame`.
    #[error("malformed temporal frame: {0}")]
    Malformed(String),
    /// More messages than [`MAX_MESSAGES_PER_FRAME`].
    #[error(
        "temporal frame with {count} messages, more than the limit of {MAX_MESSAGES_PER_FRAME}"
    )]
    TooManyMessages {
        /// Messages found.
        count: usize,
    },
}

/// Decodes a worker's frame body.
///
/// # Errors
/// Bytes that are not a `Frame`, or one with too many messages.
pub fn decode_frame(body: &[u8]) -> Result<Frame, TemporalFrameError> {
    let frame =
        Frame::decode(body).map_err(|error| TemporalFrameError::Malformed(error.to_string()))?;
    if frame.messages.len() > MAX_MESSAGES_PER_FRAME {
        return Err(TemporalFrameError::TooManyMessages {
            count: frame.messages.len(),
        });
    }
    Ok(frame)
}

/// Encodes `frame` after `out`'s current contents.
pub fn encode_frame(frame: &Frame, out: &mut Vec<u8>) {
    out.reserve(frame.encoded_len());
    frame
        .encode(out)
        .expect("a Vec grows to hold whatever is encoded");
}

/// The JSON context rr puts before each frame (`internal.Context`); empty fields are left
/// out as rr leaves them out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// The task queue.
    #[serde(
        rename = "taskQueue",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub task_queue: String,
    /// RFC 3339, whole seconds: the workflow's deterministic "now".
    #[serde(rename = "tickTime", default, skip_serializing_if = "String::is_empty")]
    pub tick_time: String,
    /// The workflow replays recorded history.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
    /// Events in the history.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_length: i64,
    /// History size in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_size: i64,
    /// rr's id of the workflow run (always written, empty outside workflows).
    #[serde(default)]
    pub rr_id: String,
    /// The server suggests continue-as-new (always written).
    #[serde(default)]
    pub continue_as_new_suggested: bool,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(value: &i64) -> bool {
    *value == 0
}

impl Context {
    /// The context as JSON.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings and numbers serialises")
    }

    /// Copies the context into the message fields rr duplicates it in (7–13).
    pub fn stamp(&self, message: &mut Message) {
        message.history_length = self.history_length;
        message.history_size = self.history_size;
        message.run_id.clone_from(&self.rr_id);
        message.task_queue.clone_from(&self.task_queue);
        message.tick_time.clone_from(&self.tick_time);
        message.replay = self.replay;
        message.continue_as_new_suggested = self.continue_as_new_suggested;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GetWorkerInfo request captured from rr (spec temporal "Captured exchanges").
    const GET_WORKER_INFO: &str = "0a3a120d476574576f726b6572496e666f1a297b2272725f76657273696f6e223a22323032352e312e3135222c2277775f706964223a32393534357d";

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn captured_get_worker_info_decodes_and_reencodes_byte_for_byte() {
        let bytes = unhex(GET_WORKER_INFO);
        let frame = decode_frame(&bytes).unwrap();
        assert_eq!(frame.messages.len(), 1);
        let message = &frame.messages[0];
        assert_eq!(message.command, "GetWorkerInfo");
        assert_eq!(message.id, 0);
        assert_eq!(
            message.options,
            br#"{"rr_version":"2025.1.15","ww_pid":29545}"#.to_vec()
        );
        let mut out = Vec::new();
        encode_frame(&frame, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn context_json_leaves_out_empty_fields_as_rr_does() {
        assert_eq!(
            Context::default().to_json(),
            br#"{"rr_id":"","continue_as_new_suggested":false}"#.to_vec()
        );
        let workflow = Context {
            task_queue: "wireq".into(),
            tick_time: "2026-12-06T15:25:07Z".into(),
            replay: true,
            history_length: 3,
            history_size: 268,
            rr_id: "58e9".into(),
            continue_as_new_suggested: false,
        };
        assert_eq!(
            String::from_utf8(workflow.to_json()).unwrap(),
            r#"{"taskQueue":"wireq","tickTime":"2026-12-06T15:25:07Z","replay":true,"history_length":3,"history_size":268,"rr_id":"58e9","continue_as_new_suggested":false}"#
        );
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(
            decode_frame(b"\xff\xff\xff"),
            Err(TemporalFrameError::Malformed(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_frame(&bytes);
        }

        #[test]
        fn encode_then_decode_is_identity(id in 0u64.., command in "[A-Za-z]{0,16}", options in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let frame = Frame { messages: vec![Message { id, command, options, ..Message::default() }] };
            let mut out = Vec::new();
            encode_frame(&frame, &mut out);
            proptest::prop_assert_eq!(decode_frame(&out).unwrap(), frame);
        }
    }
}
