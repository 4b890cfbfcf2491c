//! What the temporal tests share: a dev server and an `rr` with the temporal plugin on its
//! own task queue, the Python client, the PHP workers' pids.

use php_client_tests::python::venv_program;
use php_client_tests::server::{free_port, RrServer};
use php_client_tests::temporal_server::TemporalServer;
use std::path::PathBuf;
use std::process::Command;

/// A dev server and an `rr` serving one task queue.
pub struct Rig {
    /// Dropped after `rr` (fields drop in order).
    pub rr: RrServer,
    pub temporal: TemporalServer,
    pub queue: String,
    /// Where the `Step` activity notes its runs.
    pub log: PathBuf,
}

/// A config for `address` with `activity_workers` and `extra` lines under `temporal:`.
pub fn config(address: &str, queue: &str, activity_workers: u64, extra: &str) -> String {
    format!(
        "version: \"3\"\n\
         rpc:\n  listen: tcp://127.0.0.1:{rpc}\n\
         server:\n  command: \"{php} {script}\"\n  env:\n    TEMPORAL_TASK_QUEUE: {queue}\n    TEMPORAL_LOG: {log}\n\
         logs:\n  level: info\n  mode: development\n\
         temporal:\n  address: {address}\n  activities:\n    num_workers: {activity_workers}\n{extra}",
        rpc = free_port(),
        php = php_client_tests::php_binary(),
        script = php_client_tests::php_dir().join("temporal/worker.php").display(),
        log = std::env::temp_dir().join(format!("{queue}.log")).display(),
    )
}

impl Rig {
    /// A dev server and `rr` on a fresh task queue.
    pub fn start(activity_workers: u64, extra: &str) -> Self {
        let temporal = TemporalServer::start();
        static NEXT_QUEUE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let queue = format!(
            "q{}-{}",
            std::process::id(),
            NEXT_QUEUE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let log = std::env::temp_dir().join(format!("{queue}.log"));
        let rr = RrServer::start(&config(
            &temporal.address(),
            &queue,
            activity_workers,
            extra,
        ));
        Self {
            rr,
            temporal,
            queue,
            log,
        }
    }

    /// Runs `python/temporal_client.py` with `args` on this rig's server and queue; its
    /// JSON answer.
    pub fn client(&self, args: &[&str]) -> serde_json::Value {
        let script = php_client_tests::php_dir().join("../python/temporal_client.py");
        let output = Command::new(venv_program("python"))
            .arg(script)
            .args([self.temporal.address().as_str(), self.queue.as_str()])
            .args(args)
            .output()
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|error| {
            panic!(
                "client {args:?}: {error}: {stdout}\n{}\nrr:\n{}",
                String::from_utf8_lossy(&output.stderr),
                self.rr.output()
            )
        })
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Pids of PHP workers whose environment names `queue` (ours, of one test).
pub fn php_workers_of(queue: &str) -> Vec<u32> {
    let needle = format!("TEMPORAL_TASK_QUEUE={queue}\0");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// Waits until `log` has a line containing `needle` (the `Step` activity's notes). The
/// file has no event to block on: it is read every 20 ms, up to `timeout`.
pub fn wait_for_log(log: &std::path::Path, needle: &str, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if std::fs::read_to_string(log).is_ok_and(|text| text.contains(needle)) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::park_timeout(std::time::Duration::from_millis(20));
    }
}

/// The pids the `Step` activity noted (the activity workers that ran steps).
pub fn activity_pids(log: &std::path::Path) -> Vec<u32> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.rsplit(" pid ").next()?.trim().parse().ok())
        .collect()
}

/// SIGKILLs `pid`.
pub fn kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
}
