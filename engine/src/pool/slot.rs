//! One worker slot: the state and counters of the process that currently fills it, and the
//! descriptors the pool keeps for it. A slot is owned by exactly one party at a time: the
//! idle stack, a waiter it was sent to, an exec, or the slot's own lifecycle task. Who owns
//! it holds its [`SlotToken`], a value that moves; a party that cannot use a slot hands the
//! token back to the lifecycle task (`PoolShared::hand_back`, through `returned`).

use super::state::WorkerState;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// Lines of stderr kept per worker for boot-failure messages.
const STDERR_TAIL_LINES: usize = 10;

/// The ownership of one worker slot: one exists per slot, and whoever holds it owns the
/// slot (runs a request on its worker, retires it, puts it on the idle stack). Not `Clone`
/// or `Copy`: ownership moves, and the compiler sees every move. The transports between
/// owners that must stay bare indices (the lock-free idle stack, the waiters' channels, the
/// `returned` notification; loom checks them over plain `u32`s) take the token with
/// [`SlotToken::into_index`] and give it back through [`SlotToken::claim`], only at
/// their two ends.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a dropped slot token loses the slot: release it or hand it back"]
pub struct SlotToken(u32);

impl SlotToken {
    /// Takes ownership of slot `index` at the receiving end of a transport (or when the
    /// slot's lifecycle task starts): the sender gave the token up with `into_index`.
    pub(super) fn claim(index: u32) -> Self {
        Self(index)
    }

    /// The slot's index.
    pub fn index(&self) -> u32 {
        self.0
    }

    /// Gives the token up to a transport (the idle stack, a waiter's channel).
    pub(super) fn into_index(self) -> u32 {
        self.0
    }
}

/// Descriptors of a running worker that any shard may duplicate or signal.
#[derive(Debug)]
pub struct SlotProcess {
    pub relay_write: OwnedFd,
    pub relay_read: OwnedFd,
    pub pidfd: OwnedFd,
    /// The slot's generation this process fills.
    pub generation: u64,
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

    /// SIGKILL through the pidfd if the installed process is of generation `generation`:
    /// checked and sent under the process lock, so a replacement installed meanwhile (a
    /// newer generation) is never hit. True when a signal was sent.
    pub fn kill_generation(&self, generation: u64) -> bool {
        self.with_process(|process| {
            let hit = process.generation == generation;
            if hit {
                crate::worker::process::kill(&process.pidfd);
            }
            hit
        })
        .unwrap_or(false)
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

#[cfg(all(test, not(ringrunner_loom)))]
mod tests {
    use super::*;

    /// A `sleep` process installed as generation `generation`, and its child handle.
    fn install_sleeper(slot: &WorkerSlot, generation: u64) -> std::process::Child {
        let child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep runs");
        let pidfd = crate::worker::process::pidfd_of(child.id()).unwrap();
        let (relay_read, relay_write) = rustix::pipe::pipe().unwrap();
        slot.install(SlotProcess {
            relay_write,
            relay_read,
            pidfd,
            generation,
        });
        child
    }

    /// reset() looked at generation 1; by the time it kills, generation 2 runs in the slot:
    /// the new process lives. The process of the generation it checked is killed.
    #[test]
    fn a_kill_for_an_old_generation_spares_the_replacement() {
        let slot = WorkerSlot::new();
        let mut replacement = install_sleeper(&slot, 2);
        assert!(!slot.kill_generation(1));
        assert!(
            replacement.try_wait().unwrap().is_none(),
            "the replacement was killed"
        );
        assert!(slot.kill_generation(2));
        let status = replacement.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        slot.uninstall();
        assert!(
            !slot.kill_generation(2),
            "nothing installed: nothing to kill"
        );
    }
}
