//! The wait queue: requests that found no idle worker park here, and a released worker goes
//! straight to a waiter (no thundering herd). A mutex guards the queue, but only the slow path
//! (pool exhausted) takes it; the fast path is the idle stack's CAS.
//!
//! Which waiter: the oldest, unless it sits on another shard than the releasing one and has
//! waited less than [`LOCALITY_GRACE`]; then the oldest waiter of the releasing shard goes
//! first. Handing a worker across shards wakes another thread (an eventfd write and a context
//! switch, tens of µs on a small VM); keeping it local lets the shard chain requests without
//! sleeping. The grace bounds the unfairness: nobody is passed over once it has waited that
//! long.

use super::idle_stack::IdleStack;
use super::slot::SlotToken;
#[cfg(ringrunner_loom)]
use loom::sync::{
    atomic::{fence, AtomicBool, Ordering},
    Mutex, MutexGuard,
};
use std::collections::VecDeque;
#[cfg(not(ringrunner_loom))]
use std::sync::{
    atomic::{fence, AtomicBool, Ordering},
    Mutex, MutexGuard,
};
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

/// How long the oldest waiter may be passed over in favour of one on the releasing shard.
const LOCALITY_GRACE: std::time::Duration = std::time::Duration::from_micros(1500);

/// A parked request: its shard, when it parked, where the worker goes.
#[derive(Debug)]
struct Waiter {
    shard: Option<usize>,
    since: Instant,
    sender: oneshot::Sender<u32>,
}

/// What registering found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Registration {
    /// A worker was on the stack after all.
    Took(u32),
    /// The waiter is queued under this ticket; a releaser will send it a worker, or the
    /// waiter withdraws with the ticket ([`Handoff::withdraw`]).
    Queued(u64),
    /// The pool is closed.
    Closed,
}

/// The hand-over between requests that found the idle stack empty and releasers, free of
/// lost wake-ups: a worker pushed while a waiter registers is seen by one of them.
///
/// The waiter stores `maybe_waiting` then reads the stack; the releaser writes the stack
/// then reads `maybe_waiting`. That is the store-buffering shape: each side's read may miss
/// the other's write unless a SeqCst fence stands between its own write and read (the
/// stack's CAS is AcqRel, so SeqCst on the flag alone does not order them). Model-checked
/// with loom below. Generic over the queued item so that loom can run it without tokio.
#[derive(Debug)]
pub(super) struct Handoff<T> {
    queue: Mutex<WaitQueue<T>>,
    /// True while the queue may hold a waiter; read on every release.
    maybe_waiting: AtomicBool,
    closed: AtomicBool,
}

/// The parked waiters, oldest first, each under a ticket that grows with every
/// registration: the queue is sorted by ticket, so a waiter that gives up is found by
/// binary search.
#[derive(Debug)]
pub(super) struct WaitQueue<T> {
    entries: VecDeque<Queued<T>>,
    next_ticket: u64,
}

/// One parked waiter and the ticket it withdraws with.
#[derive(Debug)]
pub(super) struct Queued<T> {
    ticket: u64,
    pub(super) waiter: T,
}

impl<T> std::ops::Deref for WaitQueue<T> {
    type Target = VecDeque<Queued<T>>;

    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl<T> std::ops::DerefMut for WaitQueue<T> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.entries
    }
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(WaitQueue {
                entries: VecDeque::new(),
                next_ticket: 0,
            }),
            maybe_waiting: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }
}

impl<T> Handoff<T> {
    fn lock(&self) -> MutexGuard<'_, WaitQueue<T>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a worker from the stack, or queues `waiter`; under the lock, so a releaser that
    /// sees the flag finds the waiter queued. Worst case: O(1) under the lock (the queue
    /// holds only live waiters, at most the requests inside the pool).
    pub(super) fn register(&self, idle: &IdleStack, waiter: impl FnOnce() -> T) -> Registration {
        let mut queue = self.lock();
        if self.closed.load(Ordering::SeqCst) {
            return Registration::Closed;
        }
        self.maybe_waiting.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if let Some(index) = idle.pop() {
            if queue.is_empty() {
                self.maybe_waiting.store(false, Ordering::SeqCst);
            }
            return Registration::Took(index);
        }
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.push_back(Queued {
            ticket,
            waiter: waiter(),
        });
        Registration::Queued(ticket)
    }

    /// Ends the wait of ticket `ticket` without a worker: its waiter leaves the queue at once
    /// (so the queue holds only live waiters). When a releaser has already taken it off the
    /// queue, that releaser sent it a worker under the lock (or the pool closed): `delivered`
    /// then reads the waiter's mailbox, and the worker found there is returned, for the
    /// caller to use or to [`Self::release`]. Worst case: a binary search of the queue and one
    /// removal from it, O(queued waiters), under the lock.
    pub(super) fn withdraw(
        &self,
        ticket: u64,
        delivered: impl FnOnce() -> Option<u32>,
    ) -> Option<u32> {
        let mut queue = self.lock();
        match queue.binary_search_by_key(&ticket, |queued| queued.ticket) {
            Ok(position) => {
                queue.remove(position);
                self.update_flag(&queue);
                None
            }
            // Taken off by a releaser, whose send completed before it let go of the lock.
            Err(_) => {
                drop(queue);
                delivered()
            }
        }
    }

    /// Waiters in the queue (a snapshot).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.lock().len()
    }

    /// Gives a released worker to a waiter (`send` picks one and returns the worker when
    /// none takes it), or pushes it on the idle stack. Worst case: what `send` costs, once,
    /// plus one pass that hands what is idle to what is queued, under the lock.
    pub(super) fn release(
        &self,
        idle: &IdleStack,
        index: u32,
        send: impl Fn(&mut VecDeque<Queued<T>>, u32) -> Option<u32>,
    ) {
        if self.maybe_waiting.load(Ordering::SeqCst) {
            let mut queue = self.lock();
            let unsent = send(&mut queue, index);
            self.update_flag(&queue);
            let Some(index) = unsent else { return };
            drop(queue);
            idle.push(index);
        } else {
            idle.push(index);
        }
        fence(Ordering::SeqCst);
        if self.maybe_waiting.load(Ordering::SeqCst) {
            // A waiter registered while we pushed: give it whatever is idle now.
            let mut queue = self.lock();
            while !queue.is_empty() {
                let Some(index) = idle.pop() else { break };
                if let Some(unsent) = send(&mut queue, index) {
                    idle.push(unsent);
                }
            }
            self.update_flag(&queue);
        }
    }

    fn update_flag(&self, queue: &WaitQueue<T>) {
        if queue.is_empty() {
            self.maybe_waiting.store(false, Ordering::SeqCst);
        }
    }

    /// Fails every waiter (they are dropped) and every later registration.
    pub(super) fn close(&self) {
        let mut queue = self.lock();
        self.closed.store(true, Ordering::SeqCst);
        queue.clear();
    }
}

/// A wait parked in the queue. Dropped before it is `done` (its request was cancelled),
/// it withdraws: it leaves the queue, and a worker a releaser already sent it goes back to
/// the pool instead of being lost with the channel.
struct ParkedWait<'a> {
    waiters: &'a Waiters,
    /// Where a worker sent to this wait goes when the wait is dropped.
    unused: &'a dyn Fn(SlotToken),
    ticket: u64,
    receiver: oneshot::Receiver<u32>,
    done: bool,
}

impl ParkedWait<'_> {
    /// Leaves the queue; the worker sent meanwhile, if any.
    fn withdraw(&mut self) -> Option<u32> {
        let receiver = &mut self.receiver;
        self.waiters.handoff.withdraw(self.ticket, || {
            receiver.close();
            receiver.try_recv().ok()
        })
    }
}

impl Drop for ParkedWait<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(index) = self.withdraw() {
            (self.unused)(SlotToken::claim(index));
        }
    }
}

#[derive(Debug, Default)]
pub struct Waiters {
    handoff: Handoff<Waiter>,
}

impl Waiters {
    /// Waits on shard `here` for a worker until `deadline` (see [`Handoff`] for why none is
    /// lost). A wait that ends without a worker, by its deadline or because this future is
    /// dropped, leaves the queue at once; a worker handed to a dropped wait goes to `unused`
    /// (back to service). Worst case without a worker: one registration and one
    /// withdrawal, each O(queued waiters) under the queue's lock.
    pub async fn wait(
        &self,
        idle: &IdleStack,
        deadline: Instant,
        here: usize,
        unused: &dyn Fn(SlotToken),
    ) -> Result<SlotToken, WaitError> {
        let mut receiver = None;
        let registration = self.handoff.register(idle, || {
            let (sender, new_receiver) = oneshot::channel();
            receiver = Some(new_receiver);
            Waiter {
                shard: Some(here),
                since: Instant::now(),
                sender,
            }
        });
        let mut parked = match (registration, receiver) {
            (Registration::Took(index), _) => return Ok(SlotToken::claim(index)),
            (Registration::Closed, _) => return Err(WaitError::Closed),
            (Registration::Queued(ticket), Some(receiver)) => ParkedWait {
                waiters: self,
                unused,
                ticket,
                receiver,
                done: false,
            },
            (Registration::Queued(_), None) => unreachable!("queued without a waiter"),
        };
        let received = tokio::time::timeout_at(deadline, &mut parked.receiver).await;
        parked.done = true;
        match received {
            Ok(Ok(index)) => Ok(SlotToken::claim(index)),
            Ok(Err(_)) => Err(WaitError::Closed),
            // A worker may have been handed over just as the deadline passed: take it.
            Err(_) => parked
                .withdraw()
                .map(SlotToken::claim)
                .ok_or(WaitError::TimedOut),
        }
    }

    /// Waiters in the queue (a snapshot).
    #[cfg(all(test, not(ringrunner_loom)))]
    pub fn queued(&self) -> usize {
        self.handoff.queued()
    }

    /// Gives a worker released on shard `here` (when a shard releases it) to the next live
    /// waiter (see the module notes), or pushes it on the idle stack. Worst case: a scan of
    /// the queue for a waiter of shard `here`, O(queued waiters), under the lock; waiters
    /// that gave up have already left it.
    pub fn release(&self, idle: &IdleStack, token: SlotToken, here: Option<usize>) {
        self.handoff
            .release(idle, token.into_index(), |queue, index| {
                Self::send_to_next_from(queue, index, here, Instant::now())
            });
    }

    fn send_to_next_from(
        queue: &mut VecDeque<Queued<Waiter>>,
        mut index: u32,
        here: Option<usize>,
        now: Instant,
    ) -> Option<u32> {
        loop {
            let Some(oldest) = queue.front() else {
                return Some(index);
            };
            let position = if here.is_none()
                || oldest.waiter.shard == here
                || now.duration_since(oldest.waiter.since) >= LOCALITY_GRACE
            {
                0
            } else {
                queue
                    .iter()
                    .position(|queued| queued.waiter.shard == here)
                    .unwrap_or(0)
            };
            let Queued { waiter, .. } = queue
                .remove(position)
                .expect("the position is in the queue");
            match waiter.sender.send(index) {
                Ok(()) => return None,
                Err(returned) => index = returned, // that waiter gave up
            }
        }
    }

    /// Fails every waiter and every later wait with [`WaitError::Closed`].
    pub fn close(&self) {
        self.handoff.close();
    }
}

/// Model-checked with loom: `RUSTFLAGS="--cfg ringrunner_loom" cargo test -p ringrunner
/// --release --lib waiters`. Fails without either fence in [`Handoff`].
#[cfg(all(test, ringrunner_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A waiter's mailbox, in place of a tokio oneshot.
    type Mailbox = Arc<Mutex<Option<u32>>>;

    fn deliver(queue: &mut VecDeque<Queued<Mailbox>>, index: u32) -> Option<u32> {
        match queue.pop_front() {
            Some(queued) => {
                *queued.waiter.lock().unwrap() = Some(index);
                None
            }
            None => Some(index),
        }
    }

    /// Worker 0 is released on another thread while this one registers a waiter.
    fn register_while_releasing() -> (
        Arc<IdleStack>,
        Arc<Handoff<Mailbox>>,
        loom::thread::JoinHandle<()>,
        Mailbox,
        Registration,
    ) {
        let idle = Arc::new(IdleStack::new(1));
        let handoff = Arc::new(Handoff::<Mailbox>::default());
        let releaser = {
            let (idle, handoff) = (Arc::clone(&idle), Arc::clone(&handoff));
            loom::thread::spawn(move || handoff.release(&idle, 0, deliver))
        };
        let mailbox: Mailbox = Arc::new(Mutex::new(None));
        let registration = handoff.register(&idle, || Arc::clone(&mailbox));
        (idle, handoff, releaser, mailbox, registration)
    }

    #[test]
    fn a_worker_released_while_a_request_registers_is_never_lost() {
        loom::model(|| {
            let (idle, _handoff, releaser, mailbox, registration) = register_while_releasing();
            releaser.join().unwrap();
            let delivered = match registration {
                Registration::Took(index) => Some(index),
                _ => *mailbox.lock().unwrap(),
            };
            assert_eq!(delivered, Some(0), "{registration:?}");
            assert_eq!(idle.pop(), None);
        });
    }

    /// A waiter gives up (its deadline passed, or its request was dropped) at any point of
    /// a concurrent release: the worker ends on the stack, never lost in a mailbox nobody
    /// reads, and the queue is left empty.
    #[test]
    fn a_worker_handed_to_a_waiter_that_gives_up_goes_back_to_the_stack() {
        loom::model(|| {
            let (idle, handoff, releaser, mailbox, registration) = register_while_releasing();
            let held = match registration {
                Registration::Took(index) => Some(index),
                Registration::Queued(ticket) => {
                    handoff.withdraw(ticket, || mailbox.lock().unwrap().take())
                }
                Registration::Closed => unreachable!("never closed"),
            };
            if let Some(index) = held {
                handoff.release(&idle, index, deliver);
            }
            releaser.join().unwrap();
            assert_eq!(idle.pop(), Some(0), "{registration:?}");
            assert_eq!(*mailbox.lock().unwrap(), None);
            assert_eq!(handoff.queued(), 0);
        });
    }
}

#[cfg(all(test, not(ringrunner_loom)))]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    /// Every worker busy, many requests give up: none stays queued, and the next worker
    /// released goes on the stack (the queue counts only live waiters).
    #[tokio::test]
    async fn timed_out_waiters_leave_the_queue_at_once() {
        let waiters = Waiters::default();
        let idle = IdleStack::new(1);
        for _ in 0..100 {
            let deadline = Instant::now() + Duration::from_millis(1);
            assert_eq!(
                waiters.wait(&idle, deadline, 0, &|_| unreachable!()).await,
                Err(WaitError::TimedOut)
            );
            assert_eq!(waiters.queued(), 0);
        }
        waiters.release(&idle, SlotToken::claim(0), Some(1));
        assert_eq!(idle.pop(), Some(0));
    }

    /// Polls `wait` once: it finds the stack empty and parks.
    fn park<F: Future>(wait: &mut std::pin::Pin<Box<F>>) {
        let mut context = Context::from_waker(Waker::noop());
        assert!(matches!(wait.as_mut().poll(&mut context), Poll::Pending));
    }

    /// A request dropped while it waits (a client that hung up): before a worker was sent
    /// to it, it leaves the queue; after, the worker goes back to the stack.
    #[tokio::test]
    async fn a_dropped_wait_leaves_the_queue_and_gives_back_what_it_was_sent() {
        let waiters = Waiters::default();
        let idle = IdleStack::new(1);
        let deadline = Instant::now() + Duration::from_secs(60);
        let back_to_service = |token| waiters.release(&idle, token, Some(0));

        let mut before_release = Box::pin(waiters.wait(&idle, deadline, 0, &back_to_service));
        park(&mut before_release);
        assert_eq!(waiters.queued(), 1);
        drop(before_release);
        assert_eq!(waiters.queued(), 0);

        let mut after_release = Box::pin(waiters.wait(&idle, deadline, 0, &back_to_service));
        park(&mut after_release);
        waiters.release(&idle, SlotToken::claim(0), Some(0));
        assert_eq!(idle.len(), 0, "the worker was handed to the parked wait");
        drop(after_release);
        assert_eq!(idle.pop(), Some(0), "the dropped wait gave its worker back");
        assert_eq!(waiters.queued(), 0);
    }

    fn waiter(shard: usize, since: Instant) -> (Queued<Waiter>, oneshot::Receiver<u32>) {
        let (sender, receiver) = oneshot::channel();
        let waiter = Waiter {
            shard: Some(shard),
            since,
            sender,
        };
        (Queued { ticket: 0, waiter }, receiver)
    }

    #[test]
    fn a_local_waiter_goes_first_within_the_grace_then_the_oldest() {
        let start = Instant::now();
        let (old_remote, mut old_remote_rx) = waiter(0, start);
        let (young_local, mut young_local_rx) = waiter(1, start);
        let mut queue: VecDeque<Queued<Waiter>> = [old_remote, young_local].into();
        // Released on shard 1 right away: shard 1's waiter, though younger.
        assert_eq!(
            Waiters::send_to_next_from(&mut queue, 7, Some(1), start),
            None
        );
        assert_eq!(young_local_rx.try_recv(), Ok(7));
        assert!(old_remote_rx.try_recv().is_err());
        // A second local waiter arrives; the remote one has now waited past the grace.
        let (local, mut local_rx) = waiter(1, start);
        queue.push_back(local);
        let later = start + LOCALITY_GRACE;
        assert_eq!(
            Waiters::send_to_next_from(&mut queue, 8, Some(1), later),
            None
        );
        assert_eq!(old_remote_rx.try_recv(), Ok(8));
        assert!(local_rx.try_recv().is_err());
    }

    #[test]
    fn gone_waiters_are_skipped_and_an_empty_queue_returns_the_worker() {
        let start = Instant::now();
        let (gone, gone_rx) = waiter(1, start);
        drop(gone_rx);
        let (remote, mut remote_rx) = waiter(0, start);
        let mut queue: VecDeque<Queued<Waiter>> = [gone, remote].into();
        assert_eq!(
            Waiters::send_to_next_from(&mut queue, 3, Some(1), start),
            None
        );
        assert_eq!(remote_rx.try_recv(), Ok(3));
        assert_eq!(
            Waiters::send_to_next_from(&mut queue, 4, Some(1), start),
            Some(4)
        );
    }
}
