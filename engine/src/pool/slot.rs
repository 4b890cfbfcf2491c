//! One worker slot: the state and counters of the process that currently fills it, and the
//! descriptors the pool keeps for it. A slot index is owned by exactly one party at a time:
//! the idle stack, an exec, or the slot's own lifecycle task. A party that cannot use a slot
//! hands it to the lifecycle task through `returned`.

use super::state::WorkerState;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// Lines of stderr kept per worker for boot-failure messages.
const STDERR_TAIL_LINES: usize = 10;

/// Descriptors of a running worker that any shard may duplicate or signal.
#[derive(Debug)]
pub struct SlotProcess {
    pub relay_write: OwnedFd,
    pub relay_read: OwnedFd,
    pub pidfd: OwnedFd,
}

#[derive(Debug)]
pub struct WorkerSlot {
    state: AtomicU8,
    /// Bumped each time a new process fills the slot; keys the shards' relay caches.
    pub generation: AtomicU64,
    pub pid: AtomicU32,
    pub execs: AtomicU64,
    /// Wall clock at spawn, Unix nanoseconds (rr's `created`).
    pub created_unix_ns: AtomicU64,
    /// Monotonic nanoseconds since the pool's epoch.
    pub spawned_at_ns: AtomicU64,
    /// Start of the last request, monotonic nanoseconds since the pool's epoch; 0 = never.
    pub last_used_ns: AtomicU64,
    /// Ownership of the slot handed back to its lifecycle task.
    pub returned: Notify,
    /// The slot should hold a worker: always for the base slots, while scaled up for the
    /// dynamic allocator's extra ones.
    pub wanted: AtomicBool,
    /// A lifecycle task runs for this slot.
    pub task_live: AtomicBool,
    process: Mutex<Option<SlotProcess>>,
    stderr_tail: Mutex<VecDeque<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WorkerSlot {
    pub fn new() -> Self {
        Self {
            state: AtomicU8::new(WorkerState::Stopped as u8),
            generation: AtomicU64::new(0),
            pid: AtomicU32::new(0),
            execs: AtomicU64::new(0),
            created_unix_ns: AtomicU64::new(0),
            spawned_at_ns: AtomicU64::new(0),
            last_used_ns: AtomicU64::new(0),
            returned: Notify::new(),
            wanted: AtomicBool::new(false),
            task_live: AtomicBool::new(false),
            process: Mutex::new(None),
            stderr_tail: Mutex::new(VecDeque::new()),
        }
    }

    pub fn state(&self) -> WorkerState {
        WorkerState::from_code(self.state.load(Ordering::Acquire))
    }

    pub fn set_state(&self, state: WorkerState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Moves from `from` to `to` if the slot is in `from`.
    pub fn transition(&self, from: WorkerState, to: WorkerState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Sets `to` unless the slot is `Destroyed` (terminal, spec pool-server §3).
    pub fn mark(&self, to: WorkerState) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current != WorkerState::Destroyed as u8).then_some(to as u8)
            });
    }

    pub fn install(&self, process: SlotProcess) {
        *lock(&self.process) = Some(process);
    }

    pub fn uninstall(&self) -> Option<SlotProcess> {
        lock(&self.process).take()
    }

    /// Runs `f` on the running process's descriptors, if any.
    pub fn with_process<T>(&self, f: impl FnOnce(&SlotProcess) -> T) -> Option<T> {
        lock(&self.process).as_ref().map(f)
    }

    /// SIGKILL through the pidfd, if a process is installed.
    pub fn kill(&self) {
        self.with_process(|process| crate::worker::process::kill(&process.pidfd));
    }

    pub fn record_stderr(&self, chunk: &str) {
        let mut tail = lock(&self.stderr_tail);
        for line in chunk.lines().filter(|line| !line.trim().is_empty()) {
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        }
    }

    pub fn take_stderr_tail(&self) -> String {
        let mut tail = lock(&self.stderr_tail);
        let text = tail
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n");
        tail.clear();
        text
    }
}
