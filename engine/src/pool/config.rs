//! A pool's settings (spec pool-server §2, §11) and what it reports of a worker (§12).

use super::dynamic::DynamicAllocator;
use super::state::WorkerState;
use crate::worker::process::WorkerCommand;
use crate::worker::socket_relay::RelayAddress;
use std::time::Duration;

/// The supervisor section (spec pool-server §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// Period of the soft-limit checks.
    pub watch_tick: Duration,
    /// Soft: max lifetime; zero = none.
    pub ttl: Duration,
    /// Soft: max idle time; zero = none.
    pub idle_ttl: Duration,
    /// Soft: max RSS in MiB; zero = none.
    pub max_worker_memory_mib: u64,
    /// Hard: max time of one exec; zero = none.
    pub exec_ttl: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            watch_tick: Duration::from_secs(5),
            ttl: Duration::ZERO,
            idle_ttl: Duration::ZERO,
            max_worker_memory_mib: 0,
            exec_ttl: Duration::ZERO,
        }
    }
}

/// A pool's options with rr's defaults (spec pool-server §2).
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Name in logs and RPC (`http`, `jobs`, …).
    pub name: String,
    /// How to start a worker.
    pub command: WorkerCommand,
    /// Workers started with the pool.
    pub num_workers: usize,
    /// Requests per worker before it is replaced; 0 = unlimited.
    pub max_jobs: u64,
    /// Requests allowed inside the pool at once; 0 = unlimited.
    pub max_queue_size: usize,
    /// Max wait for a free worker, and for one spawn + handshake.
    pub allocate_timeout: Duration,
    /// Max wait for busy workers when the pool is destroyed.
    pub destroy_timeout: Duration,
    /// Max wait for busy workers during a reset.
    pub reset_timeout: Duration,
    /// Max wait for a worker to end its stream after the server asked it to stop.
    pub stream_timeout: Duration,
    /// rr's debug mode: every request gets a freshly started worker (the worker that served
    /// it is replaced afterwards), so code changes show without a reset.
    pub debug: bool,
    /// The supervisor, when the section exists.
    pub supervisor: Option<SupervisorConfig>,
    /// Largest frame payload accepted from a worker.
    pub max_payload_bytes: u32,
    /// `RR_MODE` for the workers, set by the owning plugin (`http`, `jobs`, …).
    pub mode: Option<String>,
    /// `RR_RPC` for the workers: `rpc.listen` exactly as configured, when set.
    pub rpc_listen: Option<String>,
    /// `server.relay`: pipes, or the socket the pool listens on for its workers.
    pub relay: RelayAddress,
    /// `RR_RELAY` for the workers: `server.relay` exactly as configured.
    pub relay_dsn: String,
    /// `dynamic_allocator`, when the section exists (ignored in debug mode).
    pub dynamic: Option<DynamicAllocator>,
}

impl PoolConfig {
    /// rr's defaults for `command`, with `num_workers` = number of CPUs.
    #[must_use]
    pub fn new(name: &str, command: WorkerCommand) -> Self {
        Self {
            name: name.to_owned(),
            command,
            num_workers: std::thread::available_parallelism().map_or(1, usize::from),
            max_jobs: 0,
            max_queue_size: 0,
            allocate_timeout: Duration::from_secs(60),
            destroy_timeout: Duration::from_secs(60),
            reset_timeout: Duration::from_secs(60),
            stream_timeout: Duration::from_secs(60),
            debug: false,
            supervisor: None,
            max_payload_bytes: ringrunner_protocol::DEFAULT_MAX_PAYLOAD_BYTES,
            mode: None,
            rpc_listen: None,
            relay: RelayAddress::Pipes,
            relay_dsn: "pipes".into(),
            dynamic: None,
        }
    }

    /// The worker command with the environment of spec relay-protocol §7.6, in its order:
    /// `RR_RELAY`, `RR_RPC` (when set), `server.env`, `RR_VERSION`, then the plugin's
    /// `RR_MODE`; later entries win.
    #[must_use]
    pub fn worker_command(&self) -> WorkerCommand {
        let mut command = self.command.clone();
        let mut env = vec![("RR_RELAY".into(), self.relay_dsn.clone().into())];
        if let Some(rpc) = &self.rpc_listen {
            env.push(("RR_RPC".into(), rpc.into()));
        }
        env.append(&mut command.env);
        env.push(("RR_VERSION".into(), crate::RR_COMPATIBLE_VERSION.into()));
        if let Some(mode) = &self.mode {
            env.push(("RR_MODE".into(), mode.into()));
        }
        command.env = env;
        command
    }

    pub(super) fn exec_ttl(&self) -> Option<Duration> {
        self.supervisor
            .as_ref()
            .map(|s| s.exec_ttl)
            .filter(|ttl| !ttl.is_zero())
    }
}

/// One worker as `informer.Workers` reports it (spec pool-server §12).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    /// Process id.
    pub pid: u32,
    /// State.
    pub state: WorkerState,
    /// Requests started on this process.
    pub num_execs: u64,
    /// Spawn time, Unix nanoseconds.
    pub created_unix_ns: u64,
    /// RSS in bytes.
    pub memory_usage: u64,
    /// CPU time used over the process's life, in percent of one core (gopsutil's figure,
    /// which rr reports).
    pub cpu_percent: f64,
    /// The command line (services; empty for pool workers, as rr reports them).
    pub command: String,
}
