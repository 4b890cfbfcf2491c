//! A pipeline on the `memory` driver (spec tcp-jobs B.3): pushed jobs wait in its local queue
//! (delayed ones on a timer first) and move to the shared queue while it consumes and fewer
//! than `prefetch` of its jobs are out; an ack, nack or requeue hands a slot back.

use super::queue::SharedQueue;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Jobs a pipeline's local queue holds at most (rr's fixed capacity).
const LOCAL_CAPACITY: usize = 100_000;
/// Delayed jobs a pipeline holds at most.
const DELAYED_MAX: u64 = 1000;

/// A job.
#[derive(Debug, Clone)]
pub struct Job {
    /// The pusher's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its headers (sorted, for a stable context).
    pub headers: BTreeMap<String, Vec<String>>,
    /// Lower runs first.
    pub priority: i64,
    /// Seconds it waited (or waits) before running.
    pub delay: u64,
    /// Its pipeline.
    pub pipeline: Arc<Pipeline>,
}

/// What a pipeline counts.
#[derive(Debug, Default)]
struct State {
    local: VecDeque<Job>,
    active: u64,
    delayed: u64,
    consuming: bool,
    stopped: bool,
}

/// A pipeline's figures for `jobs.Stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStat {
    /// Jobs out (in the shared queue or running).
    pub active: u64,
    /// Jobs with a delay, not acknowledged.
    pub delayed: u64,
    /// Consuming.
    pub ready: bool,
}

/// A memory pipeline.
#[derive(Debug)]
pub struct Pipeline {
    /// Its name.
    pub name: String,
    /// Its priority (jobs pushed with 0 take it).
    pub priority: i64,
    /// Jobs out at most.
    pub prefetch: u64,
    state: Mutex<State>,
}

impl Pipeline {
    /// A pipeline, not consuming yet.
    #[must_use]
    pub fn new(name: &str, priority: i64, prefetch: u64) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            priority,
            prefetch: if prefetch == 0 { 100_000 } else { prefetch },
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Accepts a job: delayed ones go on a timer (on this shard), the others to the local
    /// queue; then what may move to the shared queue does.
    ///
    /// # Errors
    /// rr's texts: too many delayed jobs, a full local queue.
    pub fn push(self: &Arc<Self>, mut job: Job, queue: &Arc<SharedQueue>) -> Result<(), String> {
        if job.priority == 0 {
            job.priority = self.priority;
        }
        {
            let mut state = self.lock();
            if state.stopped {
                return Err(format!("pipeline {} is stopped", self.name));
            }
            if job.delay > 0 {
                if state.delayed >= DELAYED_MAX {
                    return Err("max concurrency number reached".into());
                }
                state.delayed += 1;
            } else if state.local.len() >= LOCAL_CAPACITY {
                return Err(format!(
                    "local pipeline is full, consider to increase prefetch number, current limit: {}, context error: context deadline exceeded",
                    self.prefetch
                ));
            }
        }
        if job.delay > 0 {
            let pipeline = Arc::clone(self);
            let queue = Arc::clone(queue);
            let delay = Duration::from_secs(job.delay);
            tokio::task::spawn_local(async move {
                tokio::time::sleep(delay).await;
                let mut state = pipeline.lock();
                // A pipeline stopped meanwhile drops it (rr wrote to a closed channel).
                if state.stopped {
                    return;
                }
                if state.local.len() >= LOCAL_CAPACITY {
                    tracing::warn!(target: "jobs", pipeline = %pipeline.name, id = %job.id, "can't push job");
                    return;
                }
                state.local.push_back(job);
                drop(state);
                pipeline.pump(&queue);
            });
            return Ok(());
        }
        self.lock().local.push_back(job);
        self.pump(queue);
        Ok(())
    }

    /// Moves jobs from the local queue to the shared one while consuming, under `prefetch`,
    /// and while the shared queue has room.
    pub fn pump(&self, queue: &SharedQueue) {
        let mut state = self.lock();
        while state.consuming && !state.stopped && state.active < self.prefetch && queue.has_room()
        {
            let Some(job) = state.local.pop_front() else {
                break;
            };
            state.active += 1;
            queue.insert(job);
        }
    }

    /// A job of this pipeline is done (ack, nack, requeue): its slot is free again.
    pub fn release(&self, job: &Job, queue: &SharedQueue) {
        {
            let mut state = self.lock();
            state.active = state.active.saturating_sub(1);
            if job.delay > 0 {
                state.delayed = state.delayed.saturating_sub(1);
            }
        }
        self.pump(queue);
    }

    /// Starts consuming.
    ///
    /// # Errors
    /// rr's text when it consumes already.
    pub fn run(&self, queue: &SharedQueue, already: &str) -> Result<(), String> {
        {
            let mut state = self.lock();
            if state.consuming {
                return Err(already.into());
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

    /// Stops it for good: its jobs leave the shared queue, the local ones are dropped.
    pub fn stop(&self, queue: &SharedQueue) {
        let mut state = self.lock();
        state.stopped = true;
        state.consuming = false;
        state.local.clear();
        drop(state);
        queue.remove_pipeline(&self.name);
    }

    /// Its figures.
    #[must_use]
    pub fn stat(&self) -> PipelineStat {
        let state = self.lock();
        PipelineStat {
            active: state.active,
            delayed: state.delayed,
            ready: state.consuming,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(pipeline: &Arc<Pipeline>, id: &str, priority: i64) -> Job {
        Job {
            id: id.into(),
            name: "J".into(),
            payload: Vec::new(),
            headers: BTreeMap::new(),
            priority,
            delay: 0,
            pipeline: Arc::clone(pipeline),
        }
    }

    #[test]
    fn prefetch_bounds_what_is_out_and_priorities_then_order_decide() {
        let queue = Arc::new(SharedQueue::new(100));
        let low = Pipeline::new("low", 20, 2);
        let high = Pipeline::new("high", 5, 10);
        for id in ["a", "b", "c"] {
            low.push(job(&low, id, 0), &queue).unwrap();
        }
        assert!(queue.is_empty(), "not consuming yet");
        low.run(&queue, "already").unwrap();
        high.run(&queue, "already").unwrap();
        assert_eq!(queue.len(), 2, "prefetch 2");
        high.push(job(&high, "h", 0), &queue).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let first = runtime.block_on(queue.take());
        assert_eq!((first.id.as_str(), first.priority), ("h", 5));
        let second = runtime.block_on(queue.take());
        assert_eq!(second.id, "a", "equal priorities: first in, first out");
        low.release(&second, &queue);
        assert_eq!(
            low.stat(),
            PipelineStat {
                active: 2,
                delayed: 0,
                ready: true
            }
        );
        assert_eq!(low.pause(), Ok(()));
        assert_eq!(
            low.pause(),
            Err("no active listeners, nothing to pause".into())
        );
        low.stop(&queue);
        assert!(
            queue.is_empty(),
            "a stopped pipeline's jobs leave the queue"
        );
    }
}
