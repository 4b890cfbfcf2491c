//! The plugins `rr serve` runs: each a small struct with `start`/`stop`, no global state.

pub mod http;
pub mod listener;
pub mod log_file;
pub mod log_writer;
pub mod logs;
pub mod status;

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
