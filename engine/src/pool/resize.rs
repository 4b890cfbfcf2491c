//! Workers added and removed at run time (spec pool-server §6.4, RPC `informer.AddWorker` /
//! `informer.RemoveWorker`), and the start of one slot's lifecycle task that they share with
//! the dynamic allocator.

use super::{lifecycle, Pool, PoolShared, SpawnError, Sweep, WorkerState, MAX_WORKERS};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Why a worker could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResizeError {
    /// rr's limit of 500 workers a pool.
    #[error("WorkerAllocate: container is full, maximum number of workers reached")]
    Full,
    /// The new worker did not boot.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

impl PoolShared {
    /// Starts the lifecycle task of free slot `index` and waits for its first worker; the
    /// slot is given up again when that worker fails to boot.
    pub(super) async fn start_slot(self: &Arc<Self>, index: u32) -> Result<(), SpawnError> {
        let slot = self.slot(index);
        slot.wanted.store(true, Ordering::Release);
        slot.set_state(WorkerState::Inactive);
        self.live_tasks.fetch_add(1, Ordering::AcqRel);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let task_shared = Arc::clone(self);
        let started = self.shards.spawn_on(index as usize, move |shard| {
            lifecycle::run_slot(task_shared, index, Some(sender), shard)
        });
        if !started {
            self.live_tasks.fetch_sub(1, Ordering::AcqRel);
        }
        let booted = receiver.await.unwrap_or(Err(SpawnError::Closed));
        if booted.is_err() {
            slot.wanted.store(false, Ordering::Release);
        }
        booted
    }

    /// Slots that should hold a worker now.
    fn wanted_workers(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.wanted.load(Ordering::Acquire))
            .count()
    }
}

impl Pool {
    /// Starts one more worker for good and waits until it is ready. In debug mode (a
    /// worker per request) it is a no-op with rr's warning.
    ///
    /// # Errors
    /// [`ResizeError::Full`] at 500 workers, or the new worker's boot failure.
    pub async fn add_worker(&self) -> Result<(), ResizeError> {
        let shared = self.shared();
        if shared.config.debug {
            tracing::warn!(pool = %shared.config.name, "add worker operation is not allowed in debug mode");
            return Ok(());
        }
        if shared.closed.load(Ordering::SeqCst) {
            return Err(SpawnError::Closed.into());
        }
        let free = (shared.dynamic_end..shared.slots.len()).find(|&index| {
            let slot = &shared.slots[index];
            !slot.wanted.load(Ordering::Acquire) && !slot.task_live.load(Ordering::Acquire)
        });
        let Some(index) = free.filter(|_| shared.wanted_workers() < MAX_WORKERS) else {
            return Err(ResizeError::Full);
        };
        shared
            .start_slot(u32::try_from(index).expect("at most 500 slots"))
            .await?;
        tracing::debug!(pool = %shared.config.name, slot = index, "worker added");
        Ok(())
    }

    /// Retires one worker for good: an idle one at once, a busy one when its request ends;
    /// no replacement is started. The last worker is never removed (rr's warning instead).
    pub fn remove_worker(&self) {
        let shared = self.shared();
        if shared.config.debug {
            tracing::warn!(pool = %shared.config.name, "remove worker operation is not allowed in debug mode");
            return;
        }
        if shared.wanted_workers() <= 1 {
            tracing::warn!(pool = %shared.config.name, "can't remove the last worker");
            return;
        }
        // The most recently added slot goes first, the base slots last.
        let Some(index) = (0..shared.slots.len())
            .rev()
            .find(|&index| shared.slots[index].wanted.load(Ordering::Acquire))
        else {
            return;
        };
        let slot = &shared.slots[index];
        if !slot.wanted.swap(false, Ordering::AcqRel) {
            return;
        }
        slot.transition(WorkerState::Working, WorkerState::Invalid);
        shared.sweep_idle(|picked, _| {
            if picked as usize == index {
                Sweep::Retire(WorkerState::Invalid)
            } else {
                Sweep::Keep
            }
        });
        tracing::debug!(pool = %shared.config.name, slot = index, "worker removed");
    }
}
