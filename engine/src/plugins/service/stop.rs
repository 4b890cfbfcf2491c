//! Stopping a service's process: its signal (to the process or its group), the grace
//! time, then SIGKILL; through the pidfd for our own child and for a daemon it forked (no
//! PID-reuse race). A PID file is removed only when it still names the
//! process stopped.

use super::config::ServiceSpec;
use super::daemon::{stop_daemon, Daemon};
use super::process;
use super::record::{Phase, ProcessRecord};
use super::supervisor::go_exit_text;
use super::supervisor::{RunEnd, AFTER_KILL};
use crate::worker::process::reap;
use rustix::process::Signal;
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;

pub(super) fn kill_child(spec: &ServiceSpec, exit: &AsyncFd<OwnedFd>, pid: u32) {
    if spec.kill_group {
        let _ = process::signal_pid(pid, Signal::KILL, true);
    }
    let _ = process::signal_child(exit.get_ref(), Signal::KILL);
}

/// Stops our child: its signal (through the pidfd, or to its group), `timeout_stop_sec`,
/// then SIGKILL. A daemon its PID file names instead (it re-forked) is stopped as a
/// stranger would be, and the child after it.
pub(super) async fn stop_child(
    spec: &ServiceSpec,
    record: &ProcessRecord,
    child: &mut std::process::Child,
    exit: &AsyncFd<OwnedFd>,
    pid: u32,
) -> RunEnd {
    record.update(|info| info.phase = Phase::Stopping);
    if let Some(daemon) = spec
        .pid_file
        .as_deref()
        .and_then(|path| Daemon::other_than(path, pid))
    {
        if let RunEnd::Broken(reason) = stop_daemon(spec, record, &daemon).await {
            return RunEnd::Broken(reason);
        }
    }
    if spec.kill_group {
        let _ = process::signal_pid(pid, spec.stop_signal, true);
    } else {
        let _ = process::signal_child(exit.get_ref(), spec.stop_signal);
    }
    let status = match tokio::time::timeout(spec.timeout_stop, reap(child, exit)).await {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!(target: "service", name = %spec.name, pid, "did not stop in time, sending SIGKILL");
            kill_child(spec, exit, pid);
            match tokio::time::timeout(AFTER_KILL, reap(child, exit)).await {
                Ok(status) => status,
                Err(_) => return RunEnd::Broken(format!("process {pid} survived SIGKILL")),
            }
        }
    };
    if let Some(pid_file) = &spec.pid_file {
        process::remove_pid_file(pid_file, Some(pid));
    }
    tracing::info!(target: "service", name = %spec.name, pid, status = %status.map_or_else(|| "unknown".into(), go_exit_text), "service was stopped");
    RunEnd::Stopped
}

pub(super) fn signal_name(signal: Signal) -> String {
    match signal {
        Signal::INT => "SIGINT".into(),
        Signal::TERM => "SIGTERM".into(),
        Signal::QUIT => "SIGQUIT".into(),
        Signal::HUP => "SIGHUP".into(),
        Signal::KILL => "SIGKILL".into(),
        other => format!("signal {}", other.as_raw()),
    }
}
