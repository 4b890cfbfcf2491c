//! Counters and histograms that shards write on the hot path and a scrape reads: each shard
//! has cells of its own (no lock, no cache line shared between shards per request), summed
//! when read. Relaxed atomics: a scrape may see one request's count before its sum, which
//! Prometheus tolerates (the next scrape is consistent again).

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// The most buckets a histogram may have (bounds; `+Inf` is extra).
pub const MAX_BOUNDS: usize = 15;

/// rr's request duration buckets (`rr_http_request_duration_seconds`).
pub const REQUEST_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Finer buckets for what is usually short (a worker's exec, a wait for a free worker).
pub const SHORT_SECONDS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
    30.0,
];

/// Per-bucket counts made cumulative (a histogram's `le` buckets).
#[must_use]
pub fn running_sums(counts: &[u64]) -> Vec<u64> {
    counts
        .iter()
        .scan(0, |total, count| {
            *total += count;
            Some(*total)
        })
        .collect()
}

/// One histogram's counters, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Cell {
    /// Per bucket (not cumulative); the last is `+Inf` only.
    buckets: [AtomicU64; MAX_BOUNDS + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Cell {
    fn observe(&self, bounds_ns: &[u64], took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = bounds_ns.partition_point(|bound| *bound < ns);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn add_into(&self, snapshot: &mut Snapshot) {
        for (total, bucket) in snapshot.per_bucket.iter_mut().zip(&self.buckets) {
            *total += bucket.load(Ordering::Relaxed);
        }
        snapshot.sum_ns += self.sum_ns.load(Ordering::Relaxed);
        snapshot.count += self.count.load(Ordering::Relaxed);
    }
}

/// A histogram read at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    per_bucket: [u64; MAX_BOUNDS + 1],
    sum_ns: u64,
    /// Observations.
    pub count: u64,
}

impl Snapshot {
    /// Cumulative counts per bound (the `le` buckets before `+Inf`).
    #[must_use]
    pub fn cumulative(&self, bounds: &[f64]) -> Vec<u64> {
        running_sums(&self.per_bucket[..bounds.len()])
    }

    /// The sum of the observations, in seconds.
    #[must_use]
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }
}

fn bounds_in_ns(bounds: &[f64]) -> Vec<u64> {
    assert!(bounds.len() <= MAX_BOUNDS, "at most {MAX_BOUNDS} bounds");
    bounds
        .iter()
        .map(|seconds| (seconds * 1e9) as u64)
        .collect()
}

/// A duration histogram with a cell per shard.
#[derive(Debug)]
pub struct ShardedHistogram {
    bounds: &'static [f64],
    bounds_ns: Vec<u64>,
    cells: Box<[Cell]>,
}

impl ShardedHistogram {
    /// A histogram with `bounds` (seconds, increasing, at most [`MAX_BOUNDS`]) for `shards`.
    #[must_use]
    pub fn new(bounds: &'static [f64], shards: usize) -> Self {
        Self {
            bounds,
            bounds_ns: bounds_in_ns(bounds),
            cells: (0..shards.max(1)).map(|_| Cell::default()).collect(),
        }
    }

    /// Records `took` on `shard`'s cell.
    pub fn observe(&self, shard: usize, took: Duration) {
        self.cells[shard % self.cells.len()].observe(&self.bounds_ns, took);
    }

    /// The bounds.
    #[must_use]
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// The sum over the shards.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for cell in &self.cells {
            cell.add_into(&mut snapshot);
        }
        snapshot
    }
}

/// Entries of a shard's status table: more distinct statuses than this share the last.
const STATUS_ENTRIES: usize = 32;

#[derive(Debug, Default)]
struct StatusEntry {
    /// The status this entry counts; 0 while free.
    status: AtomicU32,
    cell: Cell,
}

/// Duration histograms by HTTP status, a small table per shard (a status claims an entry
/// the first time a shard sees it).
#[derive(Debug)]
pub struct StatusHistograms {
    bounds: &'static [f64],
    bounds_ns: Vec<u64>,
    shards: Box<[Box<[StatusEntry]>]>,
}

impl StatusHistograms {
    /// Tables for `shards`, with `bounds` as [`ShardedHistogram::new`].
    #[must_use]
    pub fn new(bounds: &'static [f64], shards: usize) -> Self {
        Self {
            bounds,
            bounds_ns: bounds_in_ns(bounds),
            shards: (0..shards.max(1))
                .map(|_| {
                    (0..STATUS_ENTRIES)
                        .map(|_| StatusEntry::default())
                        .collect()
                })
                .collect(),
        }
    }

    /// Records a request answered with `status` on `shard` after `took`.
    pub fn observe(&self, shard: usize, status: u16, took: Duration) {
        let table = &self.shards[shard % self.shards.len()];
        let status = u32::from(status);
        let start = status as usize % STATUS_ENTRIES;
        for probe in 0..STATUS_ENTRIES {
            let entry = &table[(start + probe) % STATUS_ENTRIES];
            let owner = entry.status.load(Ordering::Acquire);
            let claimed = owner == status
                || (owner == 0
                    && entry
                        .status
                        .compare_exchange(0, status, Ordering::AcqRel, Ordering::Acquire)
                        .map_or_else(|current| current == status, |_| true));
            if claimed {
                entry.cell.observe(&self.bounds_ns, took);
                return;
            }
        }
        // A full table (32 distinct statuses on one shard): counted under the entry it
        // hashes to rather than lost.
        table[start].cell.observe(&self.bounds_ns, took);
    }

    /// The bounds.
    #[must_use]
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Each status seen, in increasing order, with its histogram summed over the shards.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(u16, Snapshot)> {
        let mut by_status: std::collections::BTreeMap<u16, Snapshot> = Default::default();
        for table in &self.shards {
            for entry in table.iter() {
                let status = entry.status.load(Ordering::Acquire);
                if let Ok(status) = u16::try_from(status) {
                    if status != 0 {
                        entry.cell.add_into(by_status.entry(status).or_default());
                    }
                }
            }
        }
        by_status.into_iter().collect()
    }
}

/// A gauge many shards move up and down (requests in flight), a cell per shard.
#[derive(Debug)]
pub struct ShardedGauge {
    cells: Box<[GaugeCell]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct GaugeCell(AtomicI64);

impl ShardedGauge {
    /// A gauge for `shards`.
    #[must_use]
    pub fn new(shards: usize) -> Self {
        Self {
            cells: (0..shards.max(1)).map(|_| GaugeCell::default()).collect(),
        }
    }

    /// Adds `delta` on `shard`'s cell.
    pub fn add(&self, shard: usize, delta: i64) {
        self.cells[shard % self.cells.len()]
            .0
            .fetch_add(delta, Ordering::Relaxed);
    }

    /// The sum over the shards.
    #[must_use]
    pub fn value(&self) -> i64 {
        self.cells
            .iter()
            .map(|cell| cell.0.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_sum_the_shards_and_bucket_by_bound() {
        let histogram = ShardedHistogram::new(REQUEST_SECONDS, 3);
        histogram.observe(0, Duration::from_millis(3));
        histogram.observe(1, Duration::from_millis(5));
        histogram.observe(5, Duration::from_millis(70));
        histogram.observe(2, Duration::from_secs(100));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 4);
        let cumulative = snapshot.cumulative(REQUEST_SECONDS);
        // le 0.005 holds 3 ms and exactly 5 ms (bounds are inclusive).
        assert_eq!(cumulative[0], 2);
        assert_eq!(cumulative[4], 3);
        assert_eq!(*cumulative.last().unwrap(), 3);
        assert!((snapshot.sum_seconds() - 100.078).abs() < 1e-9);
    }

    #[test]
    fn statuses_get_their_own_series_even_past_the_table() {
        let histograms = StatusHistograms::new(REQUEST_SECONDS, 2);
        histograms.observe(0, 200, Duration::from_millis(1));
        histograms.observe(1, 200, Duration::from_millis(1));
        histograms.observe(1, 404, Duration::from_millis(1));
        let snapshot = histograms.snapshot();
        assert_eq!(snapshot.len(), 2);
        assert_eq!(snapshot[0].0, 200);
        assert_eq!(snapshot[0].1.count, 2);
        assert_eq!(snapshot[1].1.count, 1);
        for status in 100..200 {
            histograms.observe(0, status, Duration::ZERO);
        }
        let total: u64 = histograms.snapshot().iter().map(|(_, s)| s.count).sum();
        assert_eq!(total, 103);
    }

    #[test]
    fn a_gauge_sums_its_cells() {
        let gauge = ShardedGauge::new(2);
        gauge.add(0, 3);
        gauge.add(1, -1);
        gauge.add(7, 1);
        assert_eq!(gauge.value(), 3);
    }
}
