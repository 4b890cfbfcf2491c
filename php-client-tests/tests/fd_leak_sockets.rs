//! Worker replacement over a tcp relay leaks nothing (listener, accepted connections,
//! handshake threads). A test binary of its own, like fd_leak.rs.

use php_client_tests::harness::{assert_replacements_leak_nothing, php_pool_config};
use ringrunner::worker::socket_relay::RelayAddress;

#[test]
fn three_hundred_replacements_over_tcp_leak_no_fd_and_no_zombie() {
    let mut config = php_pool_config("behave.php", 2);
    config.relay = RelayAddress::parse("tcp://127.0.0.1:0").unwrap();
    config.relay_dsn = "tcp://127.0.0.1:0".into();
    config.max_jobs = 1;
    assert_replacements_leak_nothing(config, 300);
}
