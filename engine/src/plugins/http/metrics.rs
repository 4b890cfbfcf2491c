//! The `http_metrics` middleware's counters (rr's `rr_http_*` request series), kept per
//! shard and summed at scrape, and the http pool's gauges.

use crate::plugins::metrics::exposition::{Family, Kind};
use crate::pool::{Pool, WorkerState};
use crate::stats::{ShardedGauge, StatusHistograms, REQUEST_SECONDS};
use std::time::{Duration, Instant};

/// The request series of `http_metrics`.
#[derive(Debug)]
pub struct HttpMetrics {
    in_flight: ShardedGauge,
    no_free_workers: ShardedGauge,
    by_status: StatusHistograms,
    started: Instant,
}

impl HttpMetrics {
    /// Counters for `shards` shards.
    #[must_use]
    pub fn new(shards: usize) -> Self {
        Self {
            in_flight: ShardedGauge::new(shards),
            no_free_workers: ShardedGauge::new(shards),
            by_status: StatusHistograms::new(REQUEST_SECONDS, shards),
            started: Instant::now(),
        }
    }

    /// A request enters the middleware on `shard`.
    pub fn begin(&self, shard: usize) {
        self.in_flight.add(shard, 1);
    }

    /// It leaves with `status` after `took`; `no_workers` when it got rr's `No-Workers`.
    pub fn end(&self, shard: usize, status: u16, took: Duration, no_workers: bool) {
        self.in_flight.add(shard, -1);
        if no_workers {
            self.no_free_workers.add(shard, 1);
        }
        self.by_status.observe(shard, status, took);
    }

    /// rr's families (spec metrics §5.2), uptime and no-free-workers present from start.
    pub fn collect(&self, families: &mut Vec<Family>) {
        families.push(Family::single(
            "rr_http_requests_queue",
            "Total number of queued requests.",
            Kind::Gauge,
            self.in_flight.value() as f64,
        ));
        families.push(Family::single(
            "rr_http_no_free_workers_total",
            "Total number of NoFreeWorkers occurrences.",
            Kind::Counter,
            self.no_free_workers.value() as f64,
        ));
        families.push(Family::single(
            "rr_http_uptime_seconds",
            "Uptime in seconds",
            Kind::Counter,
            self.started.elapsed().as_secs() as f64,
        ));
        let mut total = Family::new(
            "rr_http_request_total",
            "Total number of handled http requests after server restart.",
            Kind::Counter,
        );
        let mut duration = Family::new(
            "rr_http_request_duration_seconds",
            "HTTP request duration.",
            Kind::Histogram,
        );
        for (status, snapshot) in self.by_status.snapshot() {
            let labels = vec![("status".to_owned(), status.to_string())];
            total.push(labels.clone(), snapshot.count as f64);
            duration.push_histogram(
                &labels,
                REQUEST_SECONDS,
                &snapshot.cumulative(REQUEST_SECONDS),
                snapshot.sum_seconds(),
                snapshot.count,
            );
        }
        families.push(total);
        families.push(duration);
    }
}

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

/// The http plugin's.
pub const HTTP_POOL_HELP: PoolHelp = PoolHelp {
    prefix: "rr_http",
    total: "Total number of workers used by the HTTP plugin",
    memory: "Memory usage by HTTP workers.",
    ready: "HTTP workers currently in ready state",
    working: "HTTP workers currently in working state",
    invalid: "HTTP workers currently in invalid,killing,destroyed,errored,inactive states",
};

/// The jobs plugin's.
pub const JOBS_POOL_HELP: PoolHelp = PoolHelp {
    prefix: "rr_jobs",
    total: "Total number of workers used by the plugin",
    memory: "Memory usage by workers.",
    ready: "Workers currently in ready state",
    working: "Workers currently in working state",
    invalid: "Workers currently in invalid,killing,destroyed,errored,inactive states",
};

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
