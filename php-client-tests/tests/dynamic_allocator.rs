//! The dynamic allocator (spec pool-server §10) through real `php` workers: a request that
//! waited `allocate_timeout` starts extra workers; `idle_timeout` after the last start they
//! are retired; past `max_workers` the request gets rr's error.

use php_client_tests::harness::{php_pool_config, PoolHarness};
use ringrunner::pool::{DynamicAllocator, ExecError, WorkerState};
use std::time::Duration;

const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

fn dynamic_pool(max_workers: usize, idle_timeout: Duration) -> PoolHarness {
    let mut config = php_pool_config("behave.php", 1);
    config.allocate_timeout = Duration::from_millis(300);
    config.dynamic = Some(DynamicAllocator {
        max_workers,
        spawn_rate: 1,
        idle_timeout,
    });
    PoolHarness::start(config).unwrap()
}

fn working(harness: &PoolHarness) -> usize {
    harness
        .pool
        .workers()
        .iter()
        .filter(|w| w.state == WorkerState::Working)
        .count()
}

#[test]
fn a_starved_request_gets_an_extra_worker_that_leaves_after_idle_timeout() {
    let harness = dynamic_pool(2, Duration::from_secs(1));
    let base = harness.exec("pid").unwrap().parse::<u32>().unwrap();
    let hold = harness.exec_in_background(0, "sleep:3000");
    assert!(harness.wait_until(EVENT_TIMEOUT, |h| working(h) == 1));
    // Waits allocate_timeout, then the allocator starts one extra worker for it.
    let extra = harness.exec("pid").unwrap().parse::<u32>().unwrap();
    assert_ne!(extra, base);
    assert_eq!(harness.pool.workers().len(), 2);
    assert_eq!(hold.blocking_recv().unwrap().unwrap(), "slept");
    // One second after that start, the extra worker is retired; the base one stays.
    assert!(
        harness.wait_until(EVENT_TIMEOUT, |h| h.ready_pids() == vec![base]
            && h.pool.workers().len() == 1)
    );
    // And it all happens again on the next starvation.
    let hold = harness.exec_in_background(0, "sleep:2000");
    assert!(harness.wait_until(EVENT_TIMEOUT, |h| working(h) == 1));
    let again = harness.exec("pid").unwrap().parse::<u32>().unwrap();
    assert!(again != base && again != extra);
    assert_eq!(hold.blocking_recv().unwrap().unwrap(), "slept");
}

#[test]
fn past_max_workers_the_request_gets_rr_s_error() {
    let harness = dynamic_pool(1, Duration::from_secs(30));
    let first = harness.exec_in_background(0, "sleep:6000");
    assert!(harness.wait_until(EVENT_TIMEOUT, |h| working(h) == 1));
    // The second starved request gets the one extra worker and keeps it busy.
    let second = harness.exec_in_background(1, "sleep:6000");
    assert!(harness.wait_until(EVENT_TIMEOUT, |h| working(h) == 2));
    let error = harness.exec("pid").unwrap_err();
    assert_eq!(error, ExecError::DynamicLimit);
    assert_eq!(
        error.to_string(),
        "allocate_dynamically: can't allocate more workers, increase max_workers option (max_workers limit is 100)"
    );
    assert_eq!(first.blocking_recv().unwrap().unwrap(), "slept");
    assert_eq!(second.blocking_recv().unwrap().unwrap(), "slept");
}

#[test]
fn clamps_follow_rr() {
    let clamped = DynamicAllocator {
        max_workers: 500,
        spawn_rate: 0,
        idle_timeout: Duration::from_millis(10),
    }
    .clamped();
    assert_eq!(
        clamped,
        DynamicAllocator {
            max_workers: 100,
            spawn_rate: 1,
            idle_timeout: Duration::from_secs(60)
        }
    );
}
