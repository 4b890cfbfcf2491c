//! Worker replacement leaks nothing. A test binary of its own: /proc/self/fd counts every
//! thread's descriptors, so no other test may run in this process.

use php_client_tests::harness::{php_pool_config, PoolHarness};
use std::time::Duration;

const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_thousand_replacements_leak_no_fd_and_no_zombie() {
    let mut config = php_pool_config("behave.php", 2);
    config.max_jobs = 1;
    let harness = PoolHarness::start(config).unwrap();
    // Warm both shards' caches and buffers.
    for shard in 0..4 {
        harness.exec_on(shard, "echo:warm").unwrap();
    }
    assert!(harness.wait_until(EVENT_TIMEOUT, |h| h.ready_pids().len() == 2));
    let before = open_fds();
    for round in 0..1000 {
        assert_eq!(harness.exec_on(round, "echo:r").unwrap(), "r");
    }
    assert!(
        harness.wait_until(EVENT_TIMEOUT, |h| h.ready_pids().len() == 2
            && open_fds() == before),
        "fds before {before}, after {}",
        open_fds()
    );
    let zombies = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| {
                let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
                fields.first() == Some(&"Z")
                    && fields.get(1) == Some(&std::process::id().to_string().as_str())
            })
        });
    assert_eq!(zombies.count(), 0);
}
