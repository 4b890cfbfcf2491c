//! The `metrics` plugin (spec metrics): a Prometheus scrape listener, the application's
//! collectors (from `metrics.collect` and the `metrics` RPC service), and what the other
//! plugins export ([`Service::collect`]: the http pool's gauges, `http_metrics`, the pool
//! histograms).

pub mod exposition;
pub mod pool;
mod process;
pub mod summary;
pub mod user;

use super::plain_http::{self, PlainAnswer};
use super::rpc::{Reply, RpcService};
use super::stream::{self, Listener};
use super::{listener, Directory, LocalFuture, Plugin, SectionContext, Service, StartContext};
use crate::config::values::Reader;
use crate::config::ConfigError;
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use user::{Collector, CollectorSpec, Op, Update};

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "metrics",
    configure,
};

/// A scrape must be read and answered within this (rr: 2 min read and write timeouts).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(120);

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("metrics") {
        return Ok(None);
    }
    Ok(Some(Box::new(MetricsSection::read(ctx.reader)?)))
}

/// `metrics`.
#[derive(Debug)]
pub struct MetricsSection {
    /// `host:port` (`127.0.0.1:2112` when empty).
    pub address: String,
    /// `collect`, by handle.
    pub collectors: BTreeMap<String, Collector>,
}

impl MetricsSection {
    /// Reads `metrics`.
    ///
    /// # Errors
    /// A collector of an unknown type (rr's text), invalid buckets or names, two
    /// collectors with one full name.
    pub fn read(reader: &Reader<'_>) -> Result<Self, ConfigError> {
        let address = reader
            .string("metrics.address")?
            .filter(|address| !address.is_empty())
            .unwrap_or_else(|| "127.0.0.1:2112".into());
        let mut collectors = BTreeMap::new();
        if let Some(node) = reader.node("metrics.collect") {
            let specs: BTreeMap<String, CollectorSpec> = serde_json::from_value(node.to_json())
                .map_err(|error| ConfigError {
                    path: "metrics.collect".into(),
                    line: node.line,
                    message: error.to_string(),
                })?;
            for (name, spec) in specs {
                let path = format!("metrics.collect.{name}");
                let line = reader.node(&path).map_or(node.line, |n| n.line);
                let collector = Collector::new(&name, &spec).map_err(|error| ConfigError {
                    path: path.clone(),
                    line,
                    message: if error.starts_with("unknown collector type") {
                        format!("invalid metric type `{}` for `{name}`", spec.kind)
                    } else {
                        error
                    },
                })?;
                if collectors
                    .values()
                    .any(|other: &Collector| other.full_name() == collector.full_name())
                {
                    return Err(ConfigError {
                        path,
                        line,
                        message: "duplicate metrics collector registration attempted".into(),
                    });
                }
                collectors.insert(name, collector);
            }
        }
        Ok(Self {
            address,
            collectors,
        })
    }
}

#[derive(Debug)]
struct MetricsShared {
    collectors: Mutex<BTreeMap<String, Collector>>,
    directory: Arc<Directory>,
}

/// The running plugin.
#[derive(Debug)]
pub struct MetricsPlugin {
    shared: Arc<MetricsShared>,
}

impl Plugin for MetricsSection {
    fn name(&self) -> &'static str {
        "metrics"
    }

    /// Binds `metrics.address` (on shard 0) and serves scrapes.
    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        let address = listener::resolve(&self.address)
            .map_err(|error| format!("metrics: address {}: {error}", self.address))?;
        let socket = listener::bind_reuseport(address, 1, listener::Sharing::Exclusive)
            .map_err(|error| {
                format!(
                    "listen tcp {address}: {}",
                    listener::bind_error_text(&error)
                )
            })?
            .remove(0);
        let address = socket.local_addr().map_err(|e| e.to_string())?;
        let shared = Arc::new(MetricsShared {
            collectors: Mutex::new(self.collectors),
            directory: Arc::clone(ctx.directory),
        });
        let for_loop = Arc::clone(&shared);
        let lifecycle = Arc::clone(ctx.lifecycle);
        ctx.shards.spawn_on(0, move |shard| {
            let backend = shard.backend();
            stream::accept_loop(
                Listener::Tcp(socket),
                backend,
                lifecycle,
                "metrics",
                move |stream, _| {
                    let shared = Arc::clone(&for_loop);
                    let deadline = tokio::time::Instant::now() + SCRAPE_TIMEOUT;
                    tokio::task::spawn_local(plain_http::answer_once(
                        stream,
                        deadline,
                        move |head, buf| {
                            let gzip = super::http::gzip::accepts_gzip(
                                head.values(buf, "accept-encoding"),
                            );
                            scrape(&shared, gzip)
                        },
                    ));
                },
            )
        });
        tracing::info!(target: "metrics", %address, "metrics server listening");
        Ok(Arc::new(MetricsPlugin { shared }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Every family: the process's, each service's, the application's; as text, gzipped when
/// the scraper accepts it.
fn scrape(shared: &MetricsShared, gzip: bool) -> PlainAnswer {
    let mut families = process::families();
    for service in shared.directory.services() {
        service.collect(&mut families);
    }
    families.extend(
        shared
            .collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values_mut()
            .map(Collector::family),
    );
    let mut text = String::with_capacity(16 * 1024);
    exposition::render(&mut families, &mut text);
    let (body, headers) = if gzip {
        (
            super::http::gzip::compress(text.as_bytes()),
            vec![("Content-Encoding", "gzip")],
        )
    } else {
        (text.into_bytes(), Vec::new())
    };
    PlainAnswer {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        headers,
        body,
    }
}

impl Service for MetricsPlugin {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn rpc_services(&self) -> Vec<&dyn RpcService> {
        vec![self]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `metrics.Add`, `Sub`, `Set`, `Observe`, `Declare`, `Unregister` (JSON, as
/// `spiral/roadrunner-metrics` calls them).
impl RpcService for MetricsPlugin {
    fn service(&self) -> &'static str {
        "metrics"
    }

    fn call<'a>(
        &'a self,
        method: &'a str,
        arg: serde_json::Value,
    ) -> Option<LocalFuture<'a, Result<Reply, String>>> {
        let op = match method {
            "Add" => Some(Op::Add),
            "Sub" => Some(Op::Sub),
            "Set" => Some(Op::Set),
            "Observe" => Some(Op::Observe),
            "Declare" | "Unregister" => None,
            _ => return None,
        };
        let mut collectors = self
            .shared
            .collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let result = match (op, method) {
            (Some(op), _) => update(&mut collectors, op, arg),
            (None, "Declare") => declare(&mut collectors, arg),
            (None, _) => unregister(&mut collectors, &arg),
        };
        Some(super::rpc::services::ready(result))
    }
}

fn update(
    collectors: &mut BTreeMap<String, Collector>,
    op: Op,
    arg: serde_json::Value,
) -> Result<Reply, String> {
    let prefix = op.prefix();
    let update: Update =
        serde_json::from_value(lower_keys(arg)).map_err(|error| format!("{prefix}: {error}"))?;
    let Some(collector) = collectors.get_mut(&update.name) else {
        return Err(if op == Op::Add {
            format!(
                "{prefix}: undefined collector {}, try first Declare the desired collector",
                update.name
            )
        } else {
            format!("{prefix}: undefined collector {}", update.name)
        });
    };
    collector
        .update(&update.name, op, update.value, &update.labels)
        .map(|()| Reply::Json(serde_json::Value::Bool(true)))
        .map_err(|error| format!("{prefix}: {error}"))
}

fn declare(
    collectors: &mut BTreeMap<String, Collector>,
    arg: serde_json::Value,
) -> Result<Reply, String> {
    const PREFIX: &str = "metrics_plugin_declare";
    let arg = lower_keys(arg);
    let name = arg
        .get("name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let spec: CollectorSpec = serde_json::from_value(lower_keys(
        arg.get("collector").cloned().unwrap_or_default(),
    ))
    .map_err(|error| format!("{PREFIX}: {error}"))?;
    if collectors.contains_key(&name) {
        tracing::warn!(target: "metrics", name, "metric with provided name already exist");
        return Ok(Reply::Json(serde_json::Value::Bool(true)));
    }
    let collector = Collector::new(&name, &spec).map_err(|error| format!("{PREFIX}: {error}"))?;
    if collectors
        .values()
        .any(|other| other.full_name() == collector.full_name())
    {
        return Err(format!(
            "{PREFIX}: duplicate metrics collector registration attempted"
        ));
    }
    collectors.insert(name, collector);
    Ok(Reply::Json(serde_json::Value::Bool(true)))
}

fn unregister(
    collectors: &mut BTreeMap<String, Collector>,
    arg: &serde_json::Value,
) -> Result<Reply, String> {
    let name = arg.as_str().unwrap_or_default();
    match collectors.remove(name) {
        Some(_) => Ok(Reply::Json(serde_json::Value::Bool(true))),
        None => Err(format!(
            "metrics_plugin_unregister: undefined collector {name}"
        )),
    }
}

/// Go decodes JSON fields case-insensitively: the keys of an object, lower-cased.
fn lower_keys(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(key, value)| (key.to_lowercase(), value))
            .collect(),
        other => other,
    }
}
