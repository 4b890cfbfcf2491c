//! The `http_metrics` middleware's counters (rr's `rr_http_*` request series), kept per
//! shard and summed at scrape, and the help texts of the http pool's gauges.

use crate::plugins::metrics::exposition::{Family, Kind};
use crate::plugins::metrics::pool::PoolHelp;
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

/// The http plugin's.
pub const HTTP_POOL_HELP: PoolHelp = PoolHelp {
    prefix: "rr_http",
    total: "Total number of workers used by the HTTP plugin",
    memory: "Memory usage by HTTP workers.",
    ready: "HTTP workers currently in ready state",
    working: "HTTP workers currently in working state",
    invalid: "HTTP workers currently in invalid,killing,destroyed,errored,inactive states",
};
