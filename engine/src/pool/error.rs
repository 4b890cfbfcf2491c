//! What a pool call can fail with; the texts are RoadRunner's (spec pool-server §4, §8).

/// A failed exec. `Display` gives rr's error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// Neither context nor body: the PHP worker would take it as a stop (spec §4.1).
    #[error("payload can not be empty")]
    EmptyPayload,
    /// No worker became free within `allocate_timeout` (spec §4.2).
    #[error("static_pool_exec: NoFreeWorkers:\n\tstatic_pool_exec")]
    NoFreeWorkers,
    /// `max_queue_size` requests were already inside the pool (spec §4.3).
    #[error("static_pool_exec: QueueSize: max queue size reached")]
    QueueFull,
    /// The worker answered with an ERROR frame; it stays in service.
    #[error("{0}")]
    SoftJob(String),
    /// The relay failed (worker crashed, closed it, or sent garbage); not retried.
    #[error("static_pool_exec: Network: {0}")]
    Network(String),
    /// `exec_ttl` expired; the worker was killed.
    #[error("worker_exec_with_timeout: ExecTTL: context deadline exceeded")]
    ExecTtl,
    /// The dynamic allocator already runs `max_workers` extra workers (spec §10).
    #[error("allocate_dynamically: can't allocate more workers, increase max_workers option (max_workers limit is 100)")]
    DynamicLimit,
    /// The pool is being destroyed.
    #[error("static_pool_exec: WatcherStopped: Workers watcher stopped")]
    Stopped,
}

/// A worker that could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    /// The program could not be started at all.
    #[error("failed to start worker `{command}`: {reason}")]
    Start {
        /// The command line.
        command: String,
        /// The OS error.
        reason: String,
    },
    /// The process started but never completed the pid handshake.
    #[error("worker `{command}` (pid {pid}) failed its handshake: {reason}{}", stderr_suffix(.stderr_tail))]
    Handshake {
        /// The command line.
        command: String,
        /// Its pid.
        pid: u32,
        /// What went wrong, with the exit status when it exited.
        reason: String,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// No handshake within `allocate_timeout` (rr's text).
    #[error("failed to spawn a worker, possible reasons: https://docs.roadrunner.dev/error-codes/allocate-timeout (worker `{command}`, pid {pid}){}", stderr_suffix(.stderr_tail))]
    Timeout {
        /// The command line.
        command: String,
        /// Its pid.
        pid: u32,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// The pool was closed while the worker started.
    #[error("pool closed while starting a worker")]
    Closed,
}

fn stderr_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last stderr output:\n{tail}")
    }
}
