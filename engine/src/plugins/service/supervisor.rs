//! One process of a service, supervised by a task on a shard: spawn (or adopt a daemon found
//! by its PID file), forward its output, watch its exit (pidfd) or, for a daemon that is not
//! our child, its liveness; stop it with its signal and escalate to SIGKILL; restart it by
//! the policy, with backoff and a start limit, every delay cancellable by a stop.

use super::config::{Restart, ServiceSpec};
use super::daemon::{watch_daemon, Daemon};
use super::output::{self, Tail};
use super::process::{self, PidFile, Spawned};
use super::record::{Phase, ProcessRecord};
use super::stop::{kill_child, stop_child};
use crate::aio::Backend;
use crate::worker::process::{self as worker_process, reap};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

/// How often a daemon that is not our child is checked (its pid alive, its PID file).
pub(super) const DAEMON_CHECK: Duration = Duration::from_millis(500);
/// How long a process gets to die after SIGKILL.
pub(super) const AFTER_KILL: Duration = Duration::from_millis(1500);

/// How one run ended.
pub(super) enum RunEnd {
    /// Stopped on request.
    Stopped,
    /// It exited; `failed`: not a clean exit (for `on-failure`).
    Exited { status: String, failed: bool },
    /// It could not be started (or died at once in PID-file mode).
    StartFailed(String),
    /// A stop could not be completed (signal refused, survived SIGKILL).
    Broken(String),
}

/// Supervises `record` until it is stopped or exits for good. `first` hears how the first
/// start went (a start error there is the caller's, not a restart's).
pub async fn supervise(
    spec: Arc<ServiceSpec>,
    record: Arc<ProcessRecord>,
    first: Option<oneshot::Sender<Result<(), String>>>,
    backend: Backend,
) {
    let mut first = first;
    let mut quick_runs = 0u32;
    let mut starts: VecDeque<Instant> = VecDeque::new();
    loop {
        if record.stop_requested() {
            record.update(|info| info.phase = Phase::Stopped);
            break;
        }
        if spec.start_limit_burst > 0 {
            let now = Instant::now();
            starts.retain(|at| now.duration_since(*at) < spec.start_limit_interval);
            if starts.len() >= spec.start_limit_burst as usize {
                tracing::error!(target: "service", name = %spec.name, burst = spec.start_limit_burst,
                    interval = spec.start_limit_interval.as_secs(), "start limit reached");
                record.update(|info| {
                    info.phase = Phase::Fatal;
                    info.message = "start limit reached".into();
                });
                break;
            }
            starts.push_back(now);
        }
        let began = Instant::now();
        let end = run_once(&spec, &record, &mut first, backend).await;
        let (status, failed) = match end {
            RunEnd::Stopped => {
                record.update(|info| info.phase = Phase::Stopped);
                break;
            }
            RunEnd::Broken(reason) => {
                record.update(|info| {
                    info.phase = Phase::Error;
                    info.message = reason;
                });
                break;
            }
            RunEnd::StartFailed(reason) => {
                if let Some(first) = first.take() {
                    record.update(|info| {
                        info.phase = Phase::Fatal;
                        info.message.clone_from(&reason);
                    });
                    let _ = first.send(Err(reason));
                    break;
                }
                tracing::error!(target: "service", name = %spec.name, error = %reason, "process start error");
                if spec.pid_file.is_none() {
                    // rr: a respawn that fails leaves the record dead.
                    record.update(|info| {
                        info.phase = Phase::Fatal;
                        info.message = reason;
                    });
                    break;
                }
                (reason, true)
            }
            RunEnd::Exited { status, failed } => (status, failed),
        };
        let restart = match spec.restart {
            Restart::No => false,
            Restart::Always => true,
            Restart::OnFailure => failed,
        };
        record.update(|info| info.last_exit = Some(status.clone()));
        if !restart || record.stop_requested() {
            record.update(|info| {
                info.phase = if record.stop_requested() {
                    Phase::Stopped
                } else {
                    Phase::Exited
                };
                info.message = format!("exited: {status}");
            });
            break;
        }
        let quick = !spec.start_secs.is_zero() && began.elapsed() < spec.start_secs;
        quick_runs = if quick { quick_runs + 1 } else { 0 };
        let delay = restart_delay(&spec, quick_runs);
        record.update(|info| {
            info.phase = Phase::Backoff;
            info.message = format!("restarting in {}s ({status})", delay.as_secs_f64().ceil());
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = record.stop_wanted() => {
                record.update(|info| info.phase = Phase::Stopped);
                break;
            }
        }
        record.update(|info| info.restarts += 1);
    }
    if let Some(first) = first.take() {
        let _ = first.send(Ok(()));
    }
    record.finish();
}

/// rr's fixed delay, or with `restart_max_sec` above it, `restart_sec × 2^(n−1)` for the
/// n-th quick run in a row, capped (spec service §10.2).
fn restart_delay(spec: &ServiceSpec, quick_runs: u32) -> Duration {
    let base = spec.restart_sec;
    if spec.restart_max_sec <= base || quick_runs == 0 {
        return Duration::from_secs(base);
    }
    let grown = base.saturating_mul(1u64 << (quick_runs - 1).min(32));
    Duration::from_secs(grown.min(spec.restart_max_sec))
}

/// One run: adopt or spawn, then watch until it ends.
async fn run_once(
    spec: &ServiceSpec,
    record: &Arc<ProcessRecord>,
    first: &mut Option<oneshot::Sender<Result<(), String>>>,
    backend: Backend,
) -> RunEnd {
    if let Some(pid_file) = &spec.pid_file {
        match settle_pid_file(spec, pid_file) {
            Ok(Some(daemon)) => {
                tracing::info!(target: "service", name = %spec.name, pid = daemon.pid(), "adopted running daemon");
                record.update(|info| info.since = Some(Instant::now()));
                mark_started(record, first, daemon.pid());
                return watch_daemon(spec, record, daemon).await;
            }
            Ok(None) => {}
            Err(error) => return RunEnd::StartFailed(error),
        }
    }
    let Spawned {
        mut child,
        pid,
        pidfd,
        output: pipes,
        command,
    } = match process::spawn(spec) {
        Ok(spawned) => spawned,
        Err(error) => {
            return RunEnd::StartFailed(format!("service {}: {}: {error}", spec.name, spec.command))
        }
    };
    tracing::info!(target: "service", name = %spec.name, command = %command, pid, "service was started");
    record.update(|info| {
        info.phase = Phase::Starting;
        info.pid = pid;
        info.command.clone_from(&command);
        info.since = Some(Instant::now());
    });
    let tail = Tail::default();
    if let Some(pipes) = pipes {
        output::forward(pipes, &spec.name, spec.name_in_log, pid, &tail, backend);
    }
    let exit = match worker_process::watch_exit(pidfd) {
        Ok(exit) => exit,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            return RunEnd::StartFailed(format!(
                "service {}: cannot watch its exit: {error}",
                spec.name
            ));
        }
    };
    if let Some(pid_file) = &spec.pid_file {
        match instant_exit_check(spec, pid_file, &mut child, &exit, pid, &tail).await {
            Ok(Some(daemon)) => {
                mark_started(record, first, daemon.pid());
                return watch_daemon(spec, record, daemon).await;
            }
            Ok(None) => {}
            Err(error) => return RunEnd::StartFailed(error),
        }
    }
    mark_started(record, first, pid);
    watch_child(spec, record, &mut child, &exit, pid).await
}

/// The process runs: the record says so, and the first start's waiter hears it.
fn mark_started(
    record: &ProcessRecord,
    first: &mut Option<oneshot::Sender<Result<(), String>>>,
    pid: u32,
) {
    record.update(|info| {
        info.phase = Phase::Running;
        info.pid = pid;
        info.message.clear();
    });
    if let Some(first) = first.take() {
        let _ = first.send(Ok(()));
    }
}

/// Before a PID-file service is spawned: the daemon already running, held by its pidfd
/// (adopt it), None to spawn (a stale file removed, its folder made), or the start error.
fn settle_pid_file(spec: &ServiceSpec, pid_file: &Path) -> Result<Option<Daemon>, String> {
    let found = match process::read_pid_file(pid_file) {
        // Gone or replaced between the read and the pidfd: stale after all.
        PidFile::Live(pid) => Daemon::from_pid_file(pid_file, pid).ok_or(PidFile::Stale),
        other => Err(other),
    };
    match found {
        Ok(daemon) => return Ok(Some(daemon)),
        Err(PidFile::Live(_) | PidFile::Stale) => {
            process::remove_pid_file(pid_file, None);
            tracing::info!(target: "service", name = %spec.name, path = %pid_file.display(), "removed stale pid file");
        }
        Err(PidFile::Unreadable(reason)) => return Err(format!("service {}: {reason}", spec.name)),
        Err(PidFile::Missing) => {}
    }
    if let Some(parent) = pid_file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|error| {
            format!(
                "service {}: pid file folder {}: {error}",
                spec.name,
                parent.display()
            )
        })?;
    }
    Ok(None)
}

/// The instant-exit check of a PID-file service: a launcher that dies within `start_secs`
/// failed to start; one that exits 0 has forked, and its PID file names the daemon
/// (Some(daemon)); one still running is the service itself (None).
async fn instant_exit_check(
    spec: &ServiceSpec,
    pid_file: &Path,
    child: &mut std::process::Child,
    exit: &AsyncFd<OwnedFd>,
    launcher: u32,
    tail: &Tail,
) -> Result<Option<Daemon>, String> {
    match tokio::time::timeout(spec.start_secs, reap(child, exit)).await {
        Err(_) => Ok(None),
        Ok(Some(status)) if status.success() => forked_daemon(spec, pid_file, launcher)
            .await
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "service {}: its launcher exited and no live pid appeared in {} within {}s{}",
                    spec.name,
                    pid_file.display(),
                    spec.pid_file_timeout.as_secs(),
                    last_output(spec, tail)
                )
            }),
        Ok(status) => {
            let status = status.map_or_else(|| "unknown exit".into(), go_exit_text);
            process::remove_pid_file(pid_file, None);
            tracing::error!(target: "service", name = %spec.name, status = %status, "service failed to start");
            Err(format!(
                "service {}: exited at once ({status}){}",
                spec.name,
                last_output(spec, tail)
            ))
        }
    }
}

/// After `launcher` exited 0: polls `pid_file` for up to `pid_file_timeout` until it names
/// a live process, the daemon the launcher forked (held by its pidfd from then on) (a daemon writes its PID file a few ms
/// after its launcher exits, and may create it empty first). `None` at once when the file
/// names the launcher itself: a foreground run that wrote its own PID file and is done.
async fn forked_daemon(spec: &ServiceSpec, pid_file: &Path, launcher: u32) -> Option<Daemon> {
    let deadline = Instant::now() + spec.pid_file_timeout;
    loop {
        match Daemon::other_than(pid_file, launcher) {
            Some(daemon) => return Some(daemon),
            _ if process::pid_in_file(pid_file) == Some(launcher) => return None,
            _ if Instant::now() >= deadline => return None,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The output's last lines for a start error (from the log file or the kept tail).
fn last_output(spec: &ServiceSpec, tail: &Tail) -> String {
    let lines = match &spec.log_file {
        Some(path) => output::file_tail(path),
        None => tail.lines(),
    };
    if lines.is_empty() {
        String::new()
    } else {
        format!("; last output:\n{lines}")
    }
}

/// Watches our own child until it exits, its run times out, or a stop is asked for.
async fn watch_child(
    spec: &ServiceSpec,
    record: &ProcessRecord,
    child: &mut std::process::Child,
    exit: &AsyncFd<OwnedFd>,
    pid: u32,
) -> RunEnd {
    let deadline = spec
        .exec_timeout
        .map(|timeout| tokio::time::Instant::now() + timeout);
    let mut timed_out = false;
    // The PID file named the child itself: a foreground daemon (php-fpm --nodaemonize),
    // whose clean exit is the end of the service, not a launcher's hand-over.
    let mut named_itself = false;
    loop {
        let run_out = async {
            match deadline {
                Some(deadline) if !timed_out => tokio::time::sleep_until(deadline).await,
                _ => std::future::pending().await,
            }
        };
        let daemon_check = async {
            match &spec.pid_file {
                Some(_) => tokio::time::sleep(DAEMON_CHECK).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = reap(child, exit) => {
                let Some(status) = status else {
                    return RunEnd::Exited { status: "unknown exit".into(), failed: true };
                };
                let text = go_exit_text(status);
                if !status.success() {
                    tracing::error!(target: "service", name = %spec.name, error = %text, "wait");
                }
                if let Some(pid_file) = &spec.pid_file {
                    // A launcher slower than start_secs (a loaded machine) that has now
                    // forked its daemon: the service lives on in the daemon, follow it.
                    if status.success() && !timed_out && !named_itself {
                        if let Some(daemon) = forked_daemon(spec, pid_file, pid).await {
                            note_pid_change(spec, record, daemon.pid());
                            return watch_daemon(spec, record, daemon).await;
                        }
                    }
                    process::remove_pid_file(pid_file, Some(pid));
                }
                return RunEnd::Exited { failed: !status.success() || timed_out, status: text };
            }
            () = run_out => {
                timed_out = true;
                tracing::warn!(target: "service", name = %spec.name, pid, "exec_timeout reached, killing");
                kill_child(spec, exit, pid);
            }
            () = daemon_check => {
                if let Some(PidFile::Live(daemon)) = spec.pid_file.as_deref().map(process::read_pid_file) {
                    if daemon == pid {
                        named_itself = true;
                    } else {
                        // The child re-forked its daemon: follow the PID file.
                        note_pid_change(spec, record, daemon);
                    }
                }
            }
            () = record.stop_wanted() => {
                return stop_child(spec, record, child, exit, pid).await;
            }
        }
    }
}

pub(super) fn note_pid_change(spec: &ServiceSpec, record: &ProcessRecord, new: u32) {
    let old = record.info().pid;
    if old != new {
        tracing::info!(target: "service", name = %spec.name, old, new, "pid changed");
        record.update(|info| info.pid = new);
    }
}

/// Go's `ExitError` text: `exit status 1`, `signal: killed`.
#[must_use]
pub fn go_exit_text(status: std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    let name = match status.signal() {
        Some(1) => "hangup",
        Some(2) => "interrupt",
        Some(3) => "quit",
        Some(6) => "aborted",
        Some(9) => "killed",
        Some(11) => "segmentation fault",
        Some(13) => "broken pipe",
        Some(15) => "terminated",
        Some(other) => return format!("signal: {other}"),
        None => return "unknown exit".into(),
    };
    format!("signal: {name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loop_backs_off_to_the_cap() {
        let mut spec = ServiceSpec::new("x", "false");
        spec.restart_sec = 1;
        spec.restart_max_sec = 60;
        let delays: Vec<u64> = (1..=9).map(|n| restart_delay(&spec, n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(
            restart_delay(&spec, 0).as_secs(),
            1,
            "a healthy run resets the delay"
        );
        spec.restart_max_sec = 0;
        assert_eq!(restart_delay(&spec, 5).as_secs(), 1, "rr's fixed delay");
    }

    #[test]
    fn exits_are_worded_as_go_words_them() {
        assert_eq!(
            go_exit_text(std::process::ExitStatus::from_raw(1 << 8)),
            "exit status 1"
        );
        assert_eq!(
            go_exit_text(std::process::ExitStatus::from_raw(9)),
            "signal: killed"
        );
        assert_eq!(
            go_exit_text(std::process::ExitStatus::from_raw(2)),
            "signal: interrupt"
        );
    }
}
