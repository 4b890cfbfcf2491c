//! Starting a service's process and finding processes again: the spawn (rr's rules: argv
//! split on spaces, rr's environment plus `env`, its own process group, or a new session for
//! PID-file daemons), pidfds for our own children, PID files and the liveness of processes we
//! did not start (with a guard against PID reuse).

use super::config::ServiceSpec;
use crate::worker::process::{self as worker_process, WorkerCommand};
use rustix::process::{Pid, Signal};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};

/// A process we started.
#[derive(Debug)]
pub struct Spawned {
    /// The child (reaped through it).
    pub child: Child,
    /// Its pid.
    pub pid: u32,
    /// Readable when it exits; signals go through it (no PID-reuse race).
    pub pidfd: OwnedFd,
    /// Its stdout and stderr when they go to the rr log (none with `log_file`).
    pub output: Option<(OwnedFd, OwnedFd)>,
    /// The command as run: resolved program path and arguments (what rr reports).
    pub command: String,
}

/// Starts one process of `spec`.
///
/// # Errors
/// An empty command, a program that cannot be started, a working directory or log file
/// that cannot be used, credentials that cannot be taken.
pub fn spawn(spec: &ServiceSpec) -> io::Result<Spawned> {
    let command = WorkerCommand {
        env: spec.env.iter().map(|(k, v)| (k.into(), v.into())).collect(),
        working_dir: spec.working_dir.clone(),
        credentials: spec.credentials,
        ..WorkerCommand::from_command_line(&spec.command)
    };
    let mut builder = command.builder()?;
    builder.stdin(Stdio::null());
    let piped = match &spec.log_file {
        Some(path) => {
            let file = open_log(path)?;
            builder.stdout(file.try_clone()?).stderr(file);
            false
        }
        None => {
            builder.stdout(Stdio::piped()).stderr(Stdio::piped());
            true
        }
    };
    if spec.pid_file.is_some() {
        // A daemon gets a session of its own: detached from rr's terminal, and the leader of
        // its process group.
        // SAFETY: runs in the forked child before exec; setsid is one async-signal-safe
        // system call and the closure allocates nothing.
        unsafe {
            builder.pre_exec(|| rustix::process::setsid().map(drop).map_err(io::Error::from));
        }
    } else {
        // Terminal signals aimed at rr do not reach services (rr's setpgid).
        builder.process_group(0);
    }
    let mut child = builder.spawn()?;
    let pid = child.id();
    let pidfd = match worker_process::pidfd_of(pid) {
        Ok(fd) => fd,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    };
    let output = if piped {
        let stdout = child.stdout.take().map(OwnedFd::from);
        let stderr = child.stderr.take().map(OwnedFd::from);
        stdout.zip(stderr)
    } else {
        None
    };
    let (program, args) = command
        .argv
        .split_first()
        .expect("the builder refused an empty command");
    let command = std::iter::once(resolve_program(program))
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Spawned {
        child,
        pid,
        pidfd,
        output,
        command,
    })
}

/// Opens `path` for appending (mode 0640, parent folders made 0755).
fn open_log(path: &Path) -> io::Result<std::fs::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

/// The program as Go's exec resolves it through PATH (for the reported command).
fn resolve_program(program: &str) -> String {
    if program.contains('/') {
        return program.to_owned();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
        .map_or_else(|| program.to_owned(), |path| path.display().to_string())
}

/// Sends `signal` through our child's pidfd; false when it has exited already.
pub fn signal_child(pidfd: &OwnedFd, signal: Signal) -> bool {
    rustix::process::pidfd_send_signal(pidfd, signal).is_ok()
}

/// How a signal to a process we did not start went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Delivered.
    Delivered,
    /// No such process.
    Gone,
    /// Not ours to signal.
    Denied,
}

/// Sends `signal` to `pid`, or to the process group it leads when `group` (one that leads
/// none is signalled alone: `kill(-pid)` would miss it).
pub fn signal_pid(pid: u32, signal: Signal, group: bool) -> Sent {
    let Some(target) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Sent::Gone;
    };
    let sent = if group && rustix::process::getpgid(Some(target)).ok() == Some(target) {
        rustix::process::kill_process_group(target, signal)
    } else {
        rustix::process::kill_process(target, signal)
    };
    match sent {
        Ok(()) => Sent::Delivered,
        Err(rustix::io::Errno::PERM) => Sent::Denied,
        Err(_) => Sent::Gone,
    }
}

/// Whether `pid` (a process we did not start) is alive: it exists (even if another user's)
/// and is not a zombie.
#[must_use]
pub fn alive(pid: u32) -> bool {
    let Some(target) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    match rustix::process::test_kill_process(target) {
        Ok(()) | Err(rustix::io::Errno::PERM) => stat_state(pid).is_some_and(|state| state != 'Z'),
        Err(_) => false,
    }
}

/// What a PID file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidFile {
    /// There is none.
    Missing,
    /// It names this live process.
    Live(u32),
    /// It exists but names no live process (or garbage, or a recycled pid).
    Stale,
    /// It cannot be read (permissions).
    Unreadable(String),
}

/// Reads `path`: the first line, a decimal pid in 2..=4194304 that is not rr's own, alive,
/// and started no later than 2 s after the file was written (a later process got a recycled
/// pid).
#[must_use]
pub fn read_pid_file(path: &Path) -> PidFile {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return PidFile::Missing,
        Err(error) => {
            return PidFile::Unreadable(format!("cannot read pid file {}: {error}", path.display()))
        }
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<u32>().ok())
    else {
        tracing::warn!(target: "service", path = %path.display(), "invalid pid file");
        return PidFile::Stale;
    };
    if !(2..=4_194_304).contains(&pid) || pid == std::process::id() || !alive(pid) {
        return PidFile::Stale;
    }
    if started_after_file(pid, path) {
        return PidFile::Stale;
    }
    PidFile::Live(pid)
}

/// True when `pid` started more than 2 s after `path` was last written.
fn started_after_file(pid: u32, path: &Path) -> bool {
    let Some(written) = std::fs::metadata(path).ok().and_then(|m| m.modified().ok()) else {
        return false;
    };
    let Some(started) = start_time(pid) else {
        return false;
    };
    started > written + std::time::Duration::from_secs(2)
}

/// When `pid` started (boot time + field 22 of /proc/PID/stat).
fn start_time(pid: u32) -> Option<std::time::SystemTime> {
    let ticks: u64 = worker_process::stat_fields(&pid.to_string())?
        .get(19)?
        .parse()
        .ok()?;
    let hz = rustix::param::clock_ticks_per_second();
    Some(
        std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(worker_process::boot_time()?)
            + std::time::Duration::from_millis(ticks * 1000 / hz),
    )
}

/// The state letter of `pid` (`R`, `S`, `Z` …).
fn stat_state(pid: u32) -> Option<char> {
    worker_process::stat_fields(&pid.to_string())?
        .first()?
        .chars()
        .next()
}

/// The number on a PID file's first line, whether or not that process lives.
#[must_use]
pub fn pid_in_file(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Removes a PID file if it still names `pid` (never one a new instance wrote), or any
/// content when `pid` is None; a failure is a warning.
pub fn remove_pid_file(path: &Path, pid: Option<u32>) {
    if pid.is_some_and(|pid| pid_in_file(path) != Some(pid)) {
        return;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(target: "service", path = %path.display(), %error, "cannot remove pid file")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rr-service-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("x.pid")
    }

    /// A live process of ours that is not a daemon; killed when dropped.
    struct Sleeper(Child);

    impl Sleeper {
        fn start() -> Self {
            Self(Command::new("sleep").arg("30").spawn().unwrap())
        }

        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn pid_files_are_read_strictly() {
        let path = scratch("read");
        assert_eq!(read_pid_file(&path), PidFile::Missing);
        for garbage in ["", "abc\n", "-5\n", "1\n", "99999999\n"] {
            std::fs::write(&path, garbage).unwrap();
            assert_eq!(read_pid_file(&path), PidFile::Stale, "{garbage:?}");
        }
        std::fs::write(&path, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(read_pid_file(&path), PidFile::Stale, "rr's own pid");
        let sleeper = Sleeper::start();
        std::fs::write(&path, format!("{}\nsecond line\n", sleeper.pid())).unwrap();
        assert_eq!(read_pid_file(&path), PidFile::Live(sleeper.pid()));
        remove_pid_file(&path, Some(sleeper.pid() + 1));
        assert!(path.exists(), "a file naming another pid stays");
        drop(sleeper);
        assert_eq!(read_pid_file(&path), PidFile::Stale);
        remove_pid_file(&path, None);
        assert!(!path.exists());
    }

    #[test]
    fn a_pid_file_older_than_its_process_is_stale() {
        let path = scratch("reuse");
        let sleeper = Sleeper::start();
        std::fs::write(&path, format!("{}\n", sleeper.pid())).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(read_pid_file(&path), PidFile::Stale);
    }
}
