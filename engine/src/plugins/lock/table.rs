//! The lock table: exclusive and shared locks per resource, their expiry, and the FIFO queue
//! of the requests waiting for them. Sans-IO: the caller passes the current time, and the
//! table answers with the tickets of the waiters it granted; the caller wakes them and arms
//! one timer at [`LockTable::next_expiry`] (spec devops § lock).
//!
//! A queue is served strictly in order: the request at its head is granted as soon as it is
//! compatible with the holders (a writer: none; a reader: no writer), then the next one, and
//! so on. A new request queues behind waiting ones even when it could be granted at once, so
//! a writer is never starved by a stream of readers. A waiter that leaves (its wait is over)
//! is taken out of the queue and whoever it blocked is served at once: this is what keeps
//! rr's wedge (a writer timing out behind several readers) from happening here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How many locks (holders) all resources together may hold; a request past it is refused.
pub const HOLDS_MAX: usize = 1 << 20;

/// How many requests may wait at once, over all resources; a request past it is refused.
pub const WAITERS_MAX: usize = 1 << 16;

/// A waiting request's handle, unique for the table's life.
pub type Ticket = u64;

/// Exclusive (`lock.Lock`) or shared (`lock.LockRead`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One holder, no readers.
    Write,
    /// Any number of readers, no writer.
    Read,
}

/// What [`LockTable::acquire`] did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// The lock is held now.
    Granted,
    /// The request waits; its ticket comes back from a later call that grants it.
    Queued(Ticket),
    /// [`HOLDS_MAX`] or [`WAITERS_MAX`] is reached.
    Full,
}

/// A lock held: its expiry time and the key of its entry in the expiry index.
#[derive(Debug, Clone, Copy)]
struct Hold {
    expiry: Option<(Instant, u64)>,
}

/// A request in a resource's queue.
#[derive(Debug)]
struct Waiter {
    ticket: Ticket,
    id: String,
    kind: Kind,
    ttl: Option<Duration>,
}

/// One resource's holders and queue.
#[derive(Debug, Default)]
struct Resource {
    writer: Option<(String, Hold)>,
    readers: HashMap<String, Hold>,
    queue: VecDeque<Waiter>,
}

impl Resource {
    fn is_idle(&self) -> bool {
        self.writer.is_none() && self.readers.is_empty() && self.queue.is_empty()
    }

    fn admits(&self, kind: Kind) -> bool {
        match kind {
            Kind::Write => self.writer.is_none() && self.readers.is_empty(),
            Kind::Read => self.writer.is_none(),
        }
    }

    fn holds(&self, id: &str) -> bool {
        let writes = self.writer.as_ref().is_some_and(|(owner, _)| owner == id);
        writes || self.readers.contains_key(id)
    }

    fn hold_count(&self) -> usize {
        usize::from(self.writer.is_some()) + self.readers.len()
    }
}

/// Every resource with a holder or a waiter (an idle one is removed at once).
#[derive(Debug, Default)]
pub struct LockTable {
    resources: HashMap<String, Resource>,
    /// (expiry time, key) → (resource, id) of every hold with a ttl.
    expiries: BTreeMap<(Instant, u64), (String, String)>,
    holds: usize,
    waiters: usize,
    next_key: u64,
}

impl LockTable {
    /// Takes (`id`, `kind`) on `resource` at once when nothing holds or waits against it;
    /// else queues it. `ttl` None: held until released.
    pub fn acquire(
        &mut self,
        resource: &str,
        id: &str,
        kind: Kind,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Acquire {
        let queue_is_empty = self
            .resources
            .get(resource)
            .is_none_or(|entry| entry.queue.is_empty());
        let admitted = self
            .resources
            .get(resource)
            .is_none_or(|entry| entry.admits(kind));
        if queue_is_empty && admitted {
            if self.holds >= HOLDS_MAX {
                return Acquire::Full;
            }
            self.hold(resource, id.to_owned(), kind, ttl, now);
            return Acquire::Granted;
        }
        if self.waiters >= WAITERS_MAX {
            return Acquire::Full;
        }
        let ticket = self.new_key();
        self.waiters += 1;
        self.resources
            .entry(resource.to_owned())
            .or_default()
            .queue
            .push_back(Waiter {
                ticket,
                id: id.to_owned(),
                kind,
                ttl,
            });
        Acquire::Queued(ticket)
    }

    /// Takes `ticket` out of `resource`'s queue (its wait is over). False when it is not
    /// there: it was granted (or never queued). The waiters it blocked are granted into
    /// `granted`.
    pub fn cancel(
        &mut self,
        resource: &str,
        ticket: Ticket,
        now: Instant,
        granted: &mut Vec<Ticket>,
    ) -> bool {
        let Some(entry) = self.resources.get_mut(resource) else {
            return false;
        };
        let Some(at) = entry.queue.iter().position(|w| w.ticket == ticket) else {
            return false;
        };
        entry.queue.remove(at);
        self.waiters -= 1;
        self.serve_queue(resource, now, granted);
        true
    }

    /// Releases `id`'s lock (writer or reader) on `resource`; false when it holds none.
    pub fn release(
        &mut self,
        resource: &str,
        id: &str,
        now: Instant,
        granted: &mut Vec<Ticket>,
    ) -> bool {
        let released = self.unhold(resource, id);
        if released {
            self.serve_queue(resource, now, granted);
        }
        released
    }

    /// Drops every lock of `resource`; false for a resource nobody holds or waits for.
    pub fn force_release(
        &mut self,
        resource: &str,
        now: Instant,
        granted: &mut Vec<Ticket>,
    ) -> bool {
        let Some(entry) = self.resources.get_mut(resource) else {
            return false;
        };
        let mut ids: Vec<String> = entry.readers.keys().cloned().collect();
        ids.extend(entry.writer.as_ref().map(|(id, _)| id.clone()));
        for id in ids {
            self.unhold(resource, &id);
        }
        self.serve_queue(resource, now, granted);
        true
    }

    /// Whether `id` holds a lock on `resource`; `*` is anyone.
    #[must_use]
    pub fn exists(&self, resource: &str, id: &str) -> bool {
        self.resources.get(resource).is_some_and(|entry| {
            if id == "*" {
                entry.hold_count() > 0
            } else {
                entry.holds(id)
            }
        })
    }

    /// Restarts `id`'s lock's timer with `ttl` (None: no expiry); false when `id` holds no
    /// lock on `resource`.
    pub fn update_ttl(
        &mut self,
        resource: &str,
        id: &str,
        ttl: Option<Duration>,
        now: Instant,
    ) -> bool {
        let Some(entry) = self.resources.get_mut(resource) else {
            return false;
        };
        let hold = match &mut entry.writer {
            Some((owner, hold)) if owner == id => hold,
            _ => match entry.readers.get_mut(id) {
                Some(hold) => hold,
                None => return false,
            },
        };
        if let Some(old) = hold.expiry.take() {
            self.expiries.remove(&old);
        }
        let expiry = ttl.and_then(|ttl| now.checked_add(ttl)).map(|at| {
            self.next_key += 1;
            (at, self.next_key)
        });
        hold.expiry = expiry;
        if let Some(key) = expiry {
            self.expiries
                .insert(key, (resource.to_owned(), id.to_owned()));
        }
        true
    }

    /// Drops the locks whose time is up at `now` and grants whom they blocked.
    pub fn expire(&mut self, now: Instant, granted: &mut Vec<Ticket>) {
        while let Some(entry) = self.expiries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (resource, id) = entry.remove();
            tracing::debug!(target: "lock", %resource, %id, "r/lock: ttl expired");
            self.unhold(&resource, &id);
            self.serve_queue(&resource, now, granted);
        }
    }

    /// When the next lock's time is up.
    #[must_use]
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.keys().next().map(|(at, _)| *at)
    }

    /// How many resources have a holder or a waiter.
    #[cfg(test)]
    #[must_use]
    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// Panics unless the table is consistent: no writer beside readers, every queue's
    /// head blocked by a holder (nobody waits who could go: no wedge), no idle resource
    /// kept, the counters and the expiry index matching the holds.
    #[cfg(test)]
    pub fn check_invariants(&self) {
        let (mut holds, mut waiters, mut expiries) = (0, 0, 0);
        for (name, entry) in &self.resources {
            assert!(!entry.is_idle(), "{name}: idle resource kept");
            assert!(
                entry.writer.is_none() || entry.readers.is_empty(),
                "{name}: a writer beside readers"
            );
            if let Some(head) = entry.queue.front() {
                assert!(
                    !entry.admits(head.kind),
                    "{name}: {} waits for nothing",
                    head.id
                );
            }
            let all = entry.writer.iter().map(|(id, hold)| (id, hold));
            for (id, hold) in all.chain(&entry.readers) {
                if let Some(key) = hold.expiry {
                    assert_eq!(self.expiries.get(&key), Some(&(name.clone(), id.clone())));
                    expiries += 1;
                }
            }
            holds += entry.hold_count();
            waiters += entry.queue.len();
        }
        assert_eq!((holds, waiters), (self.holds, self.waiters));
        assert_eq!(expiries, self.expiries.len());
    }

    fn new_key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    fn hold(
        &mut self,
        resource: &str,
        id: String,
        kind: Kind,
        ttl: Option<Duration>,
        now: Instant,
    ) {
        let expiry = ttl.and_then(|ttl| now.checked_add(ttl)).map(|at| {
            let key = (at, self.new_key());
            self.expiries.insert(key, (resource.to_owned(), id.clone()));
            key
        });
        let hold = Hold { expiry };
        let entry = self.resources.entry(resource.to_owned()).or_default();
        debug_assert!(entry.admits(kind), "a hold granted against a holder");
        let replaced = match kind {
            Kind::Write => entry.writer.replace((id, hold)).map(|(_, old)| old),
            Kind::Read => entry.readers.insert(id, hold),
        };
        match replaced {
            // The same reader again: its newer hold replaces the older.
            Some(old) => {
                if let Some(key) = old.expiry {
                    self.expiries.remove(&key);
                }
            }
            None => self.holds += 1,
        }
    }

    /// Takes `id`'s hold off `resource` (its expiry entry too), removing the resource when
    /// it is left idle. False when `id` holds nothing there.
    fn unhold(&mut self, resource: &str, id: &str) -> bool {
        let Some(entry) = self.resources.get_mut(resource) else {
            return false;
        };
        let hold = match &entry.writer {
            Some((owner, _)) if owner == id => entry.writer.take().map(|(_, hold)| hold),
            _ => entry.readers.remove(id),
        };
        let Some(hold) = hold else {
            return false;
        };
        if let Some(key) = hold.expiry {
            self.expiries.remove(&key);
        }
        self.holds -= 1;
        if entry.is_idle() {
            self.resources.remove(resource);
        }
        true
    }

    /// Grants `resource`'s queue from its head for as long as the head is admitted.
    fn serve_queue(&mut self, resource: &str, now: Instant, granted: &mut Vec<Ticket>) {
        loop {
            let Some(entry) = self.resources.get_mut(resource) else {
                return;
            };
            let head_admitted = entry.queue.front().is_some_and(|w| entry.admits(w.kind));
            if !head_admitted || self.holds >= HOLDS_MAX {
                if entry.is_idle() {
                    self.resources.remove(resource);
                }
                return;
            }
            let Some(waiter) = entry.queue.pop_front() else {
                return;
            };
            self.waiters -= 1;
            self.hold(resource, waiter.id, waiter.kind, waiter.ttl, now);
            granted.push(waiter.ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Queues `id` on `r`, which must wait.
    fn queue(table: &mut LockTable, id: &str, kind: Kind, now: Instant) -> Ticket {
        match table.acquire("r", id, kind, None, now) {
            Acquire::Queued(ticket) => ticket,
            other => panic!("{id} not queued: {other:?}"),
        }
    }

    /// Takes `id`'s lock on `r`, which must be granted at once.
    fn grant(table: &mut LockTable, id: &str, kind: Kind, ttl: Option<Duration>, now: Instant) {
        let acquired = table.acquire("r", id, kind, ttl, now);
        assert_eq!(acquired, Acquire::Granted, "{id}");
    }

    /// Releases `id`'s lock on `r`, which must exist; whom that granted.
    fn release(table: &mut LockTable, id: &str, now: Instant) -> Vec<Ticket> {
        let mut granted = Vec::new();
        assert!(
            table.release("r", id, now, &mut granted),
            "{id} held nothing"
        );
        granted
    }

    #[test]
    fn waiters_are_woken_in_fifo_order() {
        let now = Instant::now();
        let mut table = LockTable::default();
        grant(&mut table, "a", Kind::Write, None, now);
        let b = queue(&mut table, "b", Kind::Write, now);
        let c = queue(&mut table, "c", Kind::Read, now);
        let d = queue(&mut table, "d", Kind::Read, now);
        let e = queue(&mut table, "e", Kind::Write, now);
        assert_eq!(release(&mut table, "a", now), [b]);
        // Both readers behind the writer go together; the writer behind them waits.
        assert_eq!(release(&mut table, "b", now), [c, d]);
        assert!(release(&mut table, "c", now).is_empty());
        assert_eq!(release(&mut table, "d", now), [e]);
        assert!(table.exists("r", "e"));
    }

    #[test]
    fn a_new_reader_queues_behind_a_waiting_writer() {
        let now = Instant::now();
        let mut table = LockTable::default();
        grant(&mut table, "r1", Kind::Read, None, now);
        let writer = queue(&mut table, "w", Kind::Write, now);
        let reader = queue(&mut table, "r2", Kind::Read, now);
        assert_eq!(release(&mut table, "r1", now), [writer]);
        assert_eq!(release(&mut table, "w", now), [reader]);
    }

    #[test]
    fn a_lock_expires_at_its_ttl_and_its_waiter_gets_it() {
        let now = Instant::now();
        let mut table = LockTable::default();
        assert_eq!(
            table.acquire("r", "a", Kind::Write, Some(SECOND), now),
            Acquire::Granted
        );
        let b = queue(&mut table, "b", Kind::Write, now);
        assert_eq!(table.next_expiry(), Some(now + SECOND));
        let mut granted = Vec::new();
        table.expire(now + SECOND / 2, &mut granted);
        assert!(granted.is_empty());
        assert!(table.exists("r", "a"));
        table.expire(now + SECOND, &mut granted);
        assert_eq!(granted, [b]);
        assert!(!table.exists("r", "a"));
        assert!(table.exists("r", "b"));
        assert_eq!(table.next_expiry(), None);
    }

    #[test]
    fn update_ttl_restarts_the_timer() {
        let now = Instant::now();
        let mut table = LockTable::default();
        table.acquire("r", "a", Kind::Write, Some(SECOND), now);
        let later = now + SECOND / 2;
        assert!(table.update_ttl("r", "a", Some(3 * SECOND), later));
        assert!(!table.update_ttl("r", "other", Some(SECOND), later));
        assert!(!table.update_ttl("unknown", "a", Some(SECOND), later));
        let mut granted = Vec::new();
        table.expire(now + 2 * SECOND, &mut granted);
        assert!(table.exists("r", "a"));
        assert_eq!(table.next_expiry(), Some(later + 3 * SECOND));
        table.expire(later + 3 * SECOND, &mut granted);
        assert!(!table.exists("r", "*"));
        assert_eq!(table.resource_count(), 0);
    }

    /// rr's wedge: a writer that times out behind two readers left the resource unusable.
    #[test]
    fn a_writer_timing_out_behind_readers_does_not_wedge_the_resource() {
        let now = Instant::now();
        let mut table = LockTable::default();
        table.acquire("r", "x1", Kind::Read, None, now);
        table.acquire("r", "x2", Kind::Read, None, now);
        let writer = queue(&mut table, "xw", Kind::Write, now);
        let reader = queue(&mut table, "x3", Kind::Read, now);
        let mut granted = Vec::new();
        // The writer's wait is over: the reader it blocked goes at once.
        assert!(table.cancel("r", writer, now, &mut granted));
        assert_eq!(granted, [reader]);
        granted.clear();
        for id in ["x1", "x2", "x3"] {
            assert!(table.release("r", id, now, &mut granted), "{id}");
        }
        assert_eq!(table.resource_count(), 0);
        assert_eq!(
            table.acquire("r", "w2", Kind::Write, None, now),
            Acquire::Granted
        );
    }

    #[test]
    fn cancel_after_grant_reports_the_grant() {
        let now = Instant::now();
        let mut table = LockTable::default();
        table.acquire("r", "a", Kind::Write, None, now);
        let b = queue(&mut table, "b", Kind::Write, now);
        let mut granted = Vec::new();
        table.release("r", "a", now, &mut granted);
        assert!(!table.cancel("r", b, now, &mut granted));
        assert!(table.exists("r", "b"));
    }

    #[test]
    fn release_and_force_release() {
        let now = Instant::now();
        let mut table = LockTable::default();
        let mut granted = Vec::new();
        assert!(!table.release("r", "a", now, &mut granted));
        assert!(!table.force_release("r", now, &mut granted));
        table.acquire("r", "a", Kind::Read, Some(SECOND), now);
        table.acquire("r", "b", Kind::Read, None, now);
        assert!(!table.release("r", "c", now, &mut granted));
        assert!(table.exists("r", "*") && table.exists("r", "a") && !table.exists("r", "c"));
        let writer = queue(&mut table, "w", Kind::Write, now);
        assert!(table.force_release("r", now, &mut granted));
        assert_eq!(granted, [writer]);
        assert!(!table.exists("r", "a") && !table.exists("r", "b"));
        assert_eq!(table.next_expiry(), None);
        granted.clear();
        assert!(table.force_release("r", now, &mut granted));
        assert_eq!(table.resource_count(), 0);
    }

    #[test]
    fn the_bounds_refuse_instead_of_growing() {
        let now = Instant::now();
        let mut table = LockTable {
            holds: HOLDS_MAX,
            ..LockTable::default()
        };
        assert_eq!(
            table.acquire("r", "a", Kind::Write, None, now),
            Acquire::Full
        );
        table.holds = 0;
        table.acquire("r", "a", Kind::Write, None, now);
        table.waiters = WAITERS_MAX;
        assert_eq!(
            table.acquire("r", "b", Kind::Write, None, now),
            Acquire::Full
        );
    }
}
