//! The `status` plugin (spec http §7): `/health` and `/ready` on their own listener.

use super::http::head::Head;
use super::http::wire;
use super::{listener, Lifecycle};
use crate::config::StatusSection;
use crate::pool::{Pool, WorkerState};
use crate::runtime::Shards;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

/// A plugin the status endpoints can check.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Its name (`http`).
    pub name: String,
    /// Its pool.
    pub pool: Pool,
}

#[derive(Debug)]
struct StatusShared {
    config: StatusSection,
    plugins: Vec<Checked>,
    lifecycle: Arc<Lifecycle>,
}

/// The running plugin.
#[derive(Debug)]
pub struct StatusPlugin {
    address: SocketAddr,
}

impl StatusPlugin {
    /// Binds `status.address` (on shard 0) and serves.
    ///
    /// # Errors
    /// An address that does not resolve or bind.
    pub fn start(
        config: StatusSection,
        plugins: Vec<Checked>,
        shards: &Shards,
        lifecycle: Arc<Lifecycle>,
    ) -> Result<Self, String> {
        let address = listener::resolve(&config.address)
            .map_err(|error| format!("status: address {}: {error}", config.address))?;
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
            config,
            plugins,
            lifecycle,
        });
        shards.spawn_on(0, move || accept_loop(socket, shared));
        Ok(Self { address })
    }

    /// The bound address.
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

async fn accept_loop(socket: std::net::TcpListener, shared: Arc<StatusShared>) {
    let listener = tokio_uring::net::TcpListener::from_std(socket);
    loop {
        // The status listener answers during shutdown (that is what `/ready` is for); it
        // ends with its shard.
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio_uring::spawn(serve(stream, Arc::clone(&shared)));
            }
            Err(error) => {
                tracing::error!(target: "status", %error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve(stream: TcpStream, shared: Arc<StatusShared>) {
    answer_one(&stream, &shared).await;
    // Completes a read cancelled by the timeout, which holds the socket open otherwise.
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

async fn answer_one(stream: &TcpStream, shared: &StatusShared) {
    let mut buf = Vec::with_capacity(4096);
    let mut head = Head::default();
    let deadline = tokio::time::Instant::now() + shared.config.check_timeout;
    loop {
        match Head::parse(&buf, &mut head) {
            Ok(Some(())) => break,
            Ok(None) if buf.len() < 64 * 1024 => {
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(4096);
                }
                let filled = buf.len();
                let read = stream.read(buf.slice(filled..));
                let Ok((result, slice)) = tokio::time::timeout_at(deadline, read).await else {
                    return;
                };
                buf = slice.into_inner();
                if !matches!(result, Ok(n) if n > 0) {
                    return;
                }
            }
            _ => {
                let reply = wire::plain_response(
                    1,
                    400,
                    "400 Bad Request",
                    true,
                    crate::clock::unix_seconds(),
                );
                let _ = stream.write_all(reply).await;
                return;
            }
        }
    }
    let target = String::from_utf8_lossy(&buf[head.target.clone()]).into_owned();
    let (status, body) = answer(shared, &target);
    let mut out = Vec::with_capacity(256);
    wire::status_line(&mut out, 1, status);
    wire::header(&mut out, b"Content-Type", b"text/plain; charset=utf-8");
    wire::date_header(&mut out, crate::clock::unix_seconds());
    wire::header(
        &mut out,
        b"Content-Length",
        body.len().to_string().as_bytes(),
    );
    wire::header(&mut out, b"Connection", b"close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    let _ = stream.write_all(out).await;
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
    for plugin in &shared.plugins {
        if !requested.is_empty() && !requested.contains(&plugin.name.as_str()) {
            continue;
        }
        let healthy = plugin.pool.worker_states().into_iter().any(|state| {
            state == WorkerState::Ready || (!ready_check && state == WorkerState::Working)
        });
        let (code, message) = if healthy {
            (200, "")
        } else {
            status = unavailable;
            (unavailable, "internal server error, see logs")
        };
        // Written by hand to keep rr's key order.
        reports.push(format!(
            "{{\"plugin_name\":{},\"error_message\":\"{message}\",\"status_code\":{code}}}",
            serde_json::Value::from(plugin.name.as_str())
        ));
    }
    (status, format!("[{}]", reports.join(",")))
}
