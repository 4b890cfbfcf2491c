//! The `amqp` driver's settings (spec jobs-amqp §1, §2, §8): the connection from the
//! top-level `amqp` section, a pipeline's options from its `config` section or from the
//! string map of `jobs.Declare`.

use crate::config::values::Reader;
use crate::config::yaml::Value;
use crate::config::ConfigError;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use std::collections::HashMap;
use std::time::Duration;

/// The broker rr dials when `amqp.addr` is empty.
pub const DEFAULT_ADDR: &str = "amqp://guest:guest@127.0.0.1:5672/";

/// The top-level `amqp` section.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The broker's URI.
    pub addr: String,
    /// Why its pipelines cannot dial (TLS to the broker, not supported yet): they fail to
    /// start with this, rather than fall back to plain text.
    pub refusal: Option<String>,
}

/// Reads `amqp` (so its keys count as known); None when the section is absent (then
/// `driver: amqp` pipelines have no driver, as in rr).
///
/// # Errors
/// A value of the wrong type.
pub fn read_connection(reader: &Reader<'_>) -> Result<Option<Connection>, ConfigError> {
    if !reader.has("amqp") {
        return Ok(None);
    }
    let addr = reader
        .string("amqp.addr")?
        .filter(|addr| !addr.is_empty())
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let refusal = if reader.has("amqp.tls") {
        Some("amqp.tls: TLS to the broker is not supported by ringrunner yet".to_owned())
    } else if addr.starts_with("amqps://") {
        Some("amqp.addr: amqps:// is not supported by ringrunner yet; use amqp://".to_owned())
    } else {
        None
    };
    Ok(Some(Connection {
        addr: default_vhost(&addr),
        refusal,
    }))
}

/// An address whose path is empty or `/` names the default vhost `/` (as rr's Go client
/// reads it; written out as `%2f`, since an AMQP URI's `/` alone means the empty vhost).
#[must_use]
pub fn default_vhost(addr: &str) -> String {
    let Some(scheme) = addr.find("://") else {
        return addr.to_owned();
    };
    let rest = &addr[scheme + 3..];
    let (before_query, query) = match rest.find('?') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    match before_query.find('/') {
        Some(slash) if before_query.len() > slash + 1 => addr.to_owned(),
        Some(slash) => format!(
            "{}{}/%2f{query}",
            &addr[..scheme + 3],
            &before_query[..slash]
        ),
        None => format!("{}{before_query}/%2f{query}", &addr[..scheme + 3]),
    }
}

/// One pipeline's options.
#[derive(Debug, Clone)]
pub struct Options {
    /// The broker's URI.
    pub addr: String,
    /// Its priority.
    pub priority: i64,
    /// `basic.qos` prefetch count (0: unlimited).
    pub prefetch: u16,
    /// The queue it consumes; empty for a push-only pipeline.
    pub queue: String,
    /// The exchange it publishes to.
    pub exchange: String,
    /// `direct`, `fanout`, `topic`, `headers`.
    pub exchange_type: String,
    /// Binding and publishing key.
    pub routing_key: String,
    /// Queue flags.
    pub exclusive: bool,
    /// Queue flag.
    pub durable: bool,
    /// Queue flag.
    pub queue_auto_delete: bool,
    /// Exchange flag.
    pub exchange_durable: bool,
    /// Exchange flag.
    pub exchange_auto_delete: bool,
    /// `queue.delete` when the pipeline stops (its messages are lost).
    pub delete_queue_on_stop: bool,
    /// Acks with `multiple=true`.
    pub multiple_ack: bool,
    /// The `requeue` flag of the nack of a failed job.
    pub requeue_on_fail: bool,
    /// How long a redial may try; None: for ever.
    pub redial_timeout: Option<Duration>,
    /// The consumer tag.
    pub consumer_id: String,
    /// `queue.declare` arguments.
    pub queue_headers: FieldTable,
}

impl Options {
    fn defaults(addr: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            priority: 10,
            prefetch: 10,
            queue: String::new(),
            exchange: "amqp.default".into(),
            exchange_type: "direct".into(),
            routing_key: String::new(),
            exclusive: false,
            durable: false,
            queue_auto_delete: false,
            exchange_durable: false,
            exchange_auto_delete: false,
            delete_queue_on_stop: false,
            multiple_ack: false,
            requeue_on_fail: false,
            redial_timeout: Some(Duration::from_secs(60)),
            consumer_id: format!("roadrunner-{}", crate::uuid::new_v4()),
            queue_headers: FieldTable::default(),
        }
    }

    /// Reads `jobs.pipelines.<name>.config` (0 priority, prefetch and redial timeout take
    /// the defaults, as in rr's YAML path).
    ///
    /// # Errors
    /// A value of the wrong type, a name too long for AMQP.
    pub fn read(reader: &Reader<'_>, name: &str, addr: &str) -> Result<Self, ConfigError> {
        let key = |k: &str| format!("jobs.pipelines.{name}.config.{k}");
        let mut options = Self::defaults(addr);
        if let Some(priority) = reader.unsigned(&key("priority"))?.filter(|p| *p > 0) {
            options.priority = i64::try_from(priority).unwrap_or(i64::MAX);
        }
        if let Some(prefetch) = reader.unsigned(&key("prefetch"))?.filter(|p| *p > 0) {
            options.prefetch = u16::try_from(prefetch).unwrap_or(u16::MAX);
        }
        for (field, target) in options.texts() {
            if let Some(value) = reader.string(&key(field))?.filter(|v| !v.is_empty()) {
                *target = value;
            }
        }
        for (field, target) in options.flags() {
            if let Some(value) = reader.bool(&key(field))? {
                *target = value;
            }
        }
        if let Some(timeout) = reader
            .seconds(&key("redial_timeout"))?
            .filter(|d| !d.is_zero())
        {
            options.redial_timeout = Some(timeout);
        }
        if let Some(node) = reader.node(&key("queue_headers")) {
            options.queue_headers = yaml_table(&node.value).map_err(|message| ConfigError {
                path: key("queue_headers"),
                line: node.line,
                message,
            })?;
        }
        options.check().map_err(|message| ConfigError {
            path: format!("jobs.pipelines.{name}.config"),
            line: reader
                .node(&format!("jobs.pipelines.{name}"))
                .map_or(0, |n| n.line),
            message,
        })?;
        Ok(options)
    }

    /// Reads a `jobs.Declare` map: strings throughout, `true`/`false` for flags (any other
    /// text is false, as in rr), `queue_headers` as JSON text (`[]`, `{}`, `""`, `null`: none).
    ///
    /// # Errors
    /// `queue_headers` that is not a JSON object, a name too long for AMQP.
    pub fn from_declare(map: &HashMap<String, String>, addr: &str) -> Result<Self, String> {
        let mut options = Self::defaults(addr);
        if let Some(text) = map.get("prefetch") {
            options.prefetch = text.trim().parse().unwrap_or_else(|_| {
                tracing::warn!(target: "jobs", prefetch = %text, "prefetch parse, driver will use default (10) prefetch");
                10
            });
        }
        for (field, target) in options.texts() {
            if let Some(value) = map.get(field).filter(|v| !v.is_empty()) {
                value.clone_into(target);
            }
        }
        for (field, target) in options.flags() {
            if let Some(value) = map.get(field) {
                *target = value == "true";
            }
        }
        if let Some(text) = map.get("redial_timeout") {
            options.redial_timeout = match text.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(seconds) => Some(Duration::from_secs(seconds)),
                Err(_) => Some(Duration::from_secs(60)),
            };
        }
        if let Some(text) = map.get("queue_headers") {
            options.queue_headers = json_table(text)?;
        }
        options.check()?;
        Ok(options)
    }

    /// The string options by their key.
    fn texts(&mut self) -> [(&'static str, &mut String); 5] {
        [
            ("queue", &mut self.queue),
            ("exchange", &mut self.exchange),
            ("exchange_type", &mut self.exchange_type),
            ("routing_key", &mut self.routing_key),
            ("consumer_id", &mut self.consumer_id),
        ]
    }

    /// The flags by their key.
    fn flags(&mut self) -> [(&'static str, &mut bool); 8] {
        [
            ("exclusive", &mut self.exclusive),
            ("durable", &mut self.durable),
            ("queue_auto_delete", &mut self.queue_auto_delete),
            ("exchange_durable", &mut self.exchange_durable),
            ("exchange_auto_delete", &mut self.exchange_auto_delete),
            ("delete_queue_on_stop", &mut self.delete_queue_on_stop),
            ("multiple_ack", &mut self.multiple_ack),
            ("requeue_on_fail", &mut self.requeue_on_fail),
        ]
    }

    /// Names AMQP cannot carry (a short string is at most 255 bytes).
    fn check(&self) -> Result<(), String> {
        for (field, value) in [
            ("queue", &self.queue),
            ("exchange", &self.exchange),
            ("exchange_type", &self.exchange_type),
            ("routing_key", &self.routing_key),
            ("consumer_id", &self.consumer_id),
        ] {
            if value.len() > 255 {
                return Err(format!(
                    "{field} is {} bytes long, AMQP allows 255",
                    value.len()
                ));
            }
        }
        Ok(())
    }
}

/// A short string, or the error for one over 255 bytes.
///
/// # Errors
/// Over 255 bytes.
pub fn short(text: &str) -> Result<ShortString, String> {
    ShortString::try_new(text)
        .map_err(|_| format!("{text:?} is over 255 bytes, too long for an AMQP name"))
}

/// YAML `queue_headers`: ints as signed 32-bit (`I`, or 64-bit when wider), strings as long
/// strings, bools, floats as doubles.
fn yaml_table(value: &Value) -> Result<FieldTable, String> {
    let Value::Map(entries) = value else {
        return match value {
            Value::Null => Ok(FieldTable::default()),
            _ => Err("expected a map of queue arguments".into()),
        };
    };
    let mut table = FieldTable::default();
    for (key, node) in entries {
        let value = match &node.value {
            Value::Int(n) => {
                i32::try_from(*n).map_or(AMQPValue::LongLongInt(*n), AMQPValue::LongInt)
            }
            Value::Str(text) => AMQPValue::LongString(LongString::from(text.as_str())),
            Value::Bool(b) => AMQPValue::Boolean(*b),
            Value::Float(f) => AMQPValue::Double(*f),
            _ => return Err(format!("queue argument {key}: expected a scalar")),
        };
        table.insert(short(key)?, value);
    }
    Ok(table)
}

/// Declare's `queue_headers` JSON. Integers become signed 64-bit (`l`; rr makes every number
/// a double, which RabbitMQ refuses for `x-message-ttl` and the like).
fn json_table(text: &str) -> Result<FieldTable, String> {
    let trimmed = text.trim();
    if matches!(trimmed, "" | "[]" | "{}" | "null") {
        return Ok(FieldTable::default());
    }
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(trimmed)
        .map_err(|error| {
            tracing::warn!(target: "jobs", %error, "failed to unmarshal headers");
            format!("queue_headers: {error}")
        })?;
    let mut table = FieldTable::default();
    for (key, value) in object {
        let value = match value {
            serde_json::Value::Bool(b) => AMQPValue::Boolean(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(int) => AMQPValue::LongLongInt(int),
                None => AMQPValue::Double(n.as_f64().unwrap_or_default()),
            },
            serde_json::Value::String(text) => AMQPValue::LongString(LongString::from(text)),
            other => AMQPValue::LongString(LongString::from(other.to_string())),
        };
        table.insert(short(&key)?, value);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declare_maps_read_as_rr_reads_them() {
        let map: HashMap<String, String> = [
            ("queue", "q"),
            ("routing_key", "rk"),
            ("durable", "true"),
            ("exclusive", "yes"),
            ("prefetch", "many"),
            ("redial_timeout", "0"),
            ("queue_headers", "[]"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let options = Options::from_declare(&map, DEFAULT_ADDR).unwrap();
        assert_eq!(
            (options.queue.as_str(), options.routing_key.as_str()),
            ("q", "rk")
        );
        assert!(options.durable);
        assert!(!options.exclusive, "any text but true is false");
        assert_eq!(options.prefetch, 10, "rr's intent, not its 0");
        assert_eq!(options.redial_timeout, None);
        assert!(options.queue_headers.inner().is_empty());
        assert_eq!(options.exchange, "amqp.default");
        assert!(options.consumer_id.starts_with("roadrunner-"));
    }

    #[test]
    fn an_empty_path_is_the_default_vhost() {
        assert_eq!(
            default_vhost("amqp://guest:guest@127.0.0.1:5672/"),
            "amqp://guest:guest@127.0.0.1:5672/%2f"
        );
        assert_eq!(default_vhost("amqp://h"), "amqp://h/%2f");
        assert_eq!(
            default_vhost("amqp://h/?heartbeat=10"),
            "amqp://h/%2f?heartbeat=10"
        );
        assert_eq!(default_vhost("amqp://h/app"), "amqp://h/app");
    }

    #[test]
    fn declare_queue_headers_keep_integers_integral() {
        let table = json_table(r#"{"x-message-ttl": 5000, "x-queue-type": "quorum"}"#).unwrap();
        assert_eq!(
            table.inner().get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(5000))
        );
        assert!(json_table("[1]").is_err());
        let long = "x".repeat(256);
        assert!(json_table(&format!(r#"{{"{long}": 1}}"#)).is_err());
    }
}
