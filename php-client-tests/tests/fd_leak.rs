//! Worker replacement leaks nothing over pipes. A test binary of its own: /proc/self/fd
//! counts every thread's descriptors, so no other test may run in this process.

use php_client_tests::harness::{assert_replacements_leak_nothing, php_pool_config};

#[test]
fn a_thousand_replacements_leak_no_fd_and_no_zombie() {
    let mut config = php_pool_config("behave.php", 2);
    config.max_jobs = 1;
    assert_replacements_leak_nothing(config, 1000);
}
