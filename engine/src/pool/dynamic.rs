//! The dynamic allocator (spec pool-server §10): when a request has waited the whole
//! `allocate_timeout`, start up to `spawn_rate` extra workers (at most `max_workers` extra in
//! all) in slots kept for them, and hand the request one; `idle_timeout` after the last
//! extra spawn, retire every extra worker at once (gracefully; a busy one after its request).

use super::slot::SlotToken;
use super::{ExecError, PoolShared, Sweep, WorkerState};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a scaling request waits for an idle worker before and after spawning (rr's 2 s).
const TAKE_IDLE_WAIT: Duration = Duration::from_secs(2);

/// `pool.dynamic_allocator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynamicAllocator {
    /// Most extra workers on top of `num_workers` (≤ 100).
    pub max_workers: usize,
    /// Extra workers started per scale-up (≤ 100).
    pub spawn_rate: usize,
    /// Time after the last scale-up at which every extra worker is retired (≥ 1 s).
    pub idle_timeout: Duration,
}

impl Default for DynamicAllocator {
    fn default() -> Self {
        Self {
            max_workers: 10,
            spawn_rate: 5,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl DynamicAllocator {
    /// rr's clamps: counts to 100, an `idle_timeout` under 1 s becomes 1 min.
    #[must_use]
    pub fn clamped(self) -> Self {
        Self {
            max_workers: self.max_workers.min(100),
            spawn_rate: self.spawn_rate.clamp(1, 100),
            idle_timeout: if self.idle_timeout < Duration::from_secs(1) {
                Duration::from_secs(60)
            } else {
                self.idle_timeout
            },
        }
    }
}

/// The allocator's state in a pool.
#[derive(Debug)]
pub(super) struct DynamicState {
    pub(super) config: DynamicAllocator,
    /// Serialises scale-ups and the scale-down.
    lock: tokio::sync::Mutex<()>,
    /// Extra workers in service or starting.
    extra: AtomicUsize,
    /// Pool clock of the last extra spawn.
    last_spawn_ns: AtomicU64,
    /// The idle-watch task runs.
    watching: AtomicBool,
}

impl DynamicState {
    pub(super) fn new(config: DynamicAllocator) -> Self {
        Self {
            config,
            lock: tokio::sync::Mutex::new(()),
            extra: AtomicUsize::new(0),
            last_spawn_ns: AtomicU64::new(0),
            watching: AtomicBool::new(false),
        }
    }

    /// Extra workers in service or starting.
    pub(super) fn extra(&self) -> usize {
        self.extra.load(Ordering::Acquire)
    }
}

/// Scales up for a request that waited `allocate_timeout`; the worker index it may use.
pub(super) async fn allocate(
    shared: &Arc<PoolShared>,
    here: usize,
) -> Result<SlotToken, ExecError> {
    let dynamic = shared.dynamic.as_ref().expect("called with an allocator");
    let _scaling = dynamic.lock.lock().await;
    let take_idle = || async {
        let deadline = tokio::time::Instant::now() + TAKE_IDLE_WAIT;
        match shared.pop_idle() {
            Some(token) => Ok(token),
            None => shared.wait_for_worker(deadline, here).await,
        }
    };
    if dynamic.watching.swap(true, Ordering::AcqRel) {
        if let Ok(token) = take_idle().await {
            return Ok(token);
        }
    } else {
        let watcher = Arc::clone(shared);
        shared.shards.spawn_on(0, move |_| watch_idle(watcher));
    }
    if dynamic.extra() >= dynamic.config.max_workers {
        return Err(ExecError::DynamicLimit);
    }
    for _ in 0..dynamic.config.spawn_rate {
        if dynamic.extra() >= dynamic.config.max_workers {
            break;
        }
        let Some(index) = free_extra_slot(shared) else {
            break;
        };
        dynamic.extra.fetch_add(1, Ordering::AcqRel);
        dynamic
            .last_spawn_ns
            .store(shared.now_ns(), Ordering::Release);
        if let Err(error) = shared.start_slot(index).await {
            dynamic.extra.fetch_sub(1, Ordering::AcqRel);
            return Err(ExecError::Network(error.to_string()));
        }
        tracing::debug!(pool = %shared.config.name, slot = index, extra = dynamic.extra(),
            "dynamic allocator started a worker");
    }
    take_idle().await.map_err(|_| ExecError::NoFreeWorkers)
}

/// An extra slot with no lifecycle task.
fn free_extra_slot(shared: &PoolShared) -> Option<u32> {
    (shared.base_workers..shared.dynamic_end)
        .find(|&index| {
            let slot = &shared.slots[index];
            !slot.wanted.load(Ordering::Acquire) && !slot.task_live.load(Ordering::Acquire)
        })
        .map(|index| u32::try_from(index).expect("at most 500 slots"))
}

/// Retires every extra worker `idle_timeout` after the last extra spawn, then ends; the next
/// scale-up starts it again.
async fn watch_idle(shared: Arc<PoolShared>) {
    let dynamic = shared.dynamic.as_ref().expect("started with an allocator");
    let timeout_ns = u64::try_from(dynamic.config.idle_timeout.as_nanos()).unwrap_or(u64::MAX);
    loop {
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        let due = dynamic
            .last_spawn_ns
            .load(Ordering::Acquire)
            .saturating_add(timeout_ns);
        let now = shared.now_ns();
        if now < due {
            tokio::time::sleep(Duration::from_nanos(due - now)).await;
            continue;
        }
        let _scaling = dynamic.lock.lock().await;
        if dynamic
            .last_spawn_ns
            .load(Ordering::Acquire)
            .saturating_add(timeout_ns)
            > shared.now_ns()
        {
            continue; // a scale-up got in first
        }
        retire_extras(&shared);
        dynamic.extra.store(0, Ordering::Release);
        dynamic.watching.store(false, Ordering::Release);
        tracing::debug!(pool = %shared.config.name, "dynamic allocator retired its extra workers");
        return;
    }
}

/// Marks every extra slot unwanted: idle workers stop now, busy ones after their request;
/// their lifecycle tasks then end instead of starting a replacement.
fn retire_extras(shared: &PoolShared) {
    for slot in &shared.slots[shared.base_workers..shared.dynamic_end] {
        if slot.wanted.swap(false, Ordering::AcqRel) {
            // A busy one retires when its request ends (give_back also checks `wanted`); a
            // slot backing off after a failed start sees `wanted` when its delay ends.
            slot.transition(WorkerState::Working, WorkerState::Invalid);
        }
    }
    let extras = shared.base_workers..shared.dynamic_end;
    shared.sweep_idle(|index, slot| {
        if !extras.contains(&(index as usize)) || slot.wanted.load(Ordering::Acquire) {
            Sweep::Keep
        } else {
            Sweep::Retire(WorkerState::Invalid)
        }
    });
}
