//! A worker pool's series, for every plugin that runs a pool: rr's gauges (workers by
//! state, memory) under the plugin's prefix and help texts, and ringrunner's pool
//! histograms. A plugin names its [`PoolHelp`] and calls [`collect_pool`] from its
//! `Service::collect`; plugins meet here, not in each other's modules.

use super::exposition::{Family, Kind};
use crate::pool::{Pool, WorkerState};

/// The help texts of a plugin's pool gauges (rr words them per plugin).
#[derive(Debug, Clone, Copy)]
pub struct PoolHelp {
    /// The families' prefix (`rr_http`).
    pub prefix: &'static str,
    /// `…_total_workers`.
    pub total: &'static str,
    /// `…_workers_memory_bytes`.
    pub memory: &'static str,
    /// `…_workers_ready`.
    pub ready: &'static str,
    /// `…_workers_working`.
    pub working: &'static str,
    /// `…_workers_invalid`.
    pub invalid: &'static str,
}

/// A pool's gauges as rr computes them at scrape (spec metrics §5.1), and ringrunner's pool
/// histograms: the time a request waited for a free worker and the time a worker took.
pub fn collect_pool(help: &PoolHelp, pool: &Pool, families: &mut Vec<Family>) {
    let workers = pool.workers();
    let prefix = help.prefix;
    let family =
        |suffix: &str, text: &str| Family::new(format!("{prefix}_{suffix}"), text, Kind::Gauge);
    let mut states = family("worker_state", "Worker current state");
    let mut memory = family("worker_memory_bytes", "Worker current memory usage");
    let (mut ready, mut working, mut total_memory) = (0usize, 0usize, 0u64);
    for worker in &workers {
        let pid = worker.pid.to_string();
        states.push(
            vec![
                ("pid".into(), pid.clone()),
                ("state".into(), worker.state.name().into()),
            ],
            0.0,
        );
        memory.push(vec![("pid".into(), pid)], worker.memory_usage as f64);
        total_memory += worker.memory_usage;
        match worker.state {
            WorkerState::Ready => ready += 1,
            WorkerState::Working => working += 1,
            _ => {}
        }
    }
    let invalid = workers.len() - ready - working;
    for (suffix, text, value) in [
        ("total_workers", help.total, workers.len() as f64),
        ("workers_memory_bytes", help.memory, total_memory as f64),
        ("workers_ready", help.ready, ready as f64),
        ("workers_working", help.working, working as f64),
        ("workers_invalid", help.invalid, invalid as f64),
    ] {
        let name = format!("{prefix}_{suffix}");
        families.push(Family::single(&name, text, Kind::Gauge, value));
    }
    families.push(states);
    families.push(memory);
    let labels = vec![("pool".to_owned(), pool.config().name.clone())];
    for (name, text, histogram) in [
        (
            "ringrunner_pool_wait_seconds",
            "Time a request waited for a free worker.",
            pool.wait_seconds(),
        ),
        (
            "ringrunner_pool_exec_seconds",
            "Time a worker took for a request, from the request sent to the reply's end.",
            pool.exec_seconds(),
        ),
    ] {
        let snapshot = histogram.snapshot();
        let bounds = histogram.bounds();
        let mut family = Family::new(name, text, Kind::Histogram);
        family.push_histogram(
            &labels,
            bounds,
            &snapshot.cumulative(bounds),
            snapshot.sum_seconds(),
            snapshot.count,
        );
        families.push(family);
    }
}
