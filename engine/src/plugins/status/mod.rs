//! The `status` plugin (spec http §7): `/health` and `/ready` on their own listener.

mod config;

pub use config::StatusSection;

use super::plain_http::{self, PlainAnswer};
use super::rpc::{Reply, RpcService};
use super::stream::{Accepting, Listener};
use super::StartContext;
use super::{listener, Directory, Lifecycle, LocalFuture, Plugin, SectionContext, Service};
use crate::aio::{Backend, Stream};
use crate::config::ConfigError;
use crate::pool::{Pool, WorkerState};
use std::any::Any;
use std::sync::Arc;

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "status",
    configure,
};

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("status") {
        return Ok(None);
    }
    let section = StatusSection::read(ctx.reader)?;
    if section.address.is_empty() {
        // rr starts with such a section and answers nothing there.
        ctx.warnings
            .push("status section without an address: the status plugin serves nothing".into());
        return Ok(None);
    }
    Ok(Some(Box::new(section)))
}

#[derive(Debug)]
struct StatusShared {
    config: StatusSection,
    directory: Arc<Directory>,
    lifecycle: Arc<Lifecycle>,
}

impl StatusShared {
    /// The plugins that run workers, as `(name, pool)`.
    fn checked(&self) -> impl Iterator<Item = (&'static str, &Pool)> {
        self.directory
            .services()
            .iter()
            .filter_map(|service| service.pool().map(|pool| (service.name(), pool)))
    }
}

/// The running plugin.
#[derive(Debug)]
pub struct StatusPlugin {
    shared: Arc<StatusShared>,
}

impl Plugin for StatusSection {
    fn name(&self) -> &'static str {
        "status"
    }

    /// Binds `status.address` (on shard 0) and serves.
    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        let address = listener::resolve(&self.address)
            .map_err(|error| format!("status: address {}: {error}", self.address))?;
        let socket = listener::bind_reuseport(address, 1, listener::Sharing::Exclusive)
            .map_err(|error| {
                format!(
                    "listen tcp {address}: {}",
                    listener::bind_error_text(&error)
                )
            })?
            .remove(0);
        let address = socket.local_addr().map_err(|e| e.to_string())?;
        let shared = Arc::new(StatusShared {
            config: *self,
            directory: Arc::clone(ctx.directory),
            lifecycle: Arc::clone(ctx.lifecycle),
        });
        let for_loop = Arc::clone(&shared);
        ctx.shards.spawn_on(0, move |shard| {
            accept_loop(socket, shard.backend(), for_loop)
        });
        tracing::info!(target: "status", %address, "status server listening");
        Ok(Arc::new(StatusPlugin { shared }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Service for StatusPlugin {
    fn name(&self) -> &'static str {
        "status"
    }

    fn rpc_services(&self) -> Vec<&dyn RpcService> {
        vec![self]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `status.Status` and `status.Ready`: a plugin's health or readiness as an HTTP code.
impl RpcService for StatusPlugin {
    fn service(&self) -> &'static str {
        "status"
    }

    fn call<'a>(
        &'a self,
        method: &'a str,
        arg: serde_json::Value,
    ) -> Option<LocalFuture<'a, Result<Reply, String>>> {
        let ready_check = match method {
            "Status" => false,
            "Ready" => true,
            _ => return None,
        };
        let name = arg.as_str().unwrap_or_default();
        let result = match self.shared.checked().find(|(plugin, _)| *plugin == name) {
            Some((_, pool)) => {
                let code = plugin_code(&self.shared, pool, ready_check);
                Ok(Reply::Json(serde_json::json!({ "code": code })))
            }
            None => Err(format!("no such plugin: {name}")),
        };
        Some(super::rpc::services::ready(result))
    }
}

/// 200 when the pool has a worker to serve with (`/ready`: an idle one), else the
/// configured unavailable code; during shutdown `/ready` is unavailable at once.
fn plugin_code(shared: &StatusShared, pool: &Pool, ready_check: bool) -> u16 {
    let unavailable = shared.config.unavailable_status_code;
    if shared.lifecycle.is_stopping() {
        return if ready_check { unavailable } else { 200 };
    }
    let healthy = pool.worker_states().into_iter().any(|state| {
        state == WorkerState::Ready || (!ready_check && state == WorkerState::Working)
    });
    if healthy {
        200
    } else {
        unavailable
    }
}

async fn accept_loop(socket: std::net::TcpListener, backend: Backend, shared: Arc<StatusShared>) {
    let listener = match Accepting::new(Listener::Tcp(socket), backend) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(target: "status", %error, "listener cannot be polled");
            return;
        }
    };
    let mut backoff = crate::accept_backoff::AcceptBackoff::default();
    loop {
        // The status listener answers during shutdown (that is what `/ready` is for); it
        // ends with its shard.
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff.succeeded();
                tokio::task::spawn_local(serve(stream, Arc::clone(&shared)));
            }
            Err(error) => {
                let retry_in = backoff.failed();
                tracing::error!(target: "status", %error, ?retry_in, "accept failed");
                tokio::time::sleep(retry_in).await;
            }
        }
    }
}

async fn serve(stream: Stream, shared: Arc<StatusShared>) {
    let deadline = tokio::time::Instant::now() + shared.config.check_timeout;
    plain_http::answer_once(stream, deadline, |head, buf| {
        let target = String::from_utf8_lossy(&buf[head.target.clone()]);
        let (status, body) = answer(&shared, &target);
        PlainAnswer {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    })
    .await;
}

/// Status and body for a request target (`/health?plugin=http`).
fn answer(shared: &StatusShared, target: &str) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let ready_check = match path {
        "/health" => false,
        "/ready" => true,
        _ => return (404, "404 page not found\n".into()),
    };
    let unavailable = shared.config.unavailable_status_code;
    if shared.lifecycle.is_stopping() {
        let status = if ready_check { unavailable } else { 200 };
        return (status, "service is shutting down\n".into());
    }
    let requested: Vec<&str> = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("plugin="))
        .collect();
    let mut status = 200;
    let mut reports = Vec::new();
    for (name, pool) in shared.checked() {
        if !requested.is_empty() && !requested.contains(&name) {
            continue;
        }
        let code = plugin_code(shared, pool, ready_check);
        let message = if code == 200 {
            ""
        } else {
            status = unavailable;
            "internal server error, see logs"
        };
        // Written by hand to keep rr's key order.
        reports.push(format!(
            "{{\"plugin_name\":{},\"error_message\":\"{message}\",\"status_code\":{code}}}",
            serde_json::Value::from(name)
        ));
    }
    (status, format!("[{}]", reports.join(",")))
}
