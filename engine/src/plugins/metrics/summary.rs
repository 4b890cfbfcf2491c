//! A summary's quantiles over a sliding window, computed as the Prometheus Go library that
//! rr uses computes them (spec metrics §1.1): each objective `quantile → error` is a rank
//! error (the reported value's rank lies within `(quantile ± error) × count`), kept by a
//! CKMS targeted-quantile stream (Cormode, Korn, Muthukrishnan, Srivastava 2005, as
//! `beorn7/perks` implements it); the window (`max_age` 10 min) is five such streams reset
//! one after the other every 2 min, the oldest answering.
//!
//! Observations are gathered in a small buffer and merged, sorted, into the streams when it
//! fills or at a scrape, so an observation costs O(1) amortised plus O(tuples) per
//! [`PENDING_MAX`] observations, memory per series is the streams' tuples (about 45 a
//! stream for `{0.5: 0.05, 0.9: 0.01, 0.99: 0.001}` after a million observations; bounded by
//! the objectives' errors and [`OBJECTIVE_ERROR_MIN`]), and a scrape walks the tuples,
//! never the raw observations.
//!
//! The clock is the caller's: every call takes `now`.

use std::time::{Duration, Instant};

/// The quantiles cover this much of the recent past (the Go library's `DefMaxAge`).
pub const WINDOW: Duration = Duration::from_secs(600);
/// The window is kept by this many streams reset in turn (the Go library's `DefAgeBuckets`).
pub const AGE_BUCKETS: usize = 5;
/// Observations gathered before they are merged into the streams (the Go library's
/// `DefBufCap`).
pub const PENDING_MAX: usize = 500;
/// The smallest rank error an objective keeps: an objective of `0` (exact) would keep every
/// observation of the window; it is held to this instead (one in ten thousand ranks).
pub const OBJECTIVE_ERROR_MIN: f64 = 1e-4;

/// One declared objective: report `quantile` with at most `error` rank error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    /// In `0..=1`.
    pub quantile: f64,
    /// Allowed rank error, at least [`OBJECTIVE_ERROR_MIN`].
    pub error: f64,
    /// The error the stream's invariant is built with, so that the reported rank keeps
    /// `error` (see [`invariant_error`]).
    invariant_error: f64,
}

impl Objective {
    /// An objective; `None` for a quantile outside `0..=1` or an error that is negative or
    /// not a number.
    #[must_use]
    pub fn new(quantile: f64, error: f64) -> Option<Self> {
        let valid = (0.0..=1.0).contains(&quantile) && error >= 0.0;
        let error = error.max(OBJECTIVE_ERROR_MIN);
        valid.then(|| Self {
            quantile,
            error,
            invariant_error: invariant_error(quantile, error),
        })
    }
}

/// The error to build the invariant with for a rank error of `error` at `quantile`.
///
/// CKMS bounds a tuple at rank `r` below the target `φn` by `f(r) = 2ε(n − r)/(1 − φ)`,
/// which exceeds `2εn` there: a tuple starting `x` ranks below the target may reach
/// `2εn + 2εx/(1 − φ)` past its start, so the value found may lie up to
/// `εn / (1 − 2ε/(1 − φ))` below the target, more than `εn` (the Go library reports such
/// ranks). Building the invariant with `ε' = ε(1 − φ)/(1 − φ + 2ε)` brings that back to `εn`.
fn invariant_error(quantile: f64, error: f64) -> f64 {
    let above = 1.0 - quantile;
    error * above / (above + 2.0 * error)
}

/// A run of `width` observations represented by `value`; `delta` bounds how far its rank may
/// be off.
#[derive(Debug, Clone, Copy)]
struct Tuple {
    value: f64,
    width: f64,
    delta: f64,
}

/// A CKMS stream for targeted quantiles: tuples sorted by value, compressed as far as the
/// objectives allow.
#[derive(Debug, Default)]
struct TargetedStream {
    tuples: Vec<Tuple>,
    /// Observations merged since the last reset.
    count: f64,
    /// The previous tuple vector, reused by the next merge.
    spare: Vec<Tuple>,
}

/// The invariant: the most rank uncertainty a tuple at `rank` may carry when `count`
/// observations are in (the minimum over the objectives).
fn allowed_uncertainty(objectives: &[Objective], count: f64, rank: f64) -> f64 {
    objectives
        .iter()
        .map(|objective| {
            let error = objective.invariant_error;
            if objective.quantile * count <= rank {
                2.0 * error * rank / objective.quantile
            } else {
                2.0 * error * (count - rank) / (1.0 - objective.quantile)
            }
        })
        // A quantile of 0 at rank 0 gives 0/0: no constraint, as in the Go library.
        .filter(|bound| !bound.is_nan())
        .fold(f64::MAX, f64::min)
}

impl TargetedStream {
    /// Merges `sorted` observations in, then compresses.
    fn merge(&mut self, sorted: &[f64], objectives: &[Objective]) {
        // Ordered by `total_cmp` throughout: a NaN observed sorts after everything.
        debug_assert!(sorted
            .windows(2)
            .all(|pair| pair[0].total_cmp(&pair[1]).is_le()));
        let mut merged = std::mem::take(&mut self.spare);
        merged.clear();
        merged.reserve(self.tuples.len() + sorted.len());
        let mut existing = self.tuples.iter().copied().peekable();
        let mut rank = 0.0;
        for &value in sorted {
            while let Some(tuple) = existing.next_if(|tuple| tuple.value.total_cmp(&value).is_le())
            {
                rank += tuple.width;
                merged.push(tuple);
            }
            // A new maximum is exact; one inserted inside may be off by what is allowed there.
            let delta = if existing.peek().is_some() {
                (allowed_uncertainty(objectives, self.count, rank).floor() - 1.0).max(0.0)
            } else {
                0.0
            };
            merged.push(Tuple {
                value,
                width: 1.0,
                delta,
            });
            self.count += 1.0;
            rank += 1.0;
        }
        merged.extend(existing);
        self.spare = std::mem::replace(&mut self.tuples, merged);
        self.compress(objectives);
    }

    /// Folds each tuple into its right neighbour wherever the invariant still holds at the
    /// tuple's rank, walking from the largest value down.
    ///
    /// The rank is the tuple's own (the widths before it), as the paper has it: `perks`
    /// overstates it (by the tuple's width less one), which above a quantile's target rank,
    /// where the allowed uncertainty grows with the rank, lets wider tuples form.
    fn compress(&mut self, objectives: &[Objective]) {
        let Some(&last) = self.tuples.last() else {
            return;
        };
        let mut kept = std::mem::take(&mut self.spare);
        kept.clear();
        kept.push(last);
        let mut widths_after = last.width;
        for &tuple in self.tuples.iter().rev().skip(1) {
            let rank = self.count - widths_after - tuple.width;
            let right = kept.last_mut().expect("kept starts with the last tuple");
            if tuple.width + right.width + right.delta
                <= allowed_uncertainty(objectives, self.count, rank)
            {
                right.width += tuple.width;
            } else {
                kept.push(tuple);
            }
            widths_after += tuple.width;
        }
        kept.reverse();
        self.spare = std::mem::replace(&mut self.tuples, kept);
    }

    /// The value at `quantile`: the tuple whose possible ranks stray least from the target
    /// rank; NaN when empty (as the Go library writes it).
    ///
    /// The paper (and `perks`) returns the tuple before the first one that may lie beyond
    /// `target + f(target) / 2`; where the allowed uncertainty grows with the rank (above a
    /// quantile) that tuple may lie further below the target than the error allows, while
    /// the invariant `width + delta <= f(rank)` still leaves one that fits.
    fn query(&self, quantile: f64) -> f64 {
        let target = (quantile * self.count).ceil();
        let mut rank_before = 0.0;
        let mut best = (f64::INFINITY, f64::NAN);
        for tuple in &self.tuples {
            let lowest = rank_before + tuple.width;
            let highest = lowest + tuple.delta;
            let stray = (target - lowest).max(highest - target);
            if stray < best.0 {
                best = (stray, tuple.value);
            }
            rank_before += tuple.width;
        }
        best.1
    }

    fn reset(&mut self) {
        self.tuples.clear();
        self.count = 0.0;
    }
}

/// A summary series' quantiles over [`WINDOW`].
#[derive(Debug)]
pub struct WindowedQuantiles {
    objectives: Vec<Objective>,
    /// Every stream takes every observation; they were reset one bucket apart.
    streams: Vec<TargetedStream>,
    /// The stream reset longest ago: it answers.
    head: usize,
    /// When the head is reset and the next stream becomes the head.
    head_expires: Instant,
    /// Observations not merged yet (at most [`PENDING_MAX`]).
    pending: Vec<f64>,
}

/// How long each age bucket lasts.
fn bucket_duration() -> Duration {
    WINDOW / AGE_BUCKETS as u32
}

impl WindowedQuantiles {
    /// Empty, starting at `now`; `objectives` sorted by quantile.
    #[must_use]
    pub fn new(objectives: Vec<Objective>, now: Instant) -> Self {
        debug_assert!(objectives
            .windows(2)
            .all(|pair| pair[0].quantile <= pair[1].quantile));
        Self {
            objectives,
            streams: (0..AGE_BUCKETS)
                .map(|_| TargetedStream::default())
                .collect(),
            head: 0,
            head_expires: now + bucket_duration(),
            pending: Vec::new(),
        }
    }

    /// Records `value` observed at `now`.
    pub fn observe(&mut self, value: f64, now: Instant) {
        if self.objectives.is_empty() {
            return;
        }
        self.rotate(now);
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(PENDING_MAX);
        }
        self.pending.push(value);
        if self.pending.len() >= PENDING_MAX {
            self.merge_pending();
        }
    }

    /// Each objective's quantile and its value over the window ending at `now` (NaN when
    /// the window holds no observation).
    pub fn quantiles(&mut self, now: Instant) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.rotate(now);
        self.merge_pending();
        let head = &self.streams[self.head];
        self.objectives
            .iter()
            .map(|objective| (objective.quantile, head.query(objective.quantile)))
    }

    /// Tuples and pending observations held: what the series' memory and a scrape's work
    /// are proportional to.
    #[must_use]
    pub fn retained(&self) -> usize {
        self.pending.len()
            + self
                .streams
                .iter()
                .map(|stream| stream.tuples.len())
                .sum::<usize>()
    }

    fn merge_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.pending.sort_unstable_by(f64::total_cmp);
        for stream in &mut self.streams {
            stream.merge(&self.pending, &self.objectives);
        }
        self.pending.clear();
    }

    /// Resets the head for each bucket that has ended by `now`; what is pending belongs to
    /// the buckets before and is merged first.
    fn rotate(&mut self, now: Instant) {
        if now <= self.head_expires {
            return;
        }
        self.merge_pending();
        let mut resets = 0;
        while now > self.head_expires {
            // After a full round every stream is empty: further rounds only move the clock.
            if resets < AGE_BUCKETS {
                self.streams[self.head].reset();
                self.head = (self.head + 1) % AGE_BUCKETS;
                resets += 1;
            }
            self.head_expires += bucket_duration();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn objectives(pairs: &[(f64, f64)]) -> Vec<Objective> {
        pairs
            .iter()
            .map(|&(quantile, error)| Objective::new(quantile, error).unwrap())
            .collect()
    }

    /// The rank range `value` takes in sorted `values`.
    fn ranks_of(sorted: &[f64], value: f64) -> (usize, usize) {
        let below = sorted.partition_point(|v| *v < value);
        let up_to = sorted.partition_point(|v| *v <= value);
        (below, up_to)
    }

    /// Asserts each reported quantile's rank lies within its declared error of the exact
    /// rank (with one rank of rounding slack).
    fn assert_within_objectives(values: &[f64], declared: &[(f64, f64)]) {
        let start = Instant::now();
        let mut summary = WindowedQuantiles::new(objectives(declared), start);
        for value in values {
            summary.observe(*value, start);
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len() as f64;
        let reported: Vec<(f64, f64)> = summary.quantiles(start).collect();
        for ((quantile, value), (_, error)) in reported.into_iter().zip(declared) {
            let (below, up_to) = ranks_of(&sorted, value);
            let lowest = ((quantile - error) * count).floor() - 1.0;
            let highest = ((quantile + error) * count).ceil() + 1.0;
            assert!(
                up_to as f64 >= lowest && below as f64 <= highest,
                "q{quantile}±{error}: {value} has ranks {below}..{up_to} of {count}, \
                 allowed {lowest}..{highest}"
            );
        }
    }

    #[test]
    fn quantiles_of_a_known_sequence() {
        let start = Instant::now();
        let mut summary = WindowedQuantiles::new(objectives(&[(0.5, 0.05), (0.99, 0.001)]), start);
        for value in 1..=100 {
            summary.observe(f64::from(value), start);
        }
        let reported: Vec<(f64, f64)> = summary.quantiles(start).collect();
        assert_eq!(reported[0].0, 0.5);
        assert!((45.0..=56.0).contains(&reported[0].1), "{reported:?}");
        assert!((98.0..=100.0).contains(&reported[1].1), "{reported:?}");
    }

    #[test]
    fn odd_values_neither_panic_nor_disorder_the_stream() {
        let start = Instant::now();
        let mut summary = WindowedQuantiles::new(objectives(&[(0.5, 0.05), (0.99, 0.001)]), start);
        for value in [
            f64::NAN,
            f64::INFINITY,
            -0.0,
            0.0,
            f64::NEG_INFINITY,
            1.0,
            -f64::NAN,
        ] {
            summary.observe(value, start);
        }
        let reported: Vec<(f64, f64)> = summary.quantiles(start).collect();
        assert_eq!(reported[0], (0.5, 0.0));
        assert!(reported[1].1.is_nan(), "{reported:?}");
    }

    #[test]
    fn an_empty_window_reports_nan() {
        let start = Instant::now();
        let mut summary = WindowedQuantiles::new(objectives(&[(0.5, 0.05)]), start);
        assert!(summary.quantiles(start).all(|(_, value)| value.is_nan()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Random data of any shape (repeats, negatives, a spread over decades): every
        /// quantile within its declared rank error of the exact one.
        #[test]
        fn quantiles_are_within_the_declared_error(
            values in prop::collection::vec(
                prop_oneof![-1e6..1e6f64, 0.0..1.0f64, (0..20u8).prop_map(f64::from)],
                1..6000,
            )
        ) {
            assert_within_objectives(
                &values,
                &[(0.01, 0.005), (0.5, 0.05), (0.9, 0.01), (0.99, 0.001)],
            );
        }
    }

    /// A deterministic generator for the large runs (xorshift64*).
    fn pseudo_random(count: usize) -> Vec<f64> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..count)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let bits = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
                bits as f64 / (1u64 << 53) as f64 * 1000.0
            })
            .collect()
    }

    #[test]
    fn a_million_observations_stay_within_the_objectives_in_bounded_memory() {
        let declared = [(0.5, 0.05), (0.9, 0.01), (0.99, 0.001)];
        let values = pseudo_random(1_000_000);
        assert_within_objectives(&values, &declared);
        let start = Instant::now();
        let mut summary = WindowedQuantiles::new(objectives(&declared), start);
        let mut most_retained = 0;
        for (index, value) in values.iter().enumerate() {
            summary.observe(*value, start);
            if index % 10_000 == 0 {
                most_retained = most_retained.max(summary.retained());
            }
        }
        let _ = summary.quantiles(start).count();
        most_retained = most_retained.max(summary.retained());
        // Five streams of at most a hundred tuples (about 45 measured), and the pending
        // buffer: what a scrape walks, however many observations came in.
        assert!(
            most_retained <= AGE_BUCKETS * 100 + PENDING_MAX,
            "{most_retained} retained"
        );
    }

    #[test]
    fn the_strictest_objective_keeps_memory_bounded() {
        // An exact objective is held to OBJECTIVE_ERROR_MIN.
        let declared = [(0.5, 0.0), (0.999, 0.0)];
        let start = Instant::now();
        let mut summary = WindowedQuantiles::new(objectives(&declared), start);
        for value in pseudo_random(200_000) {
            summary.observe(value, start);
        }
        let _ = summary.quantiles(start).count();
        // About 5,600 tuples a stream measured (the CKMS bound grows with log(error × n)).
        assert!(
            summary.retained() <= AGE_BUCKETS * 8_000,
            "{}",
            summary.retained()
        );
    }

    #[test]
    fn observations_leave_the_window_bucket_by_bucket() {
        let start = Instant::now();
        let mut summary = WindowedQuantiles::new(objectives(&[(0.5, 0.01)]), start);
        for _ in 0..1000 {
            summary.observe(1.0, start);
        }
        // Later observations join every stream; the old ones go as the streams are reset.
        let later = start + WINDOW / 2;
        for _ in 0..500 {
            summary.observe(9.0, later);
        }
        let median = |summary: &mut WindowedQuantiles, at| summary.quantiles(at).next().unwrap().1;
        // Within the window the old observations still count.
        assert_eq!(median(&mut summary, later), 1.0);
        // A full window after the old ones, only the later ones are left.
        assert_eq!(
            median(&mut summary, start + WINDOW + bucket_duration()),
            9.0
        );
        // A full window after everything, nothing is left.
        assert!(median(&mut summary, later + WINDOW * 2).is_nan());
    }

    #[test]
    fn objectives_out_of_range_are_refused() {
        assert!(Objective::new(1.5, 0.01).is_none());
        assert!(Objective::new(0.5, -0.01).is_none());
        assert!(Objective::new(0.5, f64::NAN).is_none());
        assert_eq!(Objective::new(0.5, 0.0).unwrap().error, OBJECTIVE_ERROR_MIN);
        assert_eq!(Objective::new(1.0, 1.4).unwrap().error, 1.4);
    }
}
