//! The jobs tests' two ends: the producer (`php/jobs_call.php` over RPC, its JSON answer or
//! rr's error text) and the consumers' log (`php/workers/jobs.php` appends one JSON line per
//! job it takes).

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Polls until `check` holds (a broker's or the server's figure), or panics with `what`.
/// A poll, not a wait on an event: RabbitMQ's queue counts and rr's Stat are figures
/// read on request, with nothing to subscribe to.
///
/// # Panics
/// When `check` does not hold within `limit`.
pub fn wait_until(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// Runs `jobs_call.php DSN args…`: its answer, or the error rr sent.
///
/// # Panics
/// When PHP fails otherwise.
pub fn call(dsn: &str, args: &[&str]) -> Result<Value, String> {
    let output = Command::new(crate::php_binary())
        .arg(crate::php_dir().join("jobs_call.php"))
        .arg(dsn)
        .args(args)
        .output()
        .expect("php runs");
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match stdout.strip_prefix("ERROR: ") {
        Some(error) => Err(error.to_owned()),
        None if output.status.success() => {
            Ok(serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}")))
        }
        None => panic!(
            "jobs_call {args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The jobs the workers took, in order (whole lines only: a worker may be writing one).
///
/// # Panics
/// On a line that is not JSON.
#[must_use]
pub fn taken(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Polls the log (the event: a line written) until `count` jobs were taken, counting
/// newlines (parsing a 12 MB log at every poll would starve the consumers).
///
/// # Panics
/// When fewer were taken within `limit`.
pub fn wait_taken(log: &Path, count: usize, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let lines = std::fs::read(log)
            .map(|bytes| bytes.iter().filter(|b| **b == b'\n').count())
            .unwrap_or(0);
        if lines >= count {
            return taken(log);
        }
        assert!(
            Instant::now() < deadline,
            "{lines} of {count} jobs taken within {limit:?}"
        );
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// The time now as the consumers log it (Unix seconds, as PHP's `microtime(true)`).
///
/// # Panics
/// With a clock before 1970.
#[must_use]
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
