//! The priority queue every pipeline feeds and the pollers take from: the smallest priority
//! first, and among equal priorities the job queued first (rr's heap has no such order).

use super::pipeline::{Job, Pipeline};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;

struct Queued {
    priority: i64,
    seq: u64,
    job: Job,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.seq) == (other.priority, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.priority, self.seq).cmp(&(other.priority, other.seq))
    }
}

#[derive(Default)]
struct Heap {
    jobs: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    /// A pipeline found no room since the last take that reported it: it waits for a pump.
    room_wanted: bool,
}

/// The shared queue, bounded by `pipeline_size`.
pub struct SharedQueue {
    heap: Mutex<Heap>,
    capacity: usize,
    ready: Notify,
    /// Woken when a job leaves (taken or removed): a producer waiting for room retries.
    room: Notify,
}

impl std::fmt::Debug for SharedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedQueue")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl SharedQueue {
    /// A queue of at most `capacity` jobs.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            heap: Mutex::new(Heap::default()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            room: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Heap> {
        self.heap.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Jobs waiting.
    pub(super) fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// True when it holds nothing.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True while it has room; when not, the next take reports that room was wanted.
    #[must_use]
    pub fn has_room(&self) -> bool {
        let mut heap = self.lock();
        let room = heap.jobs.len() < self.capacity;
        heap.room_wanted |= !room;
        room
    }

    /// True, once, when a pipeline found the queue full since the last call: the caller of
    /// [`take`](Self::take) then pumps the pipelines, or one whose jobs wait for room would
    /// wait until something else pumps it (a push to it, an ack of one of its jobs).
    pub fn take_room_wanted(&self) -> bool {
        std::mem::take(&mut self.lock().room_wanted)
    }

    /// Queues `job` (the caller checked the room) and wakes a poller.
    pub fn insert(&self, job: Job) {
        let mut heap = self.lock();
        heap.seq += 1;
        let seq = heap.seq;
        heap.jobs.push(Reverse(Queued {
            priority: job.priority,
            seq,
            job,
        }));
        drop(heap);
        self.ready.notify_one();
    }

    /// Jobs it holds at most (`pipeline_size`).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Waits until the queue has room (returns at once when it has): a producer that
    /// waits here before it inserts keeps the queue within its capacity, give or take one
    /// job per producer woken together.
    pub async fn wait_room(&self) {
        loop {
            // Made before the check: a job taken in between wakes it.
            let room = self.room.notified();
            if self.has_room() {
                return;
            }
            room.await;
        }
    }

    /// The next job, waiting for one.
    pub async fn take(&self) -> Job {
        loop {
            let notified = self.ready.notified();
            let popped = self.lock().jobs.pop();
            if let Some(Reverse(queued)) = popped {
                self.room.notify_waiters();
                return queued.job;
            }
            notified.await;
        }
    }

    /// Removes the jobs of `pipeline` (a destroyed pipeline's), by identity: a pipeline
    /// declared again under the same name meanwhile keeps its jobs.
    pub fn remove_pipeline(&self, pipeline: &Pipeline) -> usize {
        self.remove_where(|job| std::ptr::eq(Arc::as_ptr(&job.pipeline), pipeline))
    }

    /// Removes the jobs `doomed` picks; how many.
    pub fn remove_where(&self, doomed: impl Fn(&Job) -> bool) -> usize {
        let mut heap = self.lock();
        let before = heap.jobs.len();
        heap.jobs.retain(|Reverse(queued)| !doomed(&queued.job));
        let removed = before - heap.jobs.len();
        drop(heap);
        if removed > 0 {
            self.room.notify_waiters();
        }
        removed
    }
}
