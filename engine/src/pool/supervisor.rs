//! The supervisor (spec pool-server §11): soft limits checked every `watch_tick`. A soft
//! limit never interrupts a request: a busy worker is flagged `invalid` and retired when its
//! request ends; an idle one is taken off the stack and stopped gracefully at once.
//! (`exec_ttl`, the hard limit, is enforced by the exec itself.)

use super::slot::WorkerSlot;
use super::{PoolShared, SupervisorConfig, Sweep, WorkerState};
use crate::worker::process::rss_bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// True when the section sets a limit that the tick checks.
pub(super) fn has_soft_limits(config: &SupervisorConfig) -> bool {
    !config.ttl.is_zero() || !config.idle_ttl.is_zero() || config.max_worker_memory_mib > 0
}

pub(super) async fn run(shared: Arc<PoolShared>, config: SupervisorConfig) {
    let tick = if config.watch_tick.is_zero() {
        Duration::from_secs(5)
    } else {
        config.watch_tick
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    while !shared.closed.load(Ordering::SeqCst) {
        interval.tick().await;
        let rss = resident_sizes(&shared, &config).await;
        check(&shared, &config, &rss);
    }
}

/// Each slot's resident set size in bytes (None: no process, or no limit to check), read
/// from `/proc` on a blocking-pool thread: the shard this task runs on does no file I/O.
async fn resident_sizes(shared: &PoolShared, config: &SupervisorConfig) -> Vec<Option<u64>> {
    let pids: Vec<u32> = shared
        .slots
        .iter()
        .map(|slot| slot.pid.load(Ordering::Relaxed))
        .collect();
    if config.max_worker_memory_mib == 0 {
        return vec![None; pids.len()];
    }
    let count = pids.len();
    tokio::task::spawn_blocking(move || {
        pids.into_iter()
            .map(|pid| if pid == 0 { None } else { rss_bytes(pid) })
            .collect()
    })
    .await
    .unwrap_or_else(|_| vec![None; count])
}

fn check(shared: &PoolShared, config: &SupervisorConfig, rss: &[Option<u64>]) {
    let now_ns = shared.now_ns();
    for (slot, rss) in shared.slots.iter().zip(rss) {
        if slot.state() == WorkerState::Working
            && over_hard_soft_limits(slot, config, *rss, now_ns).is_some()
        {
            slot.transition(WorkerState::Working, WorkerState::Invalid);
        }
    }
    shared.sweep_idle(|index, slot| {
        if slot.state() != WorkerState::Ready {
            return Sweep::Keep;
        }
        let rss = rss.get(index as usize).copied().flatten();
        match idle_verdict(slot, config, rss, now_ns) {
            Some(state) => {
                tracing::debug!(pool = %shared.config.name, pid = slot.pid.load(Ordering::Relaxed),
                    reason = state.name(), "supervisor retires an idle worker");
                Sweep::Retire(state)
            }
            None => Sweep::Keep,
        }
    });
}

/// ttl and memory: the limits that apply to busy and idle workers alike (spec §11 steps 4-5).
fn over_hard_soft_limits(
    slot: &WorkerSlot,
    config: &SupervisorConfig,
    rss_bytes: Option<u64>,
    now_ns: u64,
) -> Option<WorkerState> {
    let lived_ns = now_ns.saturating_sub(slot.spawned_at_ns.load(Ordering::Relaxed));
    if !config.ttl.is_zero() && u128::from(lived_ns) >= config.ttl.as_nanos() {
        return Some(WorkerState::TtlReached);
    }
    if config.max_worker_memory_mib > 0
        && rss_bytes? >= config.max_worker_memory_mib.saturating_mul(1024 * 1024)
    {
        return Some(WorkerState::MaxMemoryReached);
    }
    None
}

/// Every soft limit, for an idle worker; idle_ttl only counts workers that served a request.
fn idle_verdict(
    slot: &WorkerSlot,
    config: &SupervisorConfig,
    rss_bytes: Option<u64>,
    now_ns: u64,
) -> Option<WorkerState> {
    if let Some(state) = over_hard_soft_limits(slot, config, rss_bytes, now_ns) {
        return Some(state);
    }
    let last_used_ns = slot.last_used_ns.load(Ordering::Relaxed);
    let idle_ns = now_ns.saturating_sub(last_used_ns);
    let expired = !config.idle_ttl.is_zero()
        && last_used_ns != 0
        && u128::from(idle_ns) >= config.idle_ttl.as_nanos();
    expired.then_some(WorkerState::IdleTtlReached)
}
