//! The protocol crate against real PHP processes running our goridge client.

use php_client_tests::{php_binary, php_dir, self_check};
use std::process::Command;

#[test]
fn rust_server_side_and_php_worker_agree() {
    let report = self_check(200).expect("self-check");
    assert_eq!(report.round_trips, 200);
}

#[test]
fn php_client_reads_and_writes_every_relay_vector() {
    let vectors = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/tests/data/relay-vectors.json");
    let output = Command::new(php_binary())
        .arg(php_dir().join("vectors_check.php"))
        .arg(vectors)
        .output()
        .expect("run php");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "20 passed, 0 failed");
}
