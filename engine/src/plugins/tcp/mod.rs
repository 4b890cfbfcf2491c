//! The `tcp` plugin (spec tcp-jobs Part A): raw TCP (or unix socket) servers whose
//! connections are handled by PHP workers, one event at a time: CONNECTED, DATA (the bytes
//! up to a delimiter), CLOSE; the worker answers WRITE, WRITECLOSE, CONTINUE or CLOSE.
//! `tcp.Close` over RPC closes a connection by its uuid.

mod config;
mod conn;

pub use config::{TcpAddress, TcpSection, TcpServer};

use super::rpc::{Reply, RpcService};
use super::server::ServerPlugin;
use super::stream::{self, Listener};
use super::{listener, Lifecycle, LocalFuture, Plugin, SectionContext, Service, StartContext};
use crate::config::ConfigError;
use crate::pool::Pool;
use crate::runtime::ShardContext;
use std::any::Any;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "tcp",
    configure,
};

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("tcp") {
        return Ok(None);
    }
    Ok(Some(Box::new(TcpSection::read(ctx.reader, ctx.warnings)?)))
}

/// What `tcp.Close` uses to close a connection on whatever shard it lives.
#[derive(Debug, Default)]
struct CloseSignal {
    closed: AtomicBool,
    wake: Notify,
}

impl CloseSignal {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Open connections by uuid (what `tcp.Close` finds), at most `tcp.max_connections`.
#[derive(Debug, Default)]
struct Connections {
    open: Mutex<HashMap<String, Arc<CloseSignal>>>,
}

/// A connection's entry in [`Connections`]: dropping it removes the entry, however its task
/// ends (returned, or cancelled at an await).
#[derive(Debug)]
struct Registration<'a> {
    connections: &'a Connections,
    uuid: String,
    signal: Arc<CloseSignal>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CloseSignal>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Files connection `uuid`; `None` when `max_open` (0: no limit) are open already.
    fn register(&self, uuid: &str, max_open: usize) -> Option<Registration<'_>> {
        let mut open = self.lock();
        if max_open > 0 && open.len() >= max_open {
            return None;
        }
        let signal = Arc::new(CloseSignal::default());
        open.insert(uuid.to_owned(), Arc::clone(&signal));
        Some(Registration {
            connections: self,
            uuid: uuid.to_owned(),
            signal,
        })
    }

    /// Asks connection `uuid` to close, if it is open.
    fn close(&self, uuid: &str) {
        if let Some(signal) = self.lock().get(uuid) {
            signal.close();
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.uuid);
    }
}

/// What every connection of the plugin shares.
#[derive(Debug)]
struct TcpShared {
    config: TcpSection,
    pool: Pool,
    lifecycle: Arc<Lifecycle>,
    connections: Connections,
}

/// The running plugin.
#[derive(Debug)]
pub struct TcpPlugin {
    shared: Arc<TcpShared>,
}

impl Plugin for TcpSection {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        let section = self.pool.clone();
        ServerPlugin::run_with_pool("tcp", &section, ctx, |pool| {
            let shared = Arc::new(TcpShared {
                config: *self,
                pool,
                lifecycle: Arc::clone(ctx.lifecycle),
                connections: Connections::default(),
            });
            listen(&shared, ctx)?;
            Ok(Arc::new(TcpPlugin { shared }) as Arc<dyn Service>)
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Binds every server (all of them, or none start) and starts accepting; each bound address
/// (the real port when configured with 0) is logged.
fn listen(shared: &Arc<TcpShared>, ctx: &StartContext<'_>) -> Result<(), String> {
    enum Bound {
        Tcp(Vec<std::net::TcpListener>),
        Unix(Listener),
    }
    let mut bound = Vec::new();
    for (index, server) in shared.config.servers.iter().enumerate() {
        let (listeners, address) = match &server.address {
            TcpAddress::Tcp(host_port) => {
                let address = listener::resolve(host_port)
                    .map_err(|error| format!("tcp: address {host_port}: {error}"))?;
                let sockets = listener::bind_reuseport(
                    address,
                    ctx.shards.count(),
                    listener::Sharing::Exclusive,
                )
                .map_err(|error| {
                    format!(
                        "listen tcp {address}: {}",
                        listener::bind_error_text(&error)
                    )
                })?;
                let local = sockets[0].local_addr().map_err(|e| e.to_string())?;
                (Bound::Tcp(sockets), local.to_string())
            }
            TcpAddress::Unix(path) => (
                Bound::Unix(Listener::bind_unix(path)?),
                format!("unix://{}", path.display()),
            ),
        };
        bound.push((index, listeners, address));
    }
    for (index, listeners, address) in bound {
        let name = &shared.config.servers[index].name;
        tracing::info!(target: "tcp", server = %name, %address, "tcp server listening");
        match listeners {
            Bound::Tcp(sockets) => {
                for (shard, socket) in sockets.into_iter().enumerate() {
                    let shared = Arc::clone(shared);
                    ctx.shards.spawn_on(shard, move |context| {
                        accept_tcp(socket, index, shared, context)
                    });
                }
            }
            Bound::Unix(listener) => {
                let shared = Arc::clone(shared);
                ctx.shards.spawn_on(0, move |context| {
                    let lifecycle = Arc::clone(&shared.lifecycle);
                    let backend = context.backend();
                    stream::accept_loop(listener, backend, lifecycle, "tcp", move |stream, peer| {
                        let shared = Arc::clone(&shared);
                        tokio::task::spawn_local(conn::serve(
                            stream,
                            peer,
                            index,
                            shared,
                            Rc::clone(&context),
                        ));
                    })
                });
            }
        }
    }
    Ok(())
}

async fn accept_tcp(
    socket: std::net::TcpListener,
    server: usize,
    shared: Arc<TcpShared>,
    context: Rc<ShardContext>,
) {
    // rr stops accepting for good after an accept error; accept_loop backs off and goes on.
    let lifecycle = Arc::clone(&shared.lifecycle);
    let listener = Listener::Tcp(socket);
    stream::accept_loop(
        listener,
        context.backend(),
        lifecycle,
        "tcp",
        |stream, peer| {
            let _ = stream.set_nodelay(true);
            tokio::task::spawn_local(conn::serve(
                stream,
                peer,
                server,
                Arc::clone(&shared),
                Rc::clone(&context),
            ));
        },
    )
    .await;
}

impl Service for TcpPlugin {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn pool(&self) -> Option<&Pool> {
        Some(&self.shared.pool)
    }

    fn rpc_services(&self) -> Vec<&dyn RpcService> {
        vec![self]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `tcp.Close(uuid)`: closes that connection (its CLOSE event follows); `true` whether or
/// not it was open, as rr's.
impl RpcService for TcpPlugin {
    fn service(&self) -> &'static str {
        "tcp"
    }

    fn call<'a>(
        &'a self,
        method: &'a str,
        arg: serde_json::Value,
    ) -> Option<LocalFuture<'a, Result<Reply, String>>> {
        if method != "Close" {
            return None;
        }
        self.shared
            .connections
            .close(arg.as_str().unwrap_or_default());
        Some(super::rpc::services::ready(Ok(Reply::Json(
            serde_json::Value::Bool(true),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_connection_task_leaves_no_entry_and_the_cap_holds() {
        let connections = Connections::default();
        // A connection task that registers, then waits (on its peer, on a worker) and is
        // dropped there: its entry must go with it.
        let mut task = Box::pin(async {
            let registration = connections.register("a", 0).expect("room");
            std::future::pending::<()>().await;
            drop(registration);
        });
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(std::future::Future::poll(task.as_mut(), &mut context).is_pending());
        assert_eq!(connections.lock().len(), 1);
        drop(task);
        assert!(
            connections.lock().is_empty(),
            "a cancelled task's entry stayed"
        );
        let first = connections.register("b", 2).expect("room");
        let _second = connections.register("c", 2).expect("room");
        assert!(
            connections.register("d", 2).is_none(),
            "past max_connections"
        );
        drop(first);
        assert!(connections.register("d", 2).is_some());
        assert!(connections.register("e", 0).is_some(), "0: no limit");
    }
}
