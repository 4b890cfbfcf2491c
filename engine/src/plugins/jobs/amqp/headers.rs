//! Between jobs and AMQP messages (spec jobs-amqp §4.2, §5.2): the `rr_*` field table rr
//! writes, and the worker-visible headers it reads back from any message (rr's or not).

use super::super::pipeline::Job;
use lapin::types::{AMQPValue, ByteArray, FieldTable, LongString};
use std::collections::BTreeMap;

/// The per-job routing key header (`Header::ROUTING_KEY` in the PHP client).
pub const ROUTING_KEY: &str = "x-routing-key";

/// rr's metadata table for `job`: `rr_id`, `rr_job`, `rr_pipeline` as long strings,
/// `rr_headers` as a byte array of the headers' JSON, `rr_delay` (32-bit), `rr_priority`
/// (64-bit), `rr_auto_ack`.
#[must_use]
pub fn table(job: &Job) -> FieldTable {
    let mut table = FieldTable::default();
    let json = serde_json::to_vec(&job.headers).unwrap_or_else(|_| b"null".to_vec());
    table.insert("rr_id".into(), long_string(&job.id));
    table.insert("rr_job".into(), long_string(&job.name));
    table.insert("rr_pipeline".into(), long_string(&job.pipeline.name));
    table.insert(
        "rr_headers".into(),
        AMQPValue::ByteArray(ByteArray::from(json)),
    );
    table.insert(
        "rr_delay".into(),
        AMQPValue::LongInt(i32::try_from(job.delay).unwrap_or(i32::MAX)),
    );
    table.insert("rr_priority".into(), AMQPValue::LongLongInt(job.priority));
    table.insert("rr_auto_ack".into(), AMQPValue::Boolean(job.auto_ack));
    table
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

/// What a delivered message says about its job.
#[derive(Debug, Default, PartialEq)]
pub struct Received {
    /// `rr_id`, when a string.
    pub id: Option<String>,
    /// `rr_job`, when a string.
    pub name: Option<String>,
    /// `rr_delay`, when an integer.
    pub delay: u64,
    /// `rr_priority`, when an integer.
    pub priority: Option<i64>,
    /// `rr_auto_ack`, when a bool.
    pub auto_ack: bool,
    /// Every header as strings, nested tables flattened, then `rr_headers`' JSON over them.
    pub headers: BTreeMap<String, Vec<String>>,
}

/// Reads a delivered message's headers.
#[must_use]
pub fn received(table: Option<&FieldTable>) -> Received {
    let mut received = Received::default();
    let Some(table) = table else {
        return received;
    };
    let fields = table.inner();
    received.id = fields.get("rr_id").and_then(text);
    received.name = fields.get("rr_job").and_then(text);
    received.delay = match fields.get("rr_delay") {
        None => 0,
        Some(value) => integer(value)
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or_else(|| {
                tracing::warn!(target: "jobs", "unknown delay type");
                0
            }),
    };
    received.priority = fields.get("rr_priority").and_then(|value| {
        let priority = integer(value);
        if priority.is_none() {
            tracing::warn!(target: "jobs", "rr_priority is not an integer, the pipeline's priority is used");
        }
        priority
    });
    received.auto_ack = matches!(fields.get("rr_auto_ack"), Some(AMQPValue::Boolean(true)));
    flatten(table, &mut received.headers);
    if let Some(AMQPValue::ByteArray(json)) = fields.get("rr_headers") {
        match serde_json::from_slice::<Option<BTreeMap<String, Vec<String>>>>(json.as_slice()) {
            Ok(Some(user)) => received.headers.extend(user),
            Ok(None) => received.headers.clear(),
            Err(error) => {
                tracing::warn!(target: "jobs", %error, "rr_headers is not a JSON map of string lists, ignored");
            }
        }
    }
    received
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

fn integer(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        _ => return None,
    })
}

/// Every entry of `table` as strings under its key; a nested table's entries become
/// top-level keys (rr's flattening, which is how `x-death` reaches the worker).
fn flatten(table: &FieldTable, into: &mut BTreeMap<String, Vec<String>>) {
    for (key, value) in table.inner() {
        match value {
            AMQPValue::FieldTable(nested) => flatten(nested, into),
            _ => append(key.as_str(), value, into),
        }
    }
}

fn append(key: &str, value: &AMQPValue, into: &mut BTreeMap<String, Vec<String>>) {
    let text = match value {
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::Float(f) => format!("{f:.5}"),
        AMQPValue::Double(f) => format!("{f:.5}"),
        AMQPValue::DecimalValue(decimal) => {
            let scale = u32::from(decimal.scale);
            let value = f64::from(decimal.value) / 10f64.powi(i32::try_from(scale).unwrap_or(0));
            format!("{value:.*}", scale as usize)
        }
        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        AMQPValue::ShortString(text) => text.as_str().to_owned(),
        AMQPValue::ByteArray(bytes) => String::from_utf8_lossy(bytes.as_slice()).into_owned(),
        AMQPValue::Timestamp(seconds) => rfc3339(*seconds),
        AMQPValue::FieldArray(items) => {
            for item in items.as_slice() {
                match item {
                    AMQPValue::FieldTable(nested) => flatten(nested, into),
                    _ => append(key, item, into),
                }
            }
            return;
        }
        AMQPValue::FieldTable(nested) => return flatten(nested, into),
        AMQPValue::Void => {
            tracing::warn!(target: "jobs", key, "unknown header type");
            return;
        }
        other => match integer(other) {
            Some(n) => n.to_string(),
            None => return,
        },
    };
    into.entry(key.to_owned()).or_default().push(text);
}

fn rfc3339(unix_seconds: u64) -> String {
    let c = crate::clock::civil(unix_seconds);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// The routing key a job asks for with `x-routing-key` (one non-empty value), taken out of
/// its headers.
pub fn take_routing_key(headers: &mut BTreeMap<String, Vec<String>>) -> Option<String> {
    match headers.get(ROUTING_KEY).map(Vec::as_slice) {
        Some([key]) if !key.is_empty() => {
            let key = key.clone();
            headers.remove(ROUTING_KEY);
            Some(key)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_rr_message_reads_back_with_its_metadata_and_user_headers() {
        let mut table = FieldTable::default();
        table.insert("rr_id".into(), long_string("id-1"));
        table.insert("rr_job".into(), long_string("App\\Job"));
        table.insert("rr_delay".into(), AMQPValue::LongInt(5));
        table.insert("rr_priority".into(), AMQPValue::LongInt(3));
        table.insert("rr_auto_ack".into(), AMQPValue::Boolean(false));
        table.insert(
            "rr_headers".into(),
            AMQPValue::ByteArray(ByteArray::from(br#"{"attempts":["1"]}"#.to_vec())),
        );
        let mut death = FieldTable::default();
        death.insert("count".into(), AMQPValue::LongLongInt(1));
        death.insert("reason".into(), long_string("expired"));
        table.insert(
            "x-death".into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
        );
        table.insert("ratio".into(), AMQPValue::Double(2.3));
        let received = received(Some(&table));
        assert_eq!(received.id.as_deref(), Some("id-1"));
        assert_eq!(received.name.as_deref(), Some("App\\Job"));
        assert_eq!(
            (received.delay, received.priority),
            (5, Some(3)),
            "any integer width"
        );
        assert_eq!(received.headers["attempts"], ["1"]);
        assert_eq!(received.headers["rr_delay"], ["5"]);
        assert_eq!(received.headers["count"], ["1"], "x-death flattened");
        assert_eq!(received.headers["reason"], ["expired"]);
        assert_eq!(received.headers["ratio"], ["2.30000"]);
    }

    #[test]
    fn a_foreign_message_has_no_metadata_and_null_json_clears() {
        assert_eq!(received(None), Received::default());
        let mut table = FieldTable::default();
        table.insert("k".into(), long_string("v"));
        table.insert(
            "rr_headers".into(),
            AMQPValue::ByteArray(ByteArray::from(b"null".to_vec())),
        );
        let received = received(Some(&table));
        assert!(received.headers.is_empty());
        assert_eq!(received.id, None);
    }

    #[test]
    fn a_routing_key_header_with_one_value_is_taken_out() {
        let mut headers = BTreeMap::from([(ROUTING_KEY.to_owned(), vec!["rk".to_owned()])]);
        assert_eq!(take_routing_key(&mut headers).as_deref(), Some("rk"));
        assert!(headers.is_empty());
        let mut two = BTreeMap::from([(ROUTING_KEY.to_owned(), vec!["a".into(), "b".into()])]);
        assert_eq!(take_routing_key(&mut two), None);
    }

    fn value() -> impl Strategy<Value = AMQPValue> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(AMQPValue::Boolean),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            any::<f64>().prop_map(AMQPValue::Double),
            any::<u64>().prop_map(AMQPValue::Timestamp),
            (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| {
                AMQPValue::DecimalValue(lapin::types::DecimalValue { scale, value })
            }),
            proptest::collection::vec(any::<u8>(), 0..16)
                .prop_map(|b| AMQPValue::ByteArray(ByteArray::from(b))),
            Just(AMQPValue::Void),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| AMQPValue::FieldArray(items.into())),
                proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4).prop_map(|m| {
                    let mut table = FieldTable::default();
                    for (k, v) in m {
                        table.insert(k.as_str().into(), v);
                    }
                    AMQPValue::FieldTable(table)
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_header_table_reads_without_panicking(
            entries in proptest::collection::btree_map("(rr_[a-z]{1,8})|[a-z]{1,8}", value(), 0..8),
        ) {
            let mut table = FieldTable::default();
            for (k, v) in entries {
                table.insert(k.as_str().into(), v);
            }
            let _ = received(Some(&table));
        }
    }
}
