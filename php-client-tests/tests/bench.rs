//! `rr bench` end to end: the real binary drives real PHP workers through the pool.

use php_client_tests::server::{http_config, rr_binary, scratch_dir, worker_command};
use std::process::Command;

/// Runs `rr bench` with `yaml` and `args`; (exit code, stdout + stderr).
fn bench(yaml: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = scratch_dir();
    std::fs::write(dir.join(".rr.yaml"), yaml).unwrap();
    let output = Command::new(rr_binary())
        .arg("bench")
        .arg("-c")
        .arg(dir.join(".rr.yaml"))
        .args(args)
        .output()
        .expect("rr runs");
    let _ = std::fs::remove_dir_all(dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

fn number_after<'a>(text: &'a str, label: &str) -> &'a str {
    let start = text
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
        + label.len();
    text[start..].split_whitespace().next().unwrap()
}

#[test]
fn http_workers_get_request_contexts_and_the_numbers_are_printed() {
    let (code, out) = bench(&http_config("", ""), &["-n", "400", "--size", "2048"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("400 payloads of 2048 B (Http) through 2 workers"),
        "{out}"
    );
    assert_eq!(number_after(&out, "errors: "), "0", "{out}");
    let rate: f64 = number_after(&out, "throughput: ").parse().unwrap();
    assert!(rate > 0.0, "{out}");
    let p99: f64 = number_after(&out, " p99 ").parse().unwrap();
    let p50: f64 = number_after(&out, " p50 ").parse().unwrap();
    assert!(p50 > 0.0 && p99 >= p50, "{out}");
}

#[test]
fn raw_payloads_suit_plain_workers_and_failures_exit_1() {
    let echo = format!(
        "version: \"3\"\nserver:\n  command: \"{}\"\n",
        worker_command("echo.php")
    );
    let (code, out) = bench(&echo, &["-n", "300", "--concurrency", "3"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("(Raw)"), "{out}");
    assert_eq!(number_after(&out, "errors: "), "0", "{out}");
    // A worker that answers every payload with an error frame: rr says so and exits 1.
    let dir = scratch_dir();
    let script = dir.join("refuse.php");
    std::fs::write(
        &script,
        format!(
            "<?php\nrequire '{}';\n$w = RingRunnerTest\\Worker::create();\nwhile ($w->waitPayload()) {{ $w->error('refused'); }}\n",
            php_client_tests::php_dir().join("Goridge.php").display()
        ),
    )
    .unwrap();
    let refuse = format!(
        "version: \"3\"\nserver:\n  command: \"php {}\"\n",
        script.display()
    );
    let (code, out) = bench(&refuse, &["-n", "5"]);
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("5 payloads failed; the first: "), "{out}");
    assert!(out.contains("refused"), "{out}");
}
