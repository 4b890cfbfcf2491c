//! Temporal values on the worker protocol: `Payloads`, `Failure` and `Header` carried as
//! their encoded bytes in a `Message`, Go's durations (integer nanoseconds) and the JSON
//! options of commands.

use prost::Message as _;
use ringrunner_protocol::temporal::Message;
use std::collections::HashMap;
use std::time::Duration;
use temporalio_common::protos::temporal::api::common::v1::{
    Header, Payload, Payloads, RetryPolicy,
};
use temporalio_common::protos::temporal::api::failure::v1::{
    failure, ApplicationFailureInfo, Failure,
};

/// The failure `source` of failures ringrunner makes (rr's come from the Go SDK: `GoSDK`).
pub const FAILURE_SOURCE: &str = "GoSDK";

/// What is wrong with a message from the worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A nested protobuf message that does not decode.
    #[error("message {id}: malformed {field}: {reason}")]
    Nested {
        /// The message id.
        id: u64,
        /// `payloads`, `failure` or `header`.
        field: &'static str,
        /// prost's words.
        reason: String,
    },
    /// Options that are not the command's JSON.
    #[error("message {id}: invalid options of {command}: {reason}")]
    Options {
        /// The message id.
        id: u64,
        /// The command.
        command: String,
        /// serde's words.
        reason: String,
    },
    /// An id that does not fit the core's sequence numbers.
    #[error("message id {0} out of range")]
    IdRange(u64),
}

fn nested<T: prost::Message + Default>(
    bytes: Option<&[u8]>,
    id: u64,
    field: &'static str,
) -> Result<Option<T>, MessageError> {
    bytes
        .map(|bytes| {
            T::decode(bytes).map_err(|error| MessageError::Nested {
                id,
                field,
                reason: error.to_string(),
            })
        })
        .transpose()
}

/// The message's payloads (none when absent).
///
/// # Errors
/// Bytes that are not `Payloads`.
pub fn payloads_of(message: &Message) -> Result<Vec<Payload>, MessageError> {
    Ok(
        nested::<Payloads>(message.payloads.as_deref(), message.id, "payloads")?
            .map(|payloads| payloads.payloads)
            .unwrap_or_default(),
    )
}

/// The message's failure, when it carries one.
///
/// # Errors
/// Bytes that are not a `Failure`.
pub fn failure_of(message: &Message) -> Result<Option<Failure>, MessageError> {
    nested(message.failure.as_deref(), message.id, "failure")
}

/// The message's header fields (none when absent).
///
/// # Errors
/// Bytes that are not a `Header`.
pub fn header_of(message: &Message) -> Result<HashMap<String, Payload>, MessageError> {
    Ok(
        nested::<Header>(message.header.as_deref(), message.id, "header")?
            .map(|header| header.fields)
            .unwrap_or_default(),
    )
}

/// `payloads` encoded for a message (absent when there are none, as rr leaves it).
#[must_use]
pub fn encode_payloads(payloads: Vec<Payload>) -> Option<Vec<u8>> {
    Some(Payloads { payloads }.encode_to_vec())
}

/// `header` fields encoded for a message.
#[must_use]
pub fn encode_header(fields: HashMap<String, Payload>) -> Option<Vec<u8>> {
    (!fields.is_empty()).then(|| Header { fields }.encode_to_vec())
}

/// A value as a `json/plain` payload.
#[must_use]
pub fn json_payload(value: &serde_json::Value) -> Payload {
    Payload {
        metadata: HashMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
        data: serde_json::to_vec(value).unwrap_or_default(),
        ..Payload::default()
    }
}

/// Go's nil as a payload (`binary/null`): the value of an update that returned nothing.
#[must_use]
pub fn null_payload() -> Payload {
    Payload {
        metadata: HashMap::from([("encoding".to_owned(), b"binary/null".to_vec())]),
        ..Payload::default()
    }
}

/// A failure made by ringrunner (an application failure of type `kind`).
#[must_use]
pub fn application_failure(message: String, kind: &str) -> Failure {
    Failure {
        message,
        source: FAILURE_SOURCE.to_owned(),
        failure_info: Some(failure::FailureInfo::ApplicationFailureInfo(
            ApplicationFailureInfo {
                r#type: kind.to_owned(),
                ..ApplicationFailureInfo::default()
            },
        )),
        ..Failure::default()
    }
}

/// A Go `time.Duration` (nanoseconds) as a protobuf duration; None for 0 (unset).
#[must_use]
pub fn go_duration(nanos: i64) -> Option<prost_wkt_types::Duration> {
    (nanos > 0).then(|| prost_wkt_types::Duration {
        seconds: nanos / 1_000_000_000,
        nanos: i32::try_from(nanos % 1_000_000_000).unwrap_or(0),
    })
}

/// A protobuf duration as Go's nanoseconds (0 when absent).
#[must_use]
pub fn nanos_of(duration: Option<&prost_wkt_types::Duration>) -> i64 {
    duration.map_or(0, |d| {
        d.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(d.nanos))
    })
}

/// A standard duration as a protobuf one.
#[must_use]
pub fn proto_duration(duration: Duration) -> prost_wkt_types::Duration {
    prost_wkt_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

/// Go's `temporal.RetryPolicy` as the PHP SDK sends it in options (durations in
/// nanoseconds).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct GoRetryPolicy {
    /// First retry's delay.
    pub initial_interval: i64,
    /// Growth of the delay.
    pub backoff_coefficient: f64,
    /// Largest delay.
    pub maximum_interval: i64,
    /// Attempts in all; 0 = unlimited.
    pub maximum_attempts: i32,
    /// Failure types not retried.
    pub non_retryable_error_types: Option<Vec<String>>,
}

impl GoRetryPolicy {
    /// As Temporal's message.
    #[must_use]
    pub fn to_proto(&self) -> RetryPolicy {
        RetryPolicy {
            initial_interval: go_duration(self.initial_interval),
            backoff_coefficient: self.backoff_coefficient,
            maximum_interval: go_duration(self.maximum_interval),
            maximum_attempts: self.maximum_attempts,
            non_retryable_error_types: self.non_retryable_error_types.clone().unwrap_or_default(),
        }
    }
}

/// A message's options as `T`; empty options read as `T::default()`.
///
/// # Errors
/// Options that are not `T`'s JSON.
pub fn options_of<T: serde::de::DeserializeOwned + Default>(
    message: &Message,
) -> Result<T, MessageError> {
    if message.options.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(&message.options).map_err(|error| MessageError::Options {
        id: message.id,
        command: message.command.clone(),
        reason: error.to_string(),
    })
}

/// The core's sequence number for an SDK command id.
///
/// # Errors
/// An id past `u32`.
pub fn seq_of(id: u64) -> Result<u32, MessageError> {
    u32::try_from(id).map_err(|_| MessageError::IdRange(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_round_trip_and_zero_is_unset() {
        assert_eq!(go_duration(0), None);
        let d = go_duration(1_500_000_000).unwrap();
        assert_eq!((d.seconds, d.nanos), (1, 500_000_000));
        assert_eq!(nanos_of(Some(&d)), 1_500_000_000);
    }

    #[test]
    fn broken_options_json_is_a_typed_error_naming_the_command() {
        let message = Message {
            id: 9001,
            command: "NewTimer".into(),
            options: b"{\"ms\":".to_vec(),
            ..Message::default()
        };
        let error = options_of::<serde_json::Value>(&message).unwrap_err();
        assert!(error.to_string().contains("invalid options of NewTimer"));
    }

    #[test]
    fn a_payload_that_is_not_payloads_is_a_typed_error() {
        let message = Message {
            id: 7,
            payloads: Some(vec![0xff, 0xff]),
            ..Message::default()
        };
        assert!(matches!(
            payloads_of(&message),
            Err(MessageError::Nested {
                field: "payloads",
                ..
            })
        ));
    }
}
