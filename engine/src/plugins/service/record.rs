//! What is known of one process of a service (its phase, pid, restarts, last exit), shared
//! by its supervising task, the RPC service and the stop path, with the stop request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::Notify;

/// Where a process is in its life (spec service §10.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Spawned, inside `start_secs`.
    Starting,
    /// Up.
    Running,
    /// Exited, waiting to restart.
    Backoff,
    /// Exited, no restart.
    Exited,
    /// Stop signal sent.
    Stopping,
    /// Stopped on request.
    Stopped,
    /// Start limit reached, or it cannot be started again.
    Fatal,
    /// State unknown (signal refused, survived SIGKILL).
    Error,
}

impl Phase {
    /// The state's name (`rr service status`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Backoff => "backoff",
            Self::Exited => "exited",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Fatal => "fatal",
            Self::Error => "error",
        }
    }

    /// Running as rr counts it (its state can be read).
    #[must_use]
    pub fn is_up(self) -> bool {
        matches!(self, Self::Starting | Self::Running | Self::Stopping)
    }
}

/// What is known of one process, for status queries.
#[derive(Debug, Clone)]
pub struct Info {
    /// Phase.
    pub phase: Phase,
    /// The current pid (0 before the first start).
    pub pid: u32,
    /// The command as run.
    pub command: String,
    /// When the current run began.
    pub since: Option<Instant>,
    /// Automatic restarts so far.
    pub restarts: u32,
    /// How the last run ended (`exit status 1`, `signal: killed`).
    pub last_exit: Option<String>,
    /// Why it is not running, for the non-running phases.
    pub message: String,
}

/// One supervised process: its state and the handles to stop it.
#[derive(Debug)]
pub struct ProcessRecord {
    info: Mutex<Info>,
    stop_requested: AtomicBool,
    stop: Notify,
    finished: AtomicBool,
    done: Notify,
}

impl ProcessRecord {
    /// A record for a process not started yet.
    #[must_use]
    pub fn new(command: &str) -> Arc<Self> {
        Arc::new(Self {
            info: Mutex::new(Info {
                phase: Phase::Starting,
                pid: 0,
                command: command.to_owned(),
                since: None,
                restarts: 0,
                last_exit: None,
                message: String::new(),
            }),
            stop_requested: AtomicBool::new(false),
            stop: Notify::new(),
            finished: AtomicBool::new(false),
            done: Notify::new(),
        })
    }

    /// A copy of what is known.
    #[must_use]
    pub fn info(&self) -> Info {
        self.info
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn update(&self, change: impl FnOnce(&mut Info)) {
        change(&mut self.info.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Asks the supervising task to stop the process (for good).
    pub fn request_stop(&self) {
        self.stop_requested.store(true, Ordering::Release);
        self.stop.notify_one();
    }

    pub(super) fn stop_requested(&self) -> bool {
        self.stop_requested.load(Ordering::Acquire)
    }

    /// Waits until a stop is requested (at once when one was).
    pub(super) async fn stop_wanted(&self) {
        loop {
            let notified = self.stop.notified();
            if self.stop_requested() {
                return;
            }
            notified.await;
        }
    }

    /// Waits until the supervising task has ended (its process stopped or exited for good).
    pub async fn finished(&self) {
        loop {
            let notified = self.done.notified();
            if self.finished.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Whether the supervising task has ended.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    pub(super) fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        self.done.notify_waiters();
    }
}
