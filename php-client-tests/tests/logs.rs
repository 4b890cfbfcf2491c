//! The `logs` plugin through the real binary: a log output that fails every write (a full
//! disk: `/dev/full` answers ENOSPC) does not stop the server; the failures are counted in
//! a metrics series and reported, rate-limited, on stderr.

use php_client_tests::http_client::get;
use php_client_tests::server::{free_port, wait_for_port, worker_command, RrServer};
use std::net::SocketAddr;
use std::time::Duration;

/// The value of the sample line `series` in a scrape.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_log_output_on_a_full_disk_is_counted_and_reported_while_rr_serves() {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // `pool` before `address`: the listener's log line goes to /dev/full, so the helper
    // must not wait for it.
    let yaml = format!(
        "version: \"3\"\nserver:\n  command: \"{}\"\nhttp:\n  pool:\n    num_workers: 1\n  address: {http}\nmetrics:\n  address: {metrics}\nlogs:\n  level: info\n  output: /dev/full\n",
        worker_command("http.php")
    );
    let server = RrServer::start(&yaml);
    assert!(wait_for_port(http, Duration::from_secs(10)));
    assert!(wait_for_port(metrics, Duration::from_secs(10)));
    // rr serves.
    assert_eq!(get(http, "/hello").status, 200);
    // The failed writes are reported on stderr (the root logger writes nowhere else).
    assert!(
        server.wait_for_line("log lines lost", Duration::from_secs(10)),
        "{}",
        server.output()
    );
    let output = server.output();
    let report = output
        .lines()
        .find(|line| line.contains("log lines lost"))
        .unwrap();
    assert!(report.contains("\"write_errors\":"), "{report}");
    assert!(
        report.contains("No space left on device (os error 28)"),
        "{report}"
    );
    // Rate-limited: one report however many lines failed since.
    for _ in 0..5 {
        assert_eq!(get(http, "/hello").status, 200);
    }
    let scrape = get(metrics, "/metrics").text();
    let failed = value(&scrape, "rr_logs_write_errors_total").expect("the series");
    assert!(failed >= 1.0, "{scrape}");
    assert_eq!(value(&scrape, "rr_logs_dropped_lines_total"), Some(0.0));
    assert_eq!(
        server
            .output()
            .lines()
            .filter(|line| line.contains("log lines lost"))
            .count(),
        1
    );
}
