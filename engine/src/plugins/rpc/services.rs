//! RPC services: the trait a plugin implements to expose one, the codecs that carry
//! arguments and replies (spec relay-protocol §6.4), and the built-in services `informer`,
//! `resetter` and `rpc` (spec config-cli-rpc §3.2).

use super::super::{Directory, LocalFuture};
use ringrunner_protocol::rpc::Codec;
use serde_json::{json, Value};
use std::sync::Arc;

/// What a method hands back: a value (encoded by the request's codec) or bytes (Go's
/// `[]byte`: sent as is with the raw codec, as base64 in JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A JSON-shaped value.
    Json(Value),
    /// Bytes.
    Bytes(Vec<u8>),
}

/// An RPC service: `Service.Method` calls whose service part is [`RpcService::service`].
pub trait RpcService: Send + Sync {
    /// The service name (`informer`).
    fn service(&self) -> &'static str;

    /// Runs `method` with its decoded argument (`null` when the request carried none);
    /// `None` when the service has no such method. An error is sent back as the reply's
    /// error text.
    fn call<'a>(
        &'a self,
        method: &'a str,
        arg: Value,
    ) -> Option<LocalFuture<'a, Result<Reply, String>>>;

    /// Runs `method` with a protobuf argument (the message's bytes as sent) and gives the
    /// reply message's bytes; `None` when the method takes no protobuf message (the
    /// services of rr's PHP SDKs for jobs, kv and metrics call theirs this way).
    fn call_proto<'a>(
        &'a self,
        _method: &'a str,
        _message: &'a [u8],
    ) -> Option<LocalFuture<'a, Result<Vec<u8>, String>>> {
        None
    }
}

/// A reply known at once, as the future [`RpcService::call`] hands back.
#[must_use]
pub fn ready(result: Result<Reply, String>) -> LocalFuture<'static, Result<Reply, String>> {
    Box::pin(std::future::ready(result))
}

/// Decodes a request's argument: JSON as JSON, raw bytes as a string, nothing as `null`.
/// (Protobuf arguments go to [`RpcService::call_proto`] undecoded.)
///
/// # Errors
/// Malformed JSON; a codec ringrunner does not speak (gob, msgpack) or protobuf for a
/// method whose argument is a plain string or boolean.
pub fn decode_arg(codec: Codec, body: &[u8]) -> Result<Value, String> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    match codec {
        Codec::Json => serde_json::from_slice(body)
            .map_err(|error| format!("rpc: can't decode the JSON argument: {error}")),
        Codec::Raw => Ok(Value::String(String::from_utf8_lossy(body).into_owned())),
        other => Err(unsupported(other)),
    }
}

/// Encodes a method's reply with the request's codec.
///
/// # Errors
/// A value the raw codec cannot carry; a codec ringrunner does not speak.
pub fn encode_reply(codec: Codec, reply: Reply) -> Result<Vec<u8>, String> {
    match (codec, reply) {
        (Codec::Json, Reply::Json(value)) => Ok(serde_json::to_vec(&value).unwrap_or_default()),
        (Codec::Json, Reply::Bytes(bytes)) => {
            Ok(serde_json::to_vec(&Value::String(base64(&bytes))).unwrap_or_default())
        }
        (Codec::Raw, Reply::Bytes(bytes)) => Ok(bytes),
        (Codec::Raw, Reply::Json(Value::String(text))) => Ok(text.into_bytes()),
        (Codec::Raw, Reply::Json(_)) => {
            Err("rpc: the raw codec carries bytes only; this method replies with a value: use the JSON codec".into())
        }
        (other, _) => Err(unsupported(other)),
    }
}

fn unsupported(codec: Codec) -> String {
    format!("rpc: the {codec:?} codec is not supported by ringrunner for this method; use the JSON or raw codec")
}

/// Reads standard base64 (padding optional), as Go's `encoding/json` reads a `[]byte`; None
/// for anything else.
#[must_use]
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u32> = text
        .trim_end_matches('=')
        .bytes()
        .map(|c| match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |word, (i, d)| word | d << (18 - 6 * i));
        for i in 0..chunk.len() - 1 {
            out.push((word >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// Standard base64 with padding, as Go's `encoding/json` writes a `[]byte`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = chunk.iter().enumerate().fold(0u32, |word, (i, byte)| {
            word | u32::from(*byte) << (16 - 8 * i)
        });
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(word >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The plugin name a method's argument names (a JSON string; anything else names none).
fn plugin_name(arg: &Value) -> &str {
    arg.as_str().unwrap_or_default()
}

/// The names of the plugins that run processes (what `informer.List` and `resetter.List`
/// answer), as a ready reply.
fn pool_plugins(directory: &Directory) -> LocalFuture<'static, Result<Reply, String>> {
    let names: Vec<&str> = directory
        .services()
        .iter()
        .filter(|service| service.has_workers())
        .map(|service| service.name())
        .collect();
    ready(Ok(Reply::Json(json!(names))))
}

/// The pool of plugin `name`.
fn pool_of(directory: &Directory, name: &str) -> Option<crate::pool::Pool> {
    directory
        .find(name)
        .and_then(|service| service.pool().cloned())
}

/// `informer`: the plugins with workers, their workers, add and remove one.
#[derive(Debug)]
pub struct Informer {
    /// The running plugins.
    pub directory: Arc<Directory>,
}

impl RpcService for Informer {
    fn service(&self) -> &'static str {
        "informer"
    }

    fn call<'a>(
        &'a self,
        method: &'a str,
        arg: Value,
    ) -> Option<LocalFuture<'a, Result<Reply, String>>> {
        let directory = &*self.directory;
        Some(match method {
            "List" => pool_plugins(directory),
            "Workers" => {
                let workers = directory
                    .find(plugin_name(&arg))
                    .and_then(|service| service.workers())
                    .filter(|workers| !workers.is_empty())
                    .map(|workers| workers.iter().map(worker_json).collect::<Vec<_>>());
                ready(Ok(Reply::Json(json!({ "workers": workers }))))
            }
            // rr answers null for every plugin that is not a jobs plugin.
            "Jobs" => {
                let jobs = directory
                    .find(plugin_name(&arg))
                    .and_then(|service| service.jobs());
                Box::pin(async move {
                    Ok(Reply::Json(match jobs {
                        Some(jobs) => jobs.await,
                        None => Value::Null,
                    }))
                })
            }
            "AddWorker" | "RemoveWorker" => {
                let name = plugin_name(&arg).to_owned();
                let pool = pool_of(directory, &name);
                let add = method == "AddWorker";
                Box::pin(async move {
                    let pool = pool.ok_or_else(|| {
                        format!("plugin {name} does not support workers management")
                    })?;
                    if add {
                        pool.add_worker().await.map_err(|error| error.to_string())?;
                    } else {
                        pool.remove_worker();
                    }
                    // rr leaves the reply untouched: false.
                    Ok(Reply::Json(Value::Bool(false)))
                })
            }
            _ => return None,
        })
    }
}

/// A worker as `informer.Workers` lists it (field names and types as rr's).
fn worker_json(worker: &crate::pool::WorkerInfo) -> Value {
    json!({
        "pid": worker.pid,
        "status": worker.state as u8,
        "numExecs": worker.num_execs,
        "created": worker.created_unix_ns,
        "memoryUsage": worker.memory_usage,
        "CPUPercent": worker.cpu_percent,
        "command": worker.command,
        "statusStr": worker.state.name(),
    })
}

/// `resetter`: the plugins that can be reset, and the reset.
#[derive(Debug)]
pub struct Resetter {
    /// The running plugins.
    pub directory: Arc<Directory>,
}

impl RpcService for Resetter {
    fn service(&self) -> &'static str {
        "resetter"
    }

    fn call<'a>(
        &'a self,
        method: &'a str,
        arg: Value,
    ) -> Option<LocalFuture<'a, Result<Reply, String>>> {
        let directory = &*self.directory;
        Some(match method {
            "List" => pool_plugins(directory),
            "Reset" => {
                let name = plugin_name(&arg).to_owned();
                let pool = pool_of(directory, &name);
                let service = directory.find(&name);
                Box::pin(async move {
                    let no_such = || {
                        format!("resetter_rpc_reset: resetter_plugin_reset_by_name: no such plugin: {name}")
                    };
                    tracing::info!(target: "resetter", plugin = %name, "resetting plugin");
                    match (pool, service.as_ref().and_then(|service| service.reset())) {
                        (_, Some(reset)) => reset.await,
                        (Some(pool), None) => pool.reset().await,
                        (None, None) => return Err(no_such()),
                    }
                    Ok(Reply::Json(Value::Bool(true)))
                })
            }
            _ => return None,
        })
    }
}

/// `rpc`: the version and the effective config.
#[derive(Debug)]
pub struct RpcInfo {
    /// The effective config as JSON.
    pub config_json: Vec<u8>,
}

impl RpcService for RpcInfo {
    fn service(&self) -> &'static str {
        "rpc"
    }

    fn call<'a>(
        &'a self,
        method: &'a str,
        _arg: Value,
    ) -> Option<LocalFuture<'a, Result<Reply, String>>> {
        let reply = match method {
            "Version" => Reply::Json(Value::String(crate::RR_COMPATIBLE_VERSION.into())),
            "Config" => Reply::Bytes(self.config_json.clone()),
            _ => return None,
        };
        Some(ready(Ok(reply)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_reads_back_what_it_writes() {
        for bytes in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\x00\xff\x10"] {
            assert_eq!(base64_decode(&base64(bytes)).as_deref(), Some(bytes));
        }
        assert_eq!(base64_decode("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(base64_decode("Zm9v!"), None);
        assert_eq!(base64_decode("Z"), None);
    }

    #[test]
    fn base64_matches_go_s_standard_encoding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn codecs_carry_arguments_and_replies() {
        assert_eq!(decode_arg(Codec::Json, b"\"http\""), Ok(json!("http")));
        assert_eq!(decode_arg(Codec::Raw, b"http"), Ok(json!("http")));
        assert_eq!(decode_arg(Codec::Gob, b""), Ok(Value::Null));
        assert!(decode_arg(Codec::Json, b"{")
            .unwrap_err()
            .starts_with("rpc: can't decode"));
        assert!(decode_arg(Codec::Gob, b"\x01").is_err());
        assert_eq!(
            encode_reply(Codec::Json, Reply::Json(json!({"workers": null}))),
            Ok(b"{\"workers\":null}".to_vec())
        );
        assert_eq!(
            encode_reply(Codec::Raw, Reply::Bytes(b"{}".to_vec())),
            Ok(b"{}".to_vec())
        );
        assert!(encode_reply(Codec::Raw, Reply::Json(json!(true))).is_err());
        assert!(encode_reply(Codec::Proto, Reply::Json(json!(true))).is_err());
    }
}
