//! The worker pool (spec pool-server): a fixed slab of worker slots, the lock-free idle stack,
//! the wait queue, `max_jobs` rotation, crash replacement with backoff, reset and destroy.
//! A pool is shared by all shards; each slot's lifecycle task runs on shard `slot % shards`.

mod config;
mod dynamic;
mod error;
mod exec;
pub mod idle_stack;
mod lifecycle;
mod resize;
mod slot;
mod state;
mod supervisor;
mod sweep;
mod waiters;

pub use config::{PoolConfig, SupervisorConfig, WorkerInfo};
pub use error::{ExecError, SpawnError};
pub use exec::{LentBody, ReplyFrame, ReplySink, Request, ResponseMeta};
pub use resize::ResizeError;
pub use state::WorkerState;

use crate::runtime::Shards;
use crate::stats::{ShardedHistogram, SHORT_SECONDS};
use crate::worker::socket_relay::{RelayAddress, SocketRelay};
pub use dynamic::DynamicAllocator;
use idle_stack::IdleStack;
use slot::{SlotToken, WorkerSlot};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use sweep::Sweep;
use tokio::sync::Notify;
use waiters::Waiters;

/// Most workers one pool may have (spec pool-server §2).
pub const MAX_WORKERS: usize = 500;
/// How long a worker gets to exit after the stop frame before SIGKILL (spec §6.3: fixed).
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// First delay before re-spawning a worker that failed to boot at runtime.
pub const RESPAWN_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Cap of the re-spawn delay: a broken deploy costs one spawn per slot per this period.
pub const RESPAWN_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// State shared by every handle of one pool and by its tasks.
#[derive(Debug)]
pub(crate) struct PoolShared {
    id: u64,
    config: PoolConfig,
    shards: Arc<Shards>,
    slots: Box<[WorkerSlot]>,
    idle: IdleStack,
    waiters: Waiters,
    /// Requests inside exec (waiting or running), for `max_queue_size`.
    /// Time requests waited for a worker, and workers took (per shard; scraped by metrics).
    wait_seconds: ShardedHistogram,
    exec_seconds: ShardedHistogram,
    in_flight: AtomicUsize,
    closed: AtomicBool,
    /// Fires when the pool closes: wakes lifecycle tasks that hold their slot and wait
    /// (backing off after a failed start, or waiting for demand in debug mode).
    closing: Notify,
    /// Held by the sweep in progress ([`PoolShared::sweep_idle`]).
    sweeping: std::sync::Mutex<()>,
    /// Slots whose worker currently fails to boot.
    failing_slots: AtomicUsize,
    /// Lifecycle tasks still running; `tasks_done` fires when one ends.
    live_tasks: AtomicUsize,
    tasks_done: Notify,
    /// Fires each time a freshly started worker enters service.
    worker_started: Notify,
    /// Debug mode: one permit per request that wants a freshly started worker.
    demand: Notify,
    epoch: Instant,
    server_pid: u32,
    /// The listener workers connect to, for a `tcp://` or `unix://` relay.
    socket_relay: Option<SocketRelay>,
    /// Slots `0..base_workers` always hold a worker; `base_workers..dynamic_end` are the
    /// dynamic allocator's; the rest take the workers added over RPC (`informer.AddWorker`).
    base_workers: usize,
    dynamic_end: usize,
    /// The dynamic allocator, when configured.
    dynamic: Option<dynamic::DynamicState>,
}

impl PoolShared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn slot(&self, index: u32) -> &WorkerSlot {
        &self.slots[index as usize]
    }

    /// Returns a ready worker to service: to a waiter (one on shard `here` first, when a
    /// shard releases it), or onto the idle stack.
    fn release(&self, token: SlotToken, here: Option<usize>) {
        debug_assert_eq!(self.slot(token.index()).state(), WorkerState::Ready);
        self.waiters.release(&self.idle, token, here);
    }

    /// Waits on shard `here` for a worker until `deadline` ([`Waiters::wait`]).
    async fn wait_for_worker(
        &self,
        deadline: tokio::time::Instant,
        here: usize,
    ) -> Result<SlotToken, waiters::WaitError> {
        let unused = |token| self.put_back(token, Some(here));
        self.waiters.wait(&self.idle, deadline, here, &unused).await
    }

    /// A worker taken but not used back to service, or to its lifecycle task when a sweep
    /// flagged it meanwhile; under the sweep lock, so no sweep flags it between the look
    /// and the push.
    fn put_back(&self, token: SlotToken, here: Option<usize>) {
        let _no_sweep = self
            .sweeping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.slot(token.index()).state() == WorkerState::Ready {
            self.release(token, here);
        } else {
            self.hand_back(token);
        }
    }

    /// Takes an idle worker off the stack, if there is one.
    fn pop_idle(&self) -> Option<SlotToken> {
        self.idle.pop().map(SlotToken::claim)
    }

    /// Gives the slot back to its lifecycle task, which reads what to do from its state.
    fn hand_back(&self, token: SlotToken) {
        self.slot(token.into_index()).returned.notify_one();
    }

    /// Retires every slot still running the worker of generation `old[index]`: a busy one
    /// when its request ends, an idle one now. A slot flips between ready and working as
    /// requests take and return it, so each is retired in whichever of the two it is in at
    /// the moment of the swap (testing one state and then the other in separate passes
    /// missed a worker taken in between: it was never replaced).
    fn retire_generation(&self, old: &[u64]) {
        self.sweep_idle(|index, slot| {
            if slot.generation.load(Ordering::Acquire) != old[index as usize] {
                return Sweep::Keep;
            }
            loop {
                if slot.transition(WorkerState::Working, WorkerState::Invalid) {
                    return Sweep::Keep;
                }
                // A taker that pops it meanwhile fails its Ready → Working and hands it on.
                if slot.transition(WorkerState::Ready, WorkerState::Invalid) {
                    return Sweep::Fetch;
                }
                if !matches!(slot.state(), WorkerState::Ready | WorkerState::Working) {
                    return Sweep::Keep;
                }
            }
        });
    }

    /// Takes idle workers off the stack for their lifecycle tasks ([`sweep::sweep`]).
    fn sweep_idle(&self, pick: impl FnMut(u32, &WorkerSlot) -> Sweep) {
        sweep::sweep(
            &self.slots,
            &self.idle,
            &self.sweeping,
            pick,
            |token| self.release(token, None),
            |token| self.hand_back(token),
        );
    }
}

/// A pool of worker processes. Cloning gives another handle to the same pool.
#[derive(Debug, Clone)]
pub struct Pool {
    shared: Arc<PoolShared>,
}

impl Pool {
    /// Starts `config.num_workers` workers in parallel and waits until every one has
    /// completed its handshake. If any fails, the others are stopped and the first failure is
    /// returned (rr then exits 1, spec pool-server §8.2).
    ///
    /// # Errors
    /// The first worker's [`SpawnError`].
    pub async fn start(mut config: PoolConfig, shards: Arc<Shards>) -> Result<Self, SpawnError> {
        let workers = config.num_workers.clamp(1, MAX_WORKERS);
        let dynamic = config
            .dynamic
            .filter(|_| !config.debug)
            .map(DynamicAllocator::clamped)
            .filter(|dynamic| dynamic.max_workers > 0);
        let dynamic_end = workers + dynamic.map_or(0, |d| d.max_workers.min(MAX_WORKERS - workers));
        // Room up to rr's limit for workers added at run time; an empty slot is a few atomics.
        let slot_count = if config.debug { workers } else { MAX_WORKERS };
        let socket_relay = match &config.relay {
            RelayAddress::Pipes => None,
            address => Some(
                SocketRelay::listen(address, config.allocate_timeout).map_err(|error| {
                    SpawnError::Start {
                        command: config.command.display(),
                        reason: format!("relay {}: {error}", config.relay_dsn),
                    }
                })?,
            ),
        };
        // `tcp://host:0` picks a free port: the workers must be told which.
        if let (Some(socket), RelayAddress::Tcp(address)) = (&socket_relay, &config.relay) {
            if address.ends_with(":0") {
                config.relay_dsn.clone_from(&socket.local_address);
            }
        }
        let shared = Arc::new(PoolShared {
            socket_relay,
            id: shards.next_pool_id(),
            slots: (0..slot_count)
                .map(|index| {
                    let slot = WorkerSlot::new();
                    slot.wanted.store(index < workers, Ordering::Relaxed);
                    slot
                })
                .collect(),
            idle: IdleStack::new(slot_count),
            base_workers: workers,
            dynamic_end,
            dynamic: dynamic.map(dynamic::DynamicState::new),
            waiters: Waiters::default(),
            wait_seconds: ShardedHistogram::new(SHORT_SECONDS, shards.count()),
            exec_seconds: ShardedHistogram::new(SHORT_SECONDS, shards.count()),
            in_flight: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
            sweeping: std::sync::Mutex::new(()),
            failing_slots: AtomicUsize::new(0),
            live_tasks: AtomicUsize::new(workers),
            tasks_done: Notify::new(),
            worker_started: Notify::new(),
            demand: Notify::new(),
            epoch: Instant::now(),
            server_pid: std::process::id(),
            config,
            shards,
        });
        let mut boots = Vec::with_capacity(workers);
        for index in 0..workers {
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let task_shared = Arc::clone(&shared);
            let index = u32::try_from(index).expect("at most 500 slots");
            let started = shared.shards.spawn_on(index as usize, move |shard| {
                lifecycle::run_slot(task_shared, index, Some(sender), shard)
            });
            if !started {
                shared.live_tasks.fetch_sub(1, Ordering::AcqRel);
            }
            boots.push(receiver);
        }
        let mut first_error = None;
        for boot in boots {
            let result = boot.await.unwrap_or(Err(SpawnError::Closed));
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        let pool = Self { shared };
        match first_error {
            None => {
                if let Some(supervisor) = pool
                    .shared
                    .config
                    .supervisor
                    .clone()
                    .filter(supervisor::has_soft_limits)
                {
                    let shared = Arc::clone(&pool.shared);
                    pool.shared
                        .shards
                        .spawn_on(0, move |_| supervisor::run(shared, supervisor));
                }
                tracing::debug!(pool = %pool.shared.config.name, workers, "pool started");
                Ok(pool)
            }
            Some(error) => {
                pool.destroy().await;
                Err(error)
            }
        }
    }

    /// The pool's configuration.
    #[must_use]
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// Number of worker slots.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.shared.slots.len()
    }

    /// Number of slots whose worker currently fails to boot: the pool is degraded while this
    /// is above zero and serves with the workers that are left.
    #[must_use]
    pub fn failing_workers(&self) -> usize {
        self.shared.failing_slots.load(Ordering::Relaxed)
    }

    /// Number of idle workers (a snapshot).
    #[must_use]
    pub fn idle_workers(&self) -> usize {
        self.shared.idle.len()
    }

    /// The states of the slots that run a process (what health checks need; no `/proc`
    /// read, so a shard may call it).
    #[must_use]
    pub fn worker_states(&self) -> Vec<WorkerState> {
        self.shared
            .slots
            .iter()
            .filter(|slot| slot.pid.load(Ordering::Acquire) != 0)
            .map(WorkerSlot::state)
            .filter(|state| !matches!(state, WorkerState::Stopped | WorkerState::Errored))
            .collect()
    }

    /// How long requests waited for a free worker.
    #[must_use]
    pub fn wait_seconds(&self) -> &ShardedHistogram {
        &self.shared.wait_seconds
    }

    /// How long workers took for requests (request sent to the reply's end).
    #[must_use]
    pub fn exec_seconds(&self) -> &ShardedHistogram {
        &self.shared.exec_seconds
    }

    /// The workers, as `informer.Workers` lists them; slots without a process are skipped.
    /// Reads each worker's `/proc/PID/statm` (a page-cache read per worker).
    #[must_use]
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.shared
            .slots
            .iter()
            .filter_map(|slot| {
                let pid = slot.pid.load(Ordering::Acquire);
                let state = slot.state();
                let running =
                    pid != 0 && !matches!(state, WorkerState::Stopped | WorkerState::Errored);
                running.then(|| {
                    let created_unix_ns = slot.created_unix_ns.load(Ordering::Relaxed);
                    let lived = unix_now_ns().saturating_sub(created_unix_ns) as f64 / 1e9;
                    let cpu_percent = crate::worker::process::cpu_seconds(pid)
                        .filter(|_| lived > 0.0)
                        .map_or(0.0, |spent| spent / lived * 100.0);
                    WorkerInfo {
                        pid,
                        state,
                        num_execs: slot.execs.load(Ordering::Relaxed),
                        created_unix_ns,
                        memory_usage: crate::worker::process::rss_bytes(pid).unwrap_or(0),
                        cpu_percent,
                        command: String::new(),
                    }
                })
            })
            .collect()
    }

    /// Replaces every worker gracefully (spec pool-server §6.1): idle ones now, busy ones
    /// when their request ends; each slot starts its replacement as soon as the old process
    /// has exited. Waits until every slot runs a new process, up to `reset_timeout`, then
    /// kills what is left of the old generation. Worst case: one sweep (O(slots)) per worker
    /// started during the reset, and `reset_timeout`.
    pub async fn reset(&self) {
        let shared = &self.shared;
        let old: Vec<u64> = shared
            .slots
            .iter()
            .map(|slot| slot.generation.load(Ordering::Acquire))
            .collect();
        let deadline = tokio::time::Instant::now() + shared.config.reset_timeout;
        let replaced = || {
            // Extra slots the dynamic allocator does not use hold no worker to replace.
            shared.slots.iter().zip(&old).all(|(slot, old)| {
                !slot.wanted.load(Ordering::Acquire)
                    || (slot.generation.load(Ordering::Acquire) > *old
                        && slot.state() != WorkerState::Inactive)
            })
        };
        loop {
            // Registered before the check, so a start between check and wait is not missed.
            let started = shared.worker_started.notified();
            // Again after every start: a worker that was still booting when the reset began
            // belongs to the old generation and is retired once it is in service.
            shared.retire_generation(&old);
            if replaced() || tokio::time::timeout_at(deadline, started).await.is_err() {
                break;
            }
        }
        for (slot, old) in shared.slots.iter().zip(&old) {
            // Only the process of the generation it looked at: a replacement that started
            // since is spared (checked and killed under the slot's process lock).
            if slot.wanted.load(Ordering::Acquire) {
                slot.kill_generation(*old);
            }
        }
        tracing::info!(pool = %shared.config.name, "pool reset");
    }

    /// Stops every worker (spec pool-server §6.2): new execs fail at once, idle workers get
    /// the stop frame now, busy ones when their request ends; after `destroy_timeout` the
    /// rest are killed. Returns when every lifecycle task has ended. Worst case:
    /// `destroy_timeout`, then [`STOP_GRACE`] for a killed process to be reaped (each
    /// stop, its stop frame's write included, is itself bounded by [`STOP_GRACE`]).
    pub async fn destroy(&self) {
        let shared = &self.shared;
        shared.closed.store(true, Ordering::SeqCst);
        shared.waiters.close();
        for slot in shared.slots.iter() {
            slot.set_state(WorkerState::Destroyed);
        }
        // Wakes the lifecycle tasks that hold their slot and wait (a busy slot comes back
        // when its request ends, an idle one through the sweep below).
        shared.closing.notify_waiters();
        shared.sweep_idle(|_, _| Sweep::Fetch);
        let deadline = tokio::time::Instant::now() + shared.config.destroy_timeout;
        loop {
            let done = shared.tasks_done.notified();
            if shared.live_tasks.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                for slot in shared.slots.iter() {
                    slot.kill();
                }
                break;
            }
        }
        while shared.live_tasks.load(Ordering::Acquire) > 0 {
            let done = shared.tasks_done.notified();
            if shared.live_tasks.load(Ordering::Acquire) == 0 {
                break;
            }
            let _ = tokio::time::timeout(STOP_GRACE, done).await;
        }
    }

    /// SIGKILLs every worker now (a forced exit: workers live in their own process groups
    /// and must not outlive the server).
    pub fn kill_all(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        for slot in self.shared.slots.iter() {
            slot.kill();
        }
    }

    fn shared(&self) -> &Arc<PoolShared> {
        &self.shared
    }
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}
