//! `relay-selfcheck [ROUNDS]`: runs the protocol crate against a real PHP echo worker.

fn main() {
    let rounds = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    match php_client_tests::self_check(rounds) {
        Ok(report) => println!(
            "relay self-check: OK: PHP worker pid {} echoed {} requests over pipes, mean round trip {:?}",
            report.worker_pid, report.round_trips, report.mean_round_trip
        ),
        Err(error) => {
            eprintln!("relay self-check FAILED: {error}");
            std::process::exit(1);
        }
    }
}
