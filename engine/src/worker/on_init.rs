//! `server.on_init` (spec pool-server §9.3): a command run once, synchronously, before any
//! pool starts. Its output goes to the `server` logger at INFO; a failure is logged and start
//! goes on unless `exit_on_error` is set.

use super::process::WorkerCommand;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `on_init` section.
#[derive(Debug, Clone)]
pub struct OnInit {
    /// The command; its `env` are the section's (keys already upper-cased).
    pub command: WorkerCommand,
    /// Kill after this long (rr's default: 60 s).
    pub exec_timeout: Duration,
    /// Make a failure fatal (rr exits 1).
    pub exit_on_error: bool,
}

/// Why `on_init` failed, when `exit_on_error` makes that fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnInitError {
    /// It could not start or exited non-zero.
    #[error("on_init was finished with errors: {0}")]
    Failed(String),
    /// It ran past `exec_timeout` and was killed.
    #[error("startup process has been killed by timeout")]
    Timeout,
}

/// Runs `on_init` to completion or timeout.
///
/// # Errors
/// Only with `exit_on_error`: the failure or the timeout.
pub fn run(on_init: &OnInit) -> Result<(), OnInitError> {
    match run_once(on_init) {
        Ok(()) => Ok(()),
        Err(error) => {
            tracing::error!(target: "server", %error, "on_init was finished with errors");
            if on_init.exit_on_error {
                Err(error)
            } else {
                Ok(())
            }
        }
    }
}

fn run_once(on_init: &OnInit) -> Result<(), OnInitError> {
    let Some((program, args)) = on_init.command.argv.split_first() else {
        return Err(OnInitError::Failed(
            "on_init command should not be empty".into(),
        ));
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // rr appends its own environment after the section's, so rr's wins on a clash (copied).
    for (key, value) in &on_init.command.env {
        if std::env::var_os(key).is_none() {
            command.env(key, value);
        }
    }
    if let Some(dir) = &on_init.command.working_dir {
        command.current_dir(dir);
    }
    if let Some((uid, gid)) = on_init.command.credentials {
        std::os::unix::process::CommandExt::uid(&mut command, uid);
        std::os::unix::process::CommandExt::gid(&mut command, gid);
    }
    let mut child = command
        .spawn()
        .map_err(|error| OnInitError::Failed(format!("{program}: {error}")))?;
    let readers = [
        child.stdout.take().map(log_lines),
        child.stderr.take().map(log_lines),
    ];
    let status = wait_with_timeout(&mut child, on_init.exec_timeout);
    for reader in readers.into_iter().flatten() {
        let _ = reader.join();
    }
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(OnInitError::Failed(format!(
            "`{}`: {status}",
            on_init.command.display()
        ))),
        None => Err(OnInitError::Timeout),
    }
}

/// Logs a stream line by line at INFO until EOF, on a thread of its own.
fn log_lines(stream: impl Read + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            tracing::info!(target: "server", "{line}");
        }
    })
}

/// Waits for exit on a pidfd with `poll`, so the timeout is exact and nothing spins; kills
/// and reaps the child when it runs out. `None` means it was killed.
fn wait_with_timeout(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let pidfd = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        });
    let Some(pidfd) = pidfd else {
        return child.wait().ok();
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
            let _ = child.wait();
            return None;
        }
        let mut fds = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        let timespec = rustix::event::Timespec::try_from(left).unwrap_or(rustix::event::Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let _ = rustix::event::poll(&mut fds, Some(&timespec));
    }
}
