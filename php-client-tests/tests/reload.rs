//! The `reload` plugin through the real binary: a watched `.php` edit resets the http
//! workers (new pids, no failed request meanwhile), a burst of edits gives one reset,
//! ignored dirs and other extensions give none, and a new subdirectory is watched.

use php_client_tests::http_client::get;
use php_client_tests::server::{http_config, scratch_dir, Launch, RrServer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The line the plugin logs once per reset.
const RESET_LINE: &str = "plugin was successfully reset";

/// Long enough for a reset (1 s debounce + booting PHP workers) on a loaded machine.
const RESET_TIMEOUT: Duration = Duration::from_secs(30);

/// A server whose `reload` watches `app` (recursive, `app/vendor` ignored) for the http
/// plugin, with `app` already made.
fn start_watching() -> (RrServer, std::path::PathBuf) {
    let dir = scratch_dir();
    let app = dir.join("app");
    std::fs::create_dir_all(app.join("vendor")).unwrap();
    let yaml = format!(
        "{}reload:\n  interval: 1s\n  patterns: [\".php\"]\n  services:\n    http:\n      recursive: true\n      ignore: [\"app/vendor\"]\n      dirs: [\"app\"]\n",
        http_config("", "")
    );
    let server = RrServer::start_in(dir, &yaml, &[], &Launch::default())
        .unwrap_or_else(|(status, output)| panic!("rr did not start ({status}):\n{output}"));
    assert!(
        server.wait_for_line("watching for changes", RESET_TIMEOUT),
        "{}",
        server.output()
    );
    (server, app)
}

fn reset_lines(server: &RrServer) -> Vec<String> {
    server
        .output()
        .lines()
        .filter(|line| line.contains(RESET_LINE))
        .map(str::to_owned)
        .collect()
}

/// Waits for a reset line naming `file` and returns it.
fn wait_for_reset_of(server: &RrServer, file: &Path) -> String {
    let file = file.display().to_string();
    let found = server.wait_for(RESET_TIMEOUT, |lines| {
        lines
            .iter()
            .any(|line| line.contains(RESET_LINE) && line.contains(&file))
    });
    assert!(found, "no reset for {file}:\n{}", server.output());
    reset_lines(server)
        .into_iter()
        .find(|line| line.contains(&file))
        .unwrap()
}

fn worker_pid(address: SocketAddr) -> String {
    let response = get(address, "/pid");
    assert_eq!(response.status, 200);
    response.text()
}

#[test]
fn a_php_edit_resets_the_workers_and_requests_during_it_succeed() {
    let (mut server, app) = start_watching();
    let address = server.http();
    let before = worker_pid(address);

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Acquire) {
                statuses.push(get(address, "/pid").status);
            }
            statuses
        })
    };
    let written_at = Instant::now();
    let file = app.join("worker.php");
    std::fs::write(&file, "<?php // edited\n").unwrap();
    let line = wait_for_reset_of(&server, &file);
    let latency = written_at.elapsed();
    stop.store(true, Ordering::Release);
    let statuses = load.join().unwrap();
    eprintln!("reset latency from write to log line: {latency:?}; {line}");

    assert!(!statuses.is_empty());
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let after = worker_pid(address);
    assert_ne!(before, after, "the workers were not replaced");
    server.stop();
}

#[test]
fn a_burst_gives_one_reset_and_filtered_files_none() {
    let (mut server, app) = start_watching();

    let burst_file = app.join("burst.php");
    for round in 0..20 {
        std::fs::write(&burst_file, format!("<?php // {round}\n")).unwrap();
    }
    wait_for_reset_of(&server, &burst_file);

    // Left out by the filter: another extension, a file below the ignored dir.
    std::fs::write(app.join("notes.txt"), "x").unwrap();
    std::fs::write(app.join("vendor").join("lib.php"), "<?php\n").unwrap();
    // Watched: a new file in new nested subdirectories of the recursive dir.
    let nested = app.join("module").join("deep");
    std::fs::create_dir_all(&nested).unwrap();
    let new_file = nested.join("new.php");
    std::fs::write(&new_file, "<?php\n").unwrap();
    let line = wait_for_reset_of(&server, &new_file);

    // The burst's reset and this one only: a second reset for the burst would have come
    // before this one, an ignored file would be counted in it.
    assert_eq!(reset_lines(&server).len(), 2, "{}", server.output());
    assert!(line.contains("\"changed_files\":1"), "{line}");
    server.stop();
}

#[test]
fn an_interval_under_a_second_fails_the_start_with_rr_s_text() {
    let yaml = format!(
        "{}reload:\n  interval: 500ms\n  services:\n    http:\n      dirs: [\".\"]\n",
        http_config("", "")
    );
    let Err((status, output)) = RrServer::start_with(&yaml, &[]) else {
        panic!("rr started with a 500ms reload interval");
    };
    assert!(!status.success());
    assert!(output.contains("reload interval is too fast"), "{output}");
}
