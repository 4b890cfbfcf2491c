//! The lock-free idle-worker stack of DESIGN.md: a Treiber stack of slot indices over a fixed
//! array of `next` links, whose head packs `(index, tag)` into one `AtomicU64`. A push or a
//! pop is one successful CAS; the tag changes on every successful CAS, so a head that was
//! popped and pushed back between a reader's load and its CAS (ABA) fails that CAS.
//!
//! LIFO on purpose: the hottest worker is reused, cold ones age out under `idle_ttl`.
//! No `unsafe`: a link read from a slot another thread has just taken may be stale, but then
//! the head's tag has changed and the CAS that would have used it fails.

#[cfg(ringrunner_loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(ringrunner_loom))]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The index that means "no slot".
const NIL: u32 = u32::MAX;

/// A bounded LIFO set of slot indices `0..capacity`, each present at most once.
#[derive(Debug)]
pub struct IdleStack {
    /// `(tag << 32) | index`; index `NIL` when empty.
    head: AtomicU64,
    /// `next[i]`: the slot below slot `i` while `i` is on the stack.
    next: Box<[AtomicU32]>,
    /// Number of indices on the stack; advisory (exact only when quiescent).
    len: AtomicU32,
}

fn pack(index: u32, tag: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(index)
}

fn unpack(head: u64) -> (u32, u32) {
    // Truncation keeps the low half: the index.
    (head as u32, (head >> 32) as u32)
}

impl IdleStack {
    /// An empty stack for slots `0..capacity`.
    ///
    /// # Panics
    /// When `capacity` reaches `u32::MAX`, the "no slot" marker.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        assert!(
            capacity < NIL as usize,
            "idle stack capacity {capacity} is too large"
        );
        Self {
            head: AtomicU64::new(pack(NIL, 0)),
            next: (0..capacity).map(|_| AtomicU32::new(NIL)).collect(),
            len: AtomicU32::new(0),
        }
    }

    /// Number of slots the stack can hold.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.next.len()
    }

    /// Number of idle slots (a snapshot).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }

    /// True when no slot is idle (a snapshot).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts slot `index` on top. The caller owns the slot and it is not on the stack.
    pub fn push(&self, index: u32) {
        assert!(
            (index as usize) < self.next.len(),
            "slot {index} out of range"
        );
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let (top, tag) = unpack(head);
            debug_assert_ne!(top, index, "slot {index} pushed twice");
            self.next[index as usize].store(top, Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(index, tag.wrapping_add(1)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(current) => head = current,
            }
        }
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the slot on top; the caller then owns it.
    pub fn pop(&self) -> Option<u32> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let (top, tag) = unpack(head);
            if top == NIL {
                return None;
            }
            let below = self.next[top as usize].load(Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                pack(below, tag.wrapping_add(1)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.len.fetch_sub(1, Ordering::Relaxed);
                    return Some(top);
                }
                Err(current) => head = current,
            }
        }
    }
}

#[cfg(all(test, not(ringrunner_loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn lifo_order() {
        let stack = IdleStack::new(4);
        assert_eq!(stack.pop(), None);
        for index in 0..4 {
            stack.push(index);
        }
        assert_eq!(stack.len(), 4);
        assert_eq!([stack.pop(), stack.pop()], [Some(3), Some(2)]);
        stack.push(3);
        assert_eq!(
            [stack.pop(), stack.pop(), stack.pop(), stack.pop()],
            [Some(3), Some(1), Some(0), None]
        );
        assert!(stack.is_empty());
    }

    /// Threads hammer pop/push; every slot is owned by at most one thread at a time and all
    /// slots are back at the end.
    #[test]
    fn concurrent_pop_push_keeps_every_slot_exactly_once() {
        const SLOTS: u32 = 8;
        let stack = Arc::new(IdleStack::new(SLOTS as usize));
        let owners: Arc<Vec<AtomicU32>> = Arc::new((0..SLOTS).map(|_| AtomicU32::new(0)).collect());
        for index in 0..SLOTS {
            stack.push(index);
        }
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let (stack, owners) = (Arc::clone(&stack), Arc::clone(&owners));
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if let Some(index) = stack.pop() {
                            let previous =
                                owners[index as usize].swap(thread + 1, Ordering::SeqCst);
                            assert_eq!(previous, 0, "slot {index} owned twice");
                            owners[index as usize].store(0, Ordering::SeqCst);
                            stack.push(index);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let mut seen = HashSet::new();
        while let Some(index) = stack.pop() {
            assert!(seen.insert(index), "slot {index} twice on the stack");
        }
        assert_eq!(seen.len(), SLOTS as usize);
    }
}

/// Model-checked with loom: `RUSTFLAGS="--cfg ringrunner_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p ringrunner --release --lib idle_stack`.
#[cfg(all(test, ringrunner_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    #[test]
    fn two_takers_and_a_returner_never_share_a_slot() {
        loom::model(|| {
            let stack = Arc::new(IdleStack::new(3));
            for index in 0..3 {
                stack.push(index);
            }
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let stack = Arc::clone(&stack);
                    loom::thread::spawn(move || {
                        let first = stack.pop();
                        let second = stack.pop();
                        if let Some(index) = first {
                            stack.push(index);
                        }
                        second
                    })
                })
                .collect();
            let held: Vec<u32> = handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect();
            let mut all = held.clone();
            while let Some(index) = stack.pop() {
                all.push(index);
            }
            all.sort_unstable();
            assert_eq!(all, [0, 1, 2], "held {held:?}");
        });
    }

    #[test]
    fn aba_is_defeated_by_the_tag() {
        loom::model(|| {
            let stack = Arc::new(IdleStack::new(2));
            stack.push(0);
            stack.push(1);
            let other = {
                let stack = Arc::clone(&stack);
                // Pops 1 and 0, pushes 1 back: the head is index 1 again, with another tag.
                loom::thread::spawn(move || {
                    let a = stack.pop();
                    let b = stack.pop();
                    if let Some(index) = a {
                        stack.push(index);
                    }
                    b
                })
            };
            let mine = stack.pop();
            let theirs = other.join().unwrap();
            let mut all: Vec<u32> = mine.into_iter().chain(theirs).collect();
            while let Some(index) = stack.pop() {
                all.push(index);
            }
            all.sort_unstable();
            assert_eq!(all, [0, 1]);
        });
    }
}
