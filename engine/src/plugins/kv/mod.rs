//! The `kv` plugin (spec kv): named storages on the `memory` or `redis` driver, and the RPC
//! service `kv` (Has, Set, MGet, MExpire, TTL, Delete, Clear) with the `kv.v1` protobuf
//! messages `spiral/roadrunner-kv` sends (JSON with the same field names is read too).

mod memory;
mod proto;
mod redis;
pub mod rfc3339;

use super::rpc::{Reply, RpcService};
use super::{LocalFuture, Plugin, SectionContext, Service, StartContext};
use crate::config::values::Reader;
use crate::config::yaml::Value;
use crate::config::ConfigError;
use memory::MemoryStorage;
use prost::Message;
pub use proto::Item;
use proto::{Request, Response};
use redis::{RedisConfig, RedisStorage};
use rfc3339::UnixNanos;
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "kv",
    configure,
};

/// A value larger than this is refused (`Set`): a cache entry this size is a mistake, and
/// it bounds what one call can make the server hold.
pub const VALUE_BYTES_MAX: usize = 16 << 20;

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("kv") {
        return Ok(None);
    }
    Ok(Some(Box::new(KvSection::read(ctx.reader, ctx.warnings)?)))
}

/// A storage's driver and options, as configured.
#[derive(Debug)]
enum Driver {
    Memory,
    Redis(RedisConfig),
}

/// `kv`: the storages by name.
#[derive(Debug)]
pub struct KvSection {
    storages: BTreeMap<String, Driver>,
}

impl KvSection {
    /// Reads `kv` with rr's rules (spec kv §1).
    ///
    /// # Errors
    /// A storage without `driver` (rr's text), a redis option of the wrong type, a redis
    /// cluster or sentinel setup (not supported).
    pub fn read(reader: &Reader<'_>, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        let mut storages = BTreeMap::new();
        let entries = match reader.node("kv").map(|node| &node.value) {
            Some(Value::Map(entries)) => entries.clone(),
            _ => Vec::new(),
        };
        for (name, node) in entries {
            let path = format!("kv.{name}");
            match &node.value {
                Value::Null => continue,
                Value::Map(_) => {}
                _ => {
                    warnings.push(format!("kv.{name}: wrong type detected in the configuration, please, check yaml indentation"));
                    continue;
                }
            }
            let Some(driver) = reader.node(&format!("{path}.driver")) else {
                return Err(ConfigError {
                    path,
                    line: node.line,
                    message: format!("could not find mandatory driver field in the {name} storage"),
                });
            };
            let Value::Str(driver) = &driver.value else {
                continue;
            };
            // Options: `kv.<name>.config`, else a top-level section named like the storage.
            let options = if reader.has(&format!("{path}.config")) {
                format!("{path}.config")
            } else if reader.has(&name) {
                name.clone()
            } else {
                warnings.push(format!("kv.{name}: can't find local or global configuration, this section will be skipped"));
                String::new()
            };
            let driver = match driver.as_str() {
                "memory" => {
                    if !options.is_empty() {
                        // The memory driver has no options (rr ignores `interval`).
                        let _ = reader.node(&options);
                    }
                    Driver::Memory
                }
                "redis" => {
                    if options.is_empty() {
                        return Err(ConfigError {
                            path,
                            line: node.line,
                            message: "config not found by provided key: ".into(),
                        });
                    }
                    Driver::Redis(RedisConfig::read(reader, &options)?)
                }
                other => {
                    warnings.push(format!("kv.{name}: driver {other}: no such constructor was registered (ringrunner has memory and redis)"));
                    continue;
                }
            };
            storages.insert(name, driver);
        }
        Ok(Self { storages })
    }
}

/// A storage, running.
#[derive(Debug)]
enum Storage {
    Memory(MemoryStorage),
    Redis(RedisStorage),
}

/// An item's expiry, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// None: the key stays (and an existing expiry is cleared).
    None,
    /// At this time.
    At(UnixNanos),
}

/// The running plugin.
#[derive(Debug)]
pub struct KvPlugin {
    storages: BTreeMap<String, Storage>,
}

impl Plugin for KvSection {
    fn name(&self) -> &'static str {
        "kv"
    }

    /// Makes the storages; a redis one connects at its first call (as rr: a Redis that is
    /// down at start is reported by the calls, not by the start).
    fn start(self: Box<Self>, _ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        let mut storages = BTreeMap::new();
        for (name, driver) in self.storages {
            let storage = match driver {
                Driver::Memory => Storage::Memory(MemoryStorage::default()),
                Driver::Redis(config) => Storage::Redis(
                    RedisStorage::start(&name, config)
                        .map_err(|error| format!("kv.{name}: {error}"))?,
                ),
            };
            tracing::debug!(target: "kv", storage = %name, "kv storage ready");
            storages.insert(name, storage);
        }
        Ok(Arc::new(KvPlugin { storages }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Service for KvPlugin {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn rpc_services(&self) -> Vec<&dyn RpcService> {
        vec![self]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A kv method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Has,
    Set,
    MGet,
    MExpire,
    Ttl,
    Delete,
    Clear,
}

impl Method {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "Has" => Self::Has,
            "Set" => Self::Set,
            "MGet" => Self::MGet,
            "MExpire" => Self::MExpire,
            "TTL" => Self::Ttl,
            "Delete" => Self::Delete,
            "Clear" => Self::Clear,
            _ => return None,
        })
    }

    /// rr's error prefix (its Delete and Clear say `rcp_delete`).
    fn op(self) -> &'static str {
        match self {
            Self::Has => "rpc_has",
            Self::Set => "rpc_set",
            Self::MGet => "rpc_mget",
            Self::MExpire => "rpc_mexpire",
            Self::Ttl => "rpc_ttl",
            Self::Delete | Self::Clear => "rcp_delete",
        }
    }
}

impl RpcService for KvPlugin {
    fn service(&self) -> &'static str {
        "kv"
    }

    fn call<'a>(
        &'a self,
        method: &'a str,
        arg: serde_json::Value,
    ) -> Option<LocalFuture<'a, Result<Reply, String>>> {
        let method = Method::from_name(method)?;
        Some(Box::pin(async move {
            let request =
                request_from_json(arg).map_err(|error| format!("{}: {error}", method.op()))?;
            let response = self.run(method, request).await?;
            Ok(Reply::Json(response_to_json(&response)))
        }))
    }

    fn call_proto<'a>(
        &'a self,
        method: &'a str,
        message: &'a [u8],
    ) -> Option<LocalFuture<'a, Result<Vec<u8>, String>>> {
        let method = Method::from_name(method)?;
        Some(Box::pin(async move {
            let request =
                Request::decode(message).map_err(|error| format!("{}: {error}", method.op()))?;
            Ok(self.run(method, request).await?.encode_to_vec())
        }))
    }
}

impl KvPlugin {
    /// Runs `method`: rr's checks (spec kv §2.2), then the storage's driver.
    async fn run(&self, method: Method, request: Request) -> Result<Response, String> {
        let op = method.op();
        if request.storage.is_empty() && method != Method::Set {
            return Err(format!("{op}: no storage provided"));
        }
        let Some(storage) = self.storages.get(&request.storage) else {
            return Err(format!("{op}: no such storage: {}", request.storage));
        };
        let keys = || -> Result<Vec<String>, String> {
            if request.items.iter().any(|item| item.key.trim().is_empty()) {
                return Err(format!("{op}: key can't be empty string"));
            }
            Ok(request.items.iter().map(|item| item.key.clone()).collect())
        };
        let item = |key: String, value: Vec<u8>, timeout: String| Item {
            key,
            value,
            timeout,
        };
        let items = match method {
            Method::Has => storage.has(keys()?).await.map(|present| {
                present
                    .into_iter()
                    .map(|key| item(key, Vec::new(), String::new()))
                    .collect()
            }),
            Method::MGet => storage.mget(keys()?).await.map(|values| {
                values
                    .into_iter()
                    .map(|(key, value)| item(key, value, String::new()))
                    .collect()
            }),
            Method::Ttl => storage.ttl(keys()?).await.map(|timeouts| {
                timeouts
                    .into_iter()
                    .map(|(key, timeout)| item(key, Vec::new(), timeout))
                    .collect()
            }),
            Method::Delete => storage.delete(keys()?).await.map(|()| Vec::new()),
            Method::Clear => storage.clear().await.map(|()| Vec::new()),
            Method::Set => storage
                .set(checked_for_set(op, request.items)?)
                .await
                .map(|()| Vec::new()),
            Method::MExpire => storage
                .mexpire(checked_for_mexpire(op, request.items)?)
                .await
                .map(|()| Vec::new()),
        };
        items
            .map(|items| Response { items })
            .map_err(|error| format!("{op}: {error}"))
    }
}

/// Set's items with their expiry read; a value over [`VALUE_BYTES_MAX`] or a malformed time
/// fails the whole call before anything is stored.
fn checked_for_set(op: &str, items: Vec<Item>) -> Result<Vec<(Item, Timeout)>, String> {
    items
        .into_iter()
        .map(|item| {
            if item.value.len() > VALUE_BYTES_MAX {
                return Err(format!(
                    "{op}: the value of key {:?} is {} bytes, over the limit of {} bytes",
                    item.key,
                    item.value.len(),
                    VALUE_BYTES_MAX
                ));
            }
            let timeout = memory::timeout_of(&item).map_err(|e| format!("{op}: {e}"))?;
            Ok((item, timeout))
        })
        .collect()
}

/// MExpire's items as (key, time as sent, time).
fn checked_for_mexpire(
    op: &str,
    items: Vec<Item>,
) -> Result<Vec<(String, String, UnixNanos)>, String> {
    items
        .into_iter()
        .map(|item| {
            if item.timeout.is_empty() || item.key.trim().is_empty() {
                return Err(format!(
                    "{op}: timeout for MExpire is empty or key is empty"
                ));
            }
            let at = rfc3339::parse(&item.timeout).map_err(|e| format!("{op}: {e}"))?;
            Ok((item.key, item.timeout, at))
        })
        .collect()
}

impl Storage {
    async fn has(&self, keys: Vec<String>) -> Result<Vec<String>, String> {
        match self {
            Self::Memory(memory) => Ok(memory.has(&keys)),
            Self::Redis(redis) => redis.has(keys).await,
        }
    }

    async fn mget(&self, keys: Vec<String>) -> Result<Vec<(String, Vec<u8>)>, String> {
        match self {
            Self::Memory(memory) => Ok(memory.mget(&keys)),
            Self::Redis(redis) => redis.mget(keys).await,
        }
    }

    async fn ttl(&self, keys: Vec<String>) -> Result<Vec<(String, String)>, String> {
        match self {
            Self::Memory(memory) => Ok(memory.ttl(&keys)),
            Self::Redis(redis) => redis.ttl(keys).await,
        }
    }

    async fn delete(&self, keys: Vec<String>) -> Result<(), String> {
        match self {
            Self::Memory(memory) => {
                memory.delete(&keys);
                Ok(())
            }
            Self::Redis(redis) => redis.delete(keys).await,
        }
    }

    async fn clear(&self) -> Result<(), String> {
        match self {
            Self::Memory(memory) => {
                memory.clear();
                Ok(())
            }
            Self::Redis(redis) => redis.clear().await,
        }
    }

    async fn set(&self, items: Vec<(Item, Timeout)>) -> Result<(), String> {
        match self {
            Self::Memory(memory) => {
                memory.set(items);
                Ok(())
            }
            Self::Redis(redis) => redis.set(items).await,
        }
    }

    async fn mexpire(&self, items: Vec<(String, String, UnixNanos)>) -> Result<(), String> {
        match self {
            Self::Memory(memory) => {
                memory.mexpire(items);
                Ok(())
            }
            Self::Redis(redis) => redis.mexpire(items).await,
        }
    }
}

/// A request sent as JSON (`{"storage": …, "items": [{"key", "value", "timeout"}]}`, the
/// value a string).
fn request_from_json(arg: serde_json::Value) -> Result<Request, String> {
    if !arg.is_object() {
        return Err("expected a kv.v1.Request object".into());
    }
    let text = |value: Option<&serde_json::Value>| {
        value
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let items = arg
        .get("items")
        .and_then(serde_json::Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|item| Item {
                    key: text(item.get("key")),
                    value: text(item.get("value")).into_bytes(),
                    timeout: text(item.get("timeout")),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Request {
        storage: text(arg.get("storage")),
        items,
    })
}

fn response_to_json(response: &Response) -> serde_json::Value {
    let items: Vec<serde_json::Value> = response
        .items
        .iter()
        .map(|item| {
            serde_json::json!({
                "key": item.key,
                "value": String::from_utf8_lossy(&item.value),
                "timeout": item.timeout,
            })
        })
        .collect();
    serde_json::json!({ "items": items })
}
