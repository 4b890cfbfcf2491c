//! A daemon we did not start (adopted from its PID file, or forked by a launcher that has
//! exited): held by a pidfd from the moment it is found, so that its exit is an event and a
//! signal can only reach that very process, never one that got its pid after it.

use super::config::ServiceSpec;
use super::process::{self, PidFile, Sent};
use super::record::{Phase, ProcessRecord};
use super::stop::signal_name;
use super::supervisor::{note_pid_change, RunEnd, AFTER_KILL, DAEMON_CHECK};
use crate::worker::process as worker_process;
use rustix::process::{Pid, Signal};
use std::os::fd::OwnedFd;
use std::path::Path;
use tokio::io::unix::AsyncFd;

/// A live process held by its pidfd.
#[derive(Debug)]
pub(super) struct Daemon {
    pid: u32,
    /// Readable once the process has exited; signals go through it.
    exit: AsyncFd<OwnedFd>,
}

impl Daemon {
    /// Holds `pid` if the PID file at `path` names it as a live process, checked again after
    /// the pidfd is open: the checks then speak of the process the pidfd holds, not of one
    /// that got the pid between the read and the open.
    pub(super) fn from_pid_file(path: &Path, pid: u32) -> Option<Self> {
        let pidfd = worker_process::pidfd_of(pid).ok()?;
        if process::read_pid_file(path) != PidFile::Live(pid) {
            return None;
        }
        let exit = worker_process::watch_exit(pidfd).ok()?;
        Some(Self { pid, exit })
    }

    /// The daemon `pid_file` names, when that is a live process other than `pid` (our
    /// child, or the daemon held so far).
    pub(super) fn other_than(pid_file: &Path, pid: u32) -> Option<Self> {
        match process::read_pid_file(pid_file) {
            PidFile::Live(named) if named != pid => Self::from_pid_file(pid_file, named),
            _ => None,
        }
    }

    /// Its pid.
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it has exited (its pidfd reads as ready), without waiting.
    pub(super) fn exited(&self) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            self.exit.get_ref(),
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // An error polling our own descriptor cannot be told from an exit: say "not yet",
        // and the exit event (or the stop's SIGKILL wait) decides.
        rustix::event::poll(&mut fds, Some(&zero)).is_ok_and(|ready| ready > 0)
    }

    /// Waits until it has exited.
    pub(super) async fn wait_exit(&self) {
        loop {
            match self.exit.readable().await {
                Ok(mut ready) if !self.exited() => ready.clear_ready(),
                _ => return,
            }
        }
    }

    /// Sends `signal` to it through its pidfd, or to the process group it leads when
    /// `group` (`kill_mode: group`). A daemon that leads no group (it forked again after
    /// `setsid`) is signalled alone: `kill(-pid)` would miss it (ESRCH) or hit another
    /// group. `Gone` only when the pidfd says it has exited.
    pub(super) fn signal(&self, signal: Signal, group: bool) -> Sent {
        let pid = i32::try_from(self.pid).ok().and_then(Pid::from_raw);
        let leader = pid.filter(|pid| rustix::process::getpgid(Some(*pid)).ok() == Some(*pid));
        let sent = match leader {
            // Checked alive through the pidfd first: its group id is not a recycled one.
            Some(leader) if group && !self.exited() => {
                rustix::process::kill_process_group(leader, signal)
            }
            _ => rustix::process::pidfd_send_signal(self.exit.get_ref(), signal),
        };
        match sent {
            Ok(()) => Sent::Delivered,
            Err(rustix::io::Errno::PERM) => Sent::Denied,
            Err(_) if self.exited() => Sent::Gone,
            // The group went between the check and the kill: the daemon itself, then.
            Err(_) => match rustix::process::pidfd_send_signal(self.exit.get_ref(), signal) {
                Ok(()) => Sent::Delivered,
                Err(rustix::io::Errno::PERM) => Sent::Denied,
                Err(_) => Sent::Gone,
            },
        }
    }
}

/// Watches a daemon that is not our child: its exit is an event (pidfd); its PID file is
/// read every [`DAEMON_CHECK`] and, while the daemon lives, a file naming another live
/// process is followed (a daemon that re-forked). Once the daemon has exited, whatever its
/// file names is not followed: that pid may be anyone's.
pub(super) async fn watch_daemon(
    spec: &ServiceSpec,
    record: &ProcessRecord,
    daemon: Daemon,
) -> RunEnd {
    let mut daemon = daemon;
    loop {
        tokio::select! {
            () = tokio::time::sleep(DAEMON_CHECK) => {
                if !daemon.exited() {
                    let successor = spec.pid_file.as_deref().and_then(|path| Daemon::other_than(path, daemon.pid));
                    if let Some(successor) = successor {
                        note_pid_change(spec, record, successor.pid);
                        daemon = successor;
                    }
                }
            }
            () = daemon.wait_exit() => {
                if let Some(pid_file) = &spec.pid_file {
                    process::remove_pid_file(pid_file, Some(daemon.pid));
                }
                tracing::error!(target: "service", name = %spec.name, pid = daemon.pid, "daemon is gone");
                return RunEnd::Exited { status: "daemon is gone".into(), failed: true };
            }
            () = record.stop_wanted() => return stop_daemon(spec, record, &daemon).await,
        }
    }
}

/// Stops a process we did not start: its signal, its exit awaited on its pidfd for
/// `timeout_stop_sec`, then SIGKILL and [`AFTER_KILL`]. Reported stopped only once its
/// pidfd says it has exited.
pub(super) async fn stop_daemon(
    spec: &ServiceSpec,
    record: &ProcessRecord,
    daemon: &Daemon,
) -> RunEnd {
    record.update(|info| info.phase = Phase::Stopping);
    let pid = daemon.pid;
    match daemon.signal(spec.stop_signal, spec.kill_group) {
        Sent::Gone => {}
        Sent::Denied => {
            let reason = format!(
                "permission denied sending {} to pid {pid}",
                signal_name(spec.stop_signal)
            );
            tracing::error!(target: "service", name = %spec.name, "{reason}");
            return RunEnd::Broken(reason);
        }
        Sent::Delivered => {
            if tokio::time::timeout(spec.timeout_stop, daemon.wait_exit())
                .await
                .is_err()
            {
                tracing::warn!(target: "service", name = %spec.name, pid, "did not stop in time, sending SIGKILL");
                let _ = daemon.signal(Signal::KILL, spec.kill_group);
                if tokio::time::timeout(AFTER_KILL, daemon.wait_exit())
                    .await
                    .is_err()
                {
                    return RunEnd::Broken(format!("process {pid} survived SIGKILL"));
                }
            }
        }
    }
    if let Some(pid_file) = &spec.pid_file {
        process::remove_pid_file(pid_file, Some(pid));
    }
    tracing::info!(target: "service", name = %spec.name, pid, "service was stopped");
    RunEnd::Stopped
}
