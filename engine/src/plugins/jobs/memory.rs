//! The `memory` driver (spec tcp-jobs B.3): pushed jobs wait in the pipeline's local queue
//! (delayed ones on a timer first) and move to the shared queue while it consumes and fewer
//! than `prefetch` of its jobs are out; an ack, nack or requeue hands a slot back.
//!
//! A requeue (a nack with requeue, a worker's requeue) is never refused for room: the job is
//! one this pipeline already holds (one of at most `prefetch` out), so it goes back past
//! [`LOCAL_CAPACITY`] and [`DELAYED_MAX`] (rr waits without limit for room instead); a
//! pipeline holds at most `LOCAL_CAPACITY + DELAYED_MAX + prefetch` jobs. Only a stopped
//! pipeline refuses it, and drops it with the rest of its jobs.

use super::pipeline::{Job, Pipeline, PipelineStat, Verdict};
use super::queue::SharedQueue;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Jobs a pipeline's local queue holds at most (rr's fixed capacity).
const LOCAL_CAPACITY: usize = 100_000;
/// Delayed jobs a pipeline holds at most.
const DELAYED_MAX: u64 = 1000;

/// How a job comes to the pipeline: the caps apply to the first only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// A client pushed it.
    Pushed,
    /// A worker sent it back (requeue, nack with requeue).
    Requeued,
}

/// What a memory pipeline counts.
#[derive(Debug, Default)]
struct State {
    local: VecDeque<Job>,
    active: u64,
    delayed: u64,
    consuming: bool,
    stopped: bool,
}

/// A memory pipeline's state.
#[derive(Debug)]
pub struct Memory {
    /// Jobs out at most.
    prefetch: u64,
    state: Mutex<State>,
}

impl Memory {
    /// Not consuming yet; `prefetch` 0 is rr's 100 000.
    #[must_use]
    pub fn new(prefetch: u64) -> Self {
        Self {
            prefetch: if prefetch == 0 { 100_000 } else { prefetch },
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Accepts a job of `pipeline`: delayed ones go on a timer (on this shard), the others to
    /// the local queue; then what may move to the shared queue does.
    ///
    /// # Errors
    /// rr's texts: too many delayed jobs, a full local queue.
    pub fn push(
        &self,
        pipeline: &Arc<Pipeline>,
        job: Job,
        queue: &Arc<SharedQueue>,
    ) -> Result<(), String> {
        self.accept(pipeline, job, Arrival::Pushed, queue)
    }

    fn accept(
        &self,
        pipeline: &Arc<Pipeline>,
        job: Job,
        arrival: Arrival,
        queue: &Arc<SharedQueue>,
    ) -> Result<(), String> {
        {
            let mut state = self.lock();
            if state.stopped {
                return Err(format!("pipeline {} is stopped", pipeline.name));
            }
            let capped = arrival == Arrival::Pushed;
            if job.delay > 0 {
                if capped && state.delayed >= DELAYED_MAX {
                    return Err("max concurrency number reached".into());
                }
                state.delayed += 1;
            } else if capped && state.local.len() >= LOCAL_CAPACITY {
                return Err(format!(
                    "local pipeline is full, consider to increase prefetch number, current limit: {}, context error: context deadline exceeded",
                    self.prefetch
                ));
            }
        }
        if job.delay > 0 {
            let pipeline = Arc::clone(pipeline);
            let queue = Arc::clone(queue);
            let delay = Duration::from_secs(job.delay);
            tokio::task::spawn_local(async move {
                tokio::time::sleep(delay).await;
                if let super::pipeline::Driver::Memory(memory) = &pipeline.driver {
                    memory.land_delayed(&pipeline.name, job, arrival, &queue);
                }
            });
            return Ok(());
        }
        self.lock().local.push_back(job);
        self.pump(queue);
        Ok(())
    }

    /// A delayed job's timer fired: into the local queue, or dropped when a pushed one finds
    /// it full (rr's behaviour, spec tcp-jobs B.3), which also ends its place among the
    /// delayed: else a thousand drops would refuse every later delayed push.
    fn land_delayed(&self, pipeline: &str, job: Job, arrival: Arrival, queue: &SharedQueue) {
        let mut state = self.lock();
        // A pipeline stopped meanwhile drops it (rr wrote to a closed channel).
        if state.stopped {
            return;
        }
        if arrival == Arrival::Pushed && state.local.len() >= LOCAL_CAPACITY {
            state.delayed = state.delayed.saturating_sub(1);
            tracing::warn!(target: "jobs", %pipeline, id = %job.id, "can't push job");
            return;
        }
        state.local.push_back(job);
        drop(state);
        self.pump(queue);
    }

    /// Moves jobs from the local queue to the shared one while consuming, under `prefetch`,
    /// and while the shared queue has room.
    pub fn pump(&self, queue: &SharedQueue) {
        let mut state = self.lock();
        while state.consuming
            && !state.stopped
            && state.active < self.prefetch
            && !state.local.is_empty()
            && queue.has_room()
        {
            let Some(job) = state.local.pop_front() else {
                break;
            };
            state.active += 1;
            queue.insert(job);
        }
    }

    /// A job of this pipeline is done (ack, nack, requeue): its slot is free again.
    ///
    /// # Errors
    /// rr's text when the pipeline was stopped meanwhile.
    pub fn release(&self, job: &Job, queue: &SharedQueue) -> Result<(), String> {
        {
            let mut state = self.lock();
            if state.stopped {
                return Err(
                    "failed to acknowledge the JOB, the pipeline is probably stopped".into(),
                );
            }
            state.active = state.active.saturating_sub(1);
            if job.delay > 0 {
                state.delayed = state.delayed.saturating_sub(1);
            }
        }
        self.pump(queue);
        Ok(())
    }

    /// Carries out a verdict: the slot is freed; a nack drops the job (no dead-letter queue
    /// in memory); a requeue takes it back, whatever the room (see the module's comment).
    ///
    /// # Errors
    /// The pipeline stopped.
    pub fn settle(
        &self,
        pipeline: &Arc<Pipeline>,
        mut job: Job,
        verdict: Verdict,
        queue: &Arc<SharedQueue>,
    ) -> Result<(), String> {
        self.release(&job, queue)?;
        match verdict {
            Verdict::Ack | Verdict::Nack | Verdict::NackWith { requeue: false, .. } => Ok(()),
            Verdict::NackWith {
                requeue: true,
                delay,
            } => {
                job.delay = delay;
                self.accept(pipeline, job, Arrival::Requeued, queue)
            }
            Verdict::Requeue { headers, delay } => {
                job.headers.extend(headers);
                job.delay = delay;
                self.accept(pipeline, job, Arrival::Requeued, queue)
            }
        }
    }

    /// Starts consuming.
    ///
    /// # Errors
    /// rr's text when it consumes already.
    pub fn run(&self, queue: &SharedQueue) -> Result<(), String> {
        {
            let mut state = self.lock();
            if state.consuming {
                return Err("memory listener is already in the active state".into());
            }
            state.consuming = true;
        }
        self.pump(queue);
        Ok(())
    }

    /// Stops consuming (jobs already in the shared queue still run).
    ///
    /// # Errors
    /// rr's text when it does not consume.
    pub fn pause(&self) -> Result<(), String> {
        let mut state = self.lock();
        if !state.consuming {
            return Err("no active listeners, nothing to pause".into());
        }
        state.consuming = false;
        Ok(())
    }

    /// Stops it for good: the local jobs are dropped.
    pub fn stop(&self) {
        let mut state = self.lock();
        state.stopped = true;
        state.consuming = false;
        state.local.clear();
    }

    /// `count` of its jobs left the shared queue without running (a stop took them out):
    /// they are no longer out.
    pub fn give_back(&self, count: u64) {
        let mut state = self.lock();
        state.active = state.active.saturating_sub(count);
    }

    /// Its figures; the queue is the pipeline's name, as rr reports it.
    #[must_use]
    pub fn stat(&self, name: &str) -> PipelineStat {
        let state = self.lock();
        PipelineStat {
            queue: name.to_owned(),
            active: state.active,
            delayed: state.delayed,
            ready: state.consuming,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::pipeline::Receipt;
    use super::*;
    use std::collections::BTreeMap;

    fn job(pipeline: &Arc<Pipeline>, id: &str, priority: i64) -> Job {
        Job {
            id: id.into(),
            name: "J".into(),
            payload: Vec::new(),
            headers: BTreeMap::new(),
            priority,
            delay: 0,
            auto_ack: false,
            pipeline: Arc::clone(pipeline),
            receipt: Receipt::None,
        }
    }

    fn memory(pipeline: &Pipeline) -> &Memory {
        match &pipeline.driver {
            super::super::pipeline::Driver::Memory(memory) => memory,
            super::super::pipeline::Driver::Amqp(_) => unreachable!("a memory pipeline"),
        }
    }

    #[test]
    fn prefetch_bounds_what_is_out_and_priorities_then_order_decide() {
        let queue = Arc::new(SharedQueue::new(100));
        let low = Pipeline::memory("low", 20, 2);
        let high = Pipeline::memory("high", 5, 10);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for id in ["a", "b", "c"] {
            runtime
                .block_on(low.push(vec![job(&low, id, 0)], &queue))
                .unwrap();
        }
        assert!(queue.is_empty(), "not consuming yet");
        memory(&low).run(&queue).unwrap();
        memory(&high).run(&queue).unwrap();
        assert_eq!(queue.len(), 2, "prefetch 2");
        runtime
            .block_on(high.push(vec![job(&high, "h", 0)], &queue))
            .unwrap();
        let first = runtime.block_on(queue.take());
        assert_eq!((first.id.as_str(), first.priority), ("h", 5));
        let second = runtime.block_on(queue.take());
        assert_eq!(second.id, "a", "equal priorities: first in, first out");
        runtime
            .block_on(low.settle(second, Verdict::Ack, &queue))
            .unwrap();
        assert_eq!(
            memory(&low).stat("low"),
            PipelineStat {
                queue: "low".into(),
                active: 2,
                delayed: 0,
                ready: true
            }
        );
        assert_eq!(memory(&low).pause(), Ok(()));
        assert_eq!(
            memory(&low).pause(),
            Err("no active listeners, nothing to pause".into())
        );
        runtime.block_on(low.stop(&queue));
        assert!(
            queue.is_empty(),
            "a stopped pipeline's jobs leave the queue"
        );
    }

    #[test]
    fn delayed_jobs_dropped_for_a_full_local_queue_leave_the_delayed_count() {
        let queue = Arc::new(SharedQueue::new(10));
        let pipeline = Pipeline::memory("p", 10, 1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let timers = tokio::task::LocalSet::new();
        for index in 0..LOCAL_CAPACITY {
            memory(&pipeline)
                .push(&pipeline, job(&pipeline, &index.to_string(), 0), &queue)
                .unwrap();
        }
        // Each round: a delayed push is accepted, its timer fires into the full local queue
        // and drops it. Past DELAYED_MAX rounds the pushes must still be accepted.
        for round in 0..=DELAYED_MAX {
            let mut delayed = job(&pipeline, &format!("d{round}"), 0);
            delayed.delay = 3600;
            timers
                .block_on(&runtime, async {
                    memory(&pipeline).push(&pipeline, delayed, &queue)
                })
                .unwrap_or_else(|error| panic!("round {round}: {error}"));
            let mut fired = job(&pipeline, &format!("d{round}"), 0);
            fired.delay = 3600;
            memory(&pipeline).land_delayed("p", fired, Arrival::Pushed, &queue);
            assert_eq!(memory(&pipeline).stat("p").delayed, 0, "round {round}");
        }
    }
}
