//! Property test of the lock table: any sequence of calls and clock steps keeps it
//! consistent ([`LockTable::check_invariants`]: no writer beside readers, nobody waiting who
//! could go), grants only queued tickets, each once, and loses no waiter.

use super::table::{Acquire, Kind, LockTable, Ticket};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Step {
    Acquire {
        resource: u8,
        id: u8,
        write: bool,
        ttl_ms: Option<u16>,
    },
    Release {
        resource: u8,
        id: u8,
    },
    /// The `n`-th waiting ticket's wait is over.
    Cancel(usize),
    ForceRelease(u8),
    UpdateTtl {
        resource: u8,
        id: u8,
        ttl_ms: Option<u16>,
    },
    Advance(u16),
}

fn step() -> impl Strategy<Value = Step> {
    let ttl = proptest::option::of(1u16..500);
    prop_oneof![
        (0u8..3, 0u8..5, any::<bool>(), ttl.clone()).prop_map(|(resource, id, write, ttl_ms)| {
            Step::Acquire {
                resource,
                id,
                write,
                ttl_ms,
            }
        }),
        (0u8..3, 0u8..5).prop_map(|(resource, id)| Step::Release { resource, id }),
        (0usize..8).prop_map(Step::Cancel),
        (0u8..3).prop_map(Step::ForceRelease),
        (0u8..3, 0u8..5, ttl).prop_map(|(resource, id, ttl_ms)| Step::UpdateTtl {
            resource,
            id,
            ttl_ms
        }),
        (0u16..400).prop_map(Step::Advance),
    ]
}

fn ms(ttl_ms: Option<u16>) -> Option<Duration> {
    ttl_ms.map(|ms| Duration::from_millis(ms.into()))
}

/// Takes the `granted` tickets off `waiting`: each must be waiting, and granted once.
fn settle(
    waiting: &mut Vec<(String, Ticket)>,
    done: &mut BTreeSet<Ticket>,
    granted: &[Ticket],
) -> Result<(), TestCaseError> {
    for &ticket in granted {
        let at = waiting.iter().position(|(_, t)| *t == ticket);
        prop_assert!(at.is_some(), "ticket {} granted but not waiting", ticket);
        waiting.remove(at.unwrap_or_default());
        prop_assert!(done.insert(ticket), "ticket {} granted twice", ticket);
    }
    Ok(())
}

proptest! {
    #[test]
    fn the_table_stays_consistent_and_grants_each_waiter_once(
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let mut table = LockTable::default();
        let mut now = Instant::now();
        // Waiting tickets with their resource.
        let mut waiting: Vec<(String, Ticket)> = Vec::new();
        let mut done = BTreeSet::new();
        for step in steps {
            let mut granted = Vec::new();
            table.expire(now, &mut granted);
            settle(&mut waiting, &mut done, &granted)?;
            granted.clear();
            match step {
                Step::Acquire { resource, id, write, ttl_ms } => {
                    let kind = if write { Kind::Write } else { Kind::Read };
                    let resource = resource.to_string();
                    let acquired = table.acquire(&resource, &id.to_string(), kind, ms(ttl_ms), now);
                    if let Acquire::Queued(ticket) = acquired {
                        waiting.push((resource, ticket));
                    }
                }
                Step::Release { resource, id } => {
                    table.release(&resource.to_string(), &id.to_string(), now, &mut granted);
                }
                Step::Cancel(n) if n < waiting.len() => {
                    let (resource, ticket) = waiting.remove(n);
                    let was_queued = table.cancel(&resource, ticket, now, &mut granted);
                    prop_assert!(was_queued, "a waiting ticket was not in its queue");
                    done.insert(ticket);
                }
                Step::Cancel(_) => {}
                Step::ForceRelease(resource) => {
                    table.force_release(&resource.to_string(), now, &mut granted);
                }
                Step::UpdateTtl { resource, id, ttl_ms } => {
                    table.update_ttl(&resource.to_string(), &id.to_string(), ms(ttl_ms), now);
                }
                Step::Advance(step_ms) => now += Duration::from_millis(step_ms.into()),
            }
            settle(&mut waiting, &mut done, &granted)?;
            table.check_invariants();
        }
    }
}
