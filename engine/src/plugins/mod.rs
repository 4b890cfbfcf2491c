//! The plugins `rr serve` runs, and the boundary they share. Each plugin owns its config
//! section (read with rr's defaults and checks), its start and its stop, and may run a worker
//! pool (reported by the informer, replaced by the resetter) and expose RPC services. Adding
//! a plugin is a folder here and one line in [`registry::REGISTRY`]. No global state: what a
//! plugin needs from others reaches it through [`StartContext`].

pub mod centrifuge;
pub mod client_io;
#[cfg(test)]
mod config_tests;
mod container;
pub mod grpc;
pub mod http;
pub mod jobs;
pub mod kv;
pub mod listener;
pub mod lock;
pub mod logs;
pub mod metrics;
pub mod otel;
mod plain_http;
mod registry;
pub mod reload;
pub mod rpc;
pub mod server;
pub mod service;
pub mod status;
pub mod stream;
pub mod tcp;
pub mod temporal;

pub use container::Running;
pub use registry::{configure, Configured, Entry, SectionContext, REGISTRY};

use crate::pool::Pool;
use crate::runtime::Shards;
use std::any::Any;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

/// A future that runs on one shard (not `Send`).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A plugin whose section has been read and checked, not yet started.
pub trait Plugin: Any + Debug + Send {
    /// Its name (its section's key).
    fn name(&self) -> &'static str;

    /// Starts it (listeners bound, pools booted) and hands back the running service. Called
    /// off the shards, in registry order: the services started before it are in `ctx`.
    ///
    /// # Errors
    /// What keeps it from starting, in rr's words; `rr serve` then stops what started and
    /// exits 1.
    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String>;

    /// For lookups by type ([`Configured::get`]).
    fn as_any(&self) -> &dyn Any;
}

/// A started plugin.
pub trait Service: Any + Debug + Send + Sync {
    /// Its name, as the informer and the resetter list it.
    fn name(&self) -> &'static str;

    /// The worker pool it runs: listed by `informer.Workers`, replaced by `resetter.Reset`,
    /// checked by the status plugin, killed at a forced exit.
    fn pool(&self) -> Option<&Pool> {
        None
    }

    /// Whether it runs processes (listed by `informer.List` and `resetter.List`): a pool by
    /// default.
    fn has_workers(&self) -> bool {
        self.pool().is_some()
    }

    /// Its processes as `informer.Workers` lists them: its pool's workers by default; None
    /// for a plugin without processes.
    fn workers(&self) -> Option<Vec<crate::pool::WorkerInfo>> {
        self.pool().map(Pool::workers)
    }

    /// A reset (`resetter.Reset`) for a plugin whose processes are not a pool, or whose
    /// reset does more than replace its pool's workers (a pool's plugin is otherwise reset
    /// by replacing its workers).
    fn reset(&self) -> Option<LocalFuture<'_, ()>> {
        None
    }

    /// Kills its processes at a forced exit (its pool's by default).
    fn kill(&self) {
        if let Some(pool) = self.pool() {
            pool.kill_all();
        }
    }

    /// Its pipelines as `informer.Jobs` lists them (the jobs plugin's, which may ask a
    /// broker); None for others.
    fn jobs(&self) -> Option<LocalFuture<'_, serde_json::Value>> {
        None
    }

    /// Adds what it exports to a metrics scrape (nothing by default).
    fn collect(&self, _families: &mut Vec<metrics::exposition::Family>) {}

    /// The RPC services it exposes beside the built-in ones.
    fn rpc_services(&self) -> Vec<&dyn rpc::RpcService> {
        Vec::new()
    }

    /// Stops it gracefully; runs on shard 0 once the connections have drained (or the
    /// grace period is half gone). By default: destroys its pool.
    fn stop(self: Arc<Self>) -> LocalFuture<'static, ()> {
        Box::pin(async move {
            if let Some(pool) = self.pool() {
                pool.destroy().await;
            }
        })
    }

    /// For lookups by type ([`StartContext::get`]).
    fn as_any(&self) -> &dyn Any;
}

/// What a plugin's start gets: the shards, the shutdown state, the services started before
/// it, and the directory of all services (filled once every plugin has started).
#[derive(Debug)]
pub struct StartContext<'a> {
    /// The shard threads.
    pub shards: &'a Arc<Shards>,
    /// Shutdown coordination shared by the listeners.
    pub lifecycle: &'a Arc<Lifecycle>,
    /// The services started so far, in start order.
    pub started: &'a [Arc<dyn Service>],
    /// Every service, once all have started (for lookups at run time: RPC, status).
    pub directory: &'a Arc<Directory>,
}

impl StartContext<'_> {
    /// The started service of type `T` (a dependency started earlier in registry order).
    #[must_use]
    pub fn get<T: Service>(&self) -> Option<&T> {
        self.started
            .iter()
            .find_map(|service| service.as_any().downcast_ref::<T>())
    }
}

/// The running services, set once when `rr serve` has started them all.
#[derive(Debug, Default)]
pub struct Directory {
    services: OnceLock<Vec<Arc<dyn Service>>>,
}

impl Directory {
    /// Records the services (the first call wins).
    pub fn fill(&self, services: Vec<Arc<dyn Service>>) {
        let _ = self.services.set(services);
    }

    /// The services; empty while the server is still starting.
    #[must_use]
    pub fn services(&self) -> &[Arc<dyn Service>] {
        self.services.get().map_or(&[], Vec::as_slice)
    }

    /// The service called `name`.
    #[must_use]
    pub fn find(&self, name: &str) -> Option<&Arc<dyn Service>> {
        self.services()
            .iter()
            .find(|service| service.name() == name)
    }
}

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;

/// Shutdown coordination shared by the listeners of one server: a stop flag that wakes idle
/// accept loops and connections, and a count of open connections to wait for.
#[derive(Debug, Default)]
pub struct Lifecycle {
    stopping: AtomicBool,
    /// Fires (all waiters) when shutdown begins.
    pub stop: Notify,
    connections: AtomicUsize,
    drained: Notify,
}

impl Lifecycle {
    /// True once shutdown began.
    #[must_use]
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Begins shutdown: listeners stop accepting, idle connections close, busy ones finish
    /// their request first.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
    }

    /// Counts a connection until the guard drops.
    #[must_use]
    pub fn connection_opened(&self) -> ConnectionGuard<'_> {
        self.connections.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self)
    }

    /// Open connections now.
    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Waits until every connection has closed.
    pub async fn drained(&self) {
        loop {
            let drained = self.drained.notified();
            if self.open_connections() == 0 {
                return;
            }
            drained.await;
        }
    }
}

/// Decrements the connection count when dropped.
#[derive(Debug)]
pub struct ConnectionGuard<'a>(&'a Lifecycle);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        if self.0.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}
