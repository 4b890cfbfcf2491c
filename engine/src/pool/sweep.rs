//! Sweeps: idle workers taken off the stack for their lifecycle tasks (the supervisor's
//! retirements, reset, remove_worker, the dynamic allocator's scale-down, a worker's exit,
//! destroy). Sweeps run one at a time: a sweep flags an idle slot it does not hold (Ready →
//! a retiring state) and then looks for it on the stack, so two at once could flag a slot
//! that the other holds in its hands, and that one would push a retired worker back.

use super::idle_stack::IdleStack;
use super::slot::{SlotToken, WorkerSlot};
use super::WorkerState;
use std::sync::Mutex;

/// What a sweep does with a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sweep {
    /// Leave it.
    Keep,
    /// If it is idle (Ready), move it to this state and hand it to its lifecycle task.
    Retire(WorkerState),
    /// Its state is already set (not Ready): find it on the stack and hand it over.
    Fetch,
}

/// Takes idle workers off `idle` for their lifecycle tasks: `pick` is asked about every
/// slot and says which to take ([`Sweep`]); the taken ones go to `hand_back`, the ready
/// ones popped on the way to `release`. The picks are made by looking at the slots, not by
/// emptying the stack: when nothing is picked (the usual supervisor tick) the stack is not
/// touched, and otherwise it is popped only until every pick is found, the others pushed
/// back at once, so other shards find idle workers meanwhile. Worst case: a look at every
/// slot and the whole stack popped and pushed back, O(slots), under `sweeping` (held by one
/// sweep at a time; never on the request path).
pub(super) fn sweep(
    slots: &[WorkerSlot],
    idle: &IdleStack,
    sweeping: &Mutex<()>,
    mut pick: impl FnMut(u32, &WorkerSlot) -> Sweep,
    mut release: impl FnMut(SlotToken),
    mut hand_back: impl FnMut(SlotToken),
) {
    let _one_sweep_at_a_time = sweeping
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut picked = vec![false; slots.len()];
    let mut left = 0usize;
    for (index, slot) in slots.iter().enumerate() {
        let take = match pick(index as u32, slot) {
            Sweep::Keep => false,
            // A taker that pops it meanwhile fails its Ready → Working and hands it on.
            Sweep::Retire(state) => slot.transition(WorkerState::Ready, state),
            Sweep::Fetch => true,
        };
        if take {
            picked[index] = true;
            left += 1;
        }
    }
    let kept = take_picked_off(
        idle,
        &mut picked,
        left,
        |token| slots[token.index() as usize].state() == WorkerState::Ready,
        &mut hand_back,
    );
    // Push back in reverse so the stack keeps its LIFO order. A slot whose process exited
    // meanwhile (its lifecycle task marks it without holding it) goes to that task instead.
    for token in kept.into_iter().rev() {
        if slots[token.index() as usize].state() == WorkerState::Ready {
            release(token);
        } else {
            hand_back(token);
        }
    }
}

/// Pops `stack` until the `left` picked slots are found (or it is empty): each popped slot
/// that is not ready goes to `hand_over`, the ready ones are returned (top first) for the
/// caller to push back. Worst case: the whole stack, O(slots).
fn take_picked_off(
    stack: &IdleStack,
    picked: &mut [bool],
    mut left: usize,
    is_ready: impl Fn(&SlotToken) -> bool,
    mut hand_over: impl FnMut(SlotToken),
) -> Vec<SlotToken> {
    let mut kept = Vec::new();
    while left > 0 {
        let Some(token) = stack.pop().map(SlotToken::claim) else {
            break;
        };
        if is_ready(&token) {
            kept.push(token);
            continue;
        }
        if std::mem::take(&mut picked[token.index() as usize]) {
            left -= 1;
        }
        hand_over(token);
    }
    kept
}

#[cfg(all(test, not(ringrunner_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_sweep_pops_only_down_to_its_last_pick() {
        let stack = IdleStack::new(8);
        for index in 0..8 {
            stack.push(index);
        }
        let looked_at = std::cell::RefCell::new(Vec::new());
        let mut handed = Vec::new();
        let mut picked = vec![false; 8];
        picked[5] = true;
        // Slot 5 was moved out of Ready by the sweep; 7 and 6 are above it, 0-4 below.
        let kept = take_picked_off(
            &stack,
            &mut picked,
            1,
            |token| {
                looked_at.borrow_mut().push(token.index());
                token.index() != 5
            },
            |token| handed.push(token.into_index()),
        );
        assert_eq!(kept, [SlotToken::claim(7), SlotToken::claim(6)]);
        assert_eq!(handed, [5]);
        assert_eq!(*looked_at.borrow(), [7, 6, 5]);
        assert_eq!(stack.len(), 5, "slots below the pick stay on the stack");
        // Nothing picked: the stack is not touched at all.
        let untouched = take_picked_off(&stack, &mut [false; 8], 0, |_| unreachable!(), |_| {});
        assert!(untouched.is_empty());
        assert_eq!(stack.len(), 5);
    }

    /// Two sweeps at once, each retiring a different idle slot every round, while the
    /// retired slots come back into service (what their lifecycle tasks do): a slot that
    /// one sweep holds to push back is never flagged by the other, so what is released is
    /// always ready. Failed (a retired worker released) without the sweep lock.
    #[test]
    fn concurrent_sweeps_never_push_a_retired_worker_back() {
        const SLOTS: u32 = 6;
        const ROUNDS: u32 = 100_000;
        let slots: Vec<WorkerSlot> = (0..SLOTS)
            .map(|_| {
                let slot = WorkerSlot::new();
                slot.set_state(WorkerState::Ready);
                slot
            })
            .collect();
        let idle = IdleStack::new(SLOTS as usize);
        for index in 0..SLOTS {
            idle.push(index);
        }
        let sweeping = Mutex::new(());
        let released_retired = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for sweeper in 0..2 {
                let (slots, idle, sweeping) = (&slots, &idle, &sweeping);
                let released_retired = &released_retired;
                scope.spawn(move || {
                    for round in 0..ROUNDS {
                        // Slots 0-2 for one sweeper, 3-5 for the other.
                        let target = round % 3 + sweeper * 3;
                        sweep(
                            slots,
                            idle,
                            sweeping,
                            |index, _| {
                                if index == target {
                                    Sweep::Retire(WorkerState::Invalid)
                                } else {
                                    Sweep::Keep
                                }
                            },
                            |token| {
                                if slots[token.index() as usize].state() != WorkerState::Ready {
                                    released_retired.fetch_add(1, Ordering::Relaxed);
                                }
                                idle.push(token.into_index());
                            },
                            |token| {
                                // The lifecycle task: a new worker in the slot, in service.
                                slots[token.index() as usize].set_state(WorkerState::Ready);
                                idle.push(token.into_index());
                            },
                        );
                    }
                });
            }
        });
        assert_eq!(released_retired.load(Ordering::Relaxed), 0);
        let mut all = Vec::new();
        while let Some(index) = idle.pop() {
            all.push(index);
        }
        all.sort_unstable();
        assert_eq!(all, (0..SLOTS).collect::<Vec<_>>(), "every slot back, once");
    }
}
