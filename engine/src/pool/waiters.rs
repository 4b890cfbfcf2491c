//! The wait queue: requests that found no idle worker park here, and a released worker goes
//! straight to the oldest waiter (fair, no thundering herd). A mutex guards the queue, but
//! only the slow path (pool exhausted) takes it; the fast path is the idle stack's CAS.

use super::idle_stack::IdleStack;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Why a wait ended without a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    /// The deadline passed.
    TimedOut,
    /// The pool is shutting down.
    Closed,
}

#[derive(Debug, Default)]
pub struct Waiters {
    queue: Mutex<VecDeque<oneshot::Sender<u32>>>,
    /// True while the queue may hold a waiter; read on every release.
    maybe_waiting: AtomicBool,
    closed: AtomicBool,
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<oneshot::Sender<u32>>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a worker until `deadline`. Registering and re-checking the stack happen under
    /// the lock, and releasers check `maybe_waiting` after their push (both SeqCst), so a
    /// worker pushed while a waiter registers is seen by one of them.
    pub async fn wait(&self, idle: &IdleStack, deadline: Instant) -> Result<u32, WaitError> {
        let mut receiver = {
            let mut queue = self.lock();
            if self.closed.load(Ordering::SeqCst) {
                return Err(WaitError::Closed);
            }
            self.maybe_waiting.store(true, Ordering::SeqCst);
            if let Some(index) = idle.pop() {
                if queue.is_empty() {
                    self.maybe_waiting.store(false, Ordering::SeqCst);
                }
                return Ok(index);
            }
            let (sender, receiver) = oneshot::channel();
            queue.push_back(sender);
            receiver
        };
        match tokio::time::timeout_at(deadline, &mut receiver).await {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(_)) => Err(WaitError::Closed),
            Err(_) => {
                // A worker may have been handed over just as the deadline passed: take it.
                receiver.close();
                receiver.try_recv().map_err(|_| WaitError::TimedOut)
            }
        }
    }

    /// Gives a released worker to the oldest live waiter, or pushes it on the idle stack.
    pub fn release(&self, idle: &IdleStack, index: u32) {
        if self.maybe_waiting.load(Ordering::SeqCst) && self.hand_over(index).is_none() {
            return;
        }
        idle.push(index);
        if self.maybe_waiting.load(Ordering::SeqCst) {
            // A waiter registered while we pushed: give it whatever is idle now.
            let mut queue = self.lock();
            while !queue.is_empty() {
                let Some(index) = idle.pop() else { break };
                if let Some(unsent) = Self::send_to_oldest(&mut queue, index) {
                    idle.push(unsent);
                }
            }
            self.update_flag(&queue);
        }
    }

    /// Sends `index` to the oldest live waiter; returns it when there is none.
    fn hand_over(&self, index: u32) -> Option<u32> {
        let mut queue = self.lock();
        let unsent = Self::send_to_oldest(&mut queue, index);
        self.update_flag(&queue);
        unsent
    }

    fn send_to_oldest(queue: &mut VecDeque<oneshot::Sender<u32>>, mut index: u32) -> Option<u32> {
        while let Some(waiter) = queue.pop_front() {
            match waiter.send(index) {
                Ok(()) => return None,
                Err(returned) => index = returned, // that waiter gave up
            }
        }
        Some(index)
    }

    fn update_flag(&self, queue: &VecDeque<oneshot::Sender<u32>>) {
        if queue.is_empty() {
            self.maybe_waiting.store(false, Ordering::SeqCst);
        }
    }

    /// Fails every waiter and every later wait with [`WaitError::Closed`].
    pub fn close(&self) {
        let mut queue = self.lock();
        self.closed.store(true, Ordering::SeqCst);
        queue.clear();
    }
}
