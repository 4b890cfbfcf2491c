//! Starting a worker process: command, environment, working directory, user, its own process
//! group, PR_SET_PDEATHSIG, pipes, and a pidfd to track it without PID-reuse races.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use tokio::io::unix::AsyncFd;

/// How to start one worker (spec relay-protocol §7.5, §7.6).
#[derive(Debug, Clone, Default)]
pub struct WorkerCommand {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Variables added to the inherited environment, in order (later wins).
    pub env: Vec<(OsString, OsString)>,
    /// Working directory; the server's when `None`.
    pub working_dir: Option<PathBuf>,
    /// Run as this uid/gid (the server must be root).
    pub credentials: Option<(u32, u32)>,
}

impl WorkerCommand {
    /// Splits a `server.command` string on runs of spaces (no shell quoting, spec
    /// pool-server §9.1).
    #[must_use]
    pub fn from_command_line(line: &str) -> Self {
        Self {
            argv: line
                .split(' ')
                .filter(|part| !part.is_empty())
                .map(str::to_owned)
                .collect(),
            ..Self::default()
        }
    }

    /// The command line for messages.
    #[must_use]
    pub fn display(&self) -> String {
        self.argv.join(" ")
    }

    /// A `Command` for it: program and arguments, the added environment, the working
    /// directory and the credentials; the caller adds stdio and what runs before exec.
    ///
    /// # Errors
    /// An empty command.
    pub fn builder(&self) -> io::Result<Command> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "command should not be empty",
            ));
        };
        let mut builder = Command::new(program);
        builder
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.working_dir {
            builder.current_dir(dir);
        }
        if let Some((uid, gid)) = self.credentials {
            builder.uid(uid).gid(gid);
        }
        Ok(builder)
    }
}

/// Whether the relay is the worker's stdin/stdout or a socket it connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdioRelay {
    /// Frames on stdin/stdout.
    Pipes,
    /// stdin from /dev/null, stdout discarded (spec relay-protocol §7.3).
    Socket,
}

/// A started worker process and the descriptors the server keeps.
#[derive(Debug)]
pub struct SpawnedProcess {
    /// The child (reaped through it).
    pub child: Child,
    /// Its pid.
    pub pid: u32,
    /// A pidfd: readable when the process exits.
    pub pidfd: OwnedFd,
    /// Server → worker frames (pipes relay).
    pub relay_write: Option<OwnedFd>,
    /// Worker → server frames (pipes relay).
    pub relay_read: Option<OwnedFd>,
    /// The worker's stderr.
    pub stderr: OwnedFd,
}

/// Starts `command`.
///
/// # Errors
/// An empty command, a program that cannot be started, or a failed `pidfd_open`.
pub fn spawn(command: &WorkerCommand, relay: StdioRelay) -> io::Result<SpawnedProcess> {
    let mut builder = command.builder()?;
    builder.stderr(Stdio::piped());
    // Terminal signals reach only the server; workers are ended by stop frames or SIGKILL.
    builder.process_group(0);
    match relay {
        StdioRelay::Pipes => builder.stdin(Stdio::piped()).stdout(Stdio::piped()),
        StdioRelay::Socket => builder.stdin(Stdio::null()).stdout(Stdio::null()),
    };
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe raw syscalls (prctl, getppid) through rustix; it allocates nothing
    // (its errors are raw OS codes, which `io::Error` holds inline) and touches no lock.
    unsafe {
        builder.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The parent may have died between fork and prctl: then nobody would kill us.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::SRCH.raw_os_error(),
                ));
            }
            Ok(())
        });
    }
    let mut child = builder.spawn()?;
    let pid = child.id();
    let pidfd = match pidfd_of(pid) {
        Ok(fd) => fd,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    };
    let relay_write = child.stdin.take().map(OwnedFd::from);
    let relay_read = child.stdout.take().map(OwnedFd::from);
    let stderr = OwnedFd::from(child.stderr.take().expect("stderr is piped"));
    Ok(SpawnedProcess {
        child,
        pid,
        pidfd,
        relay_write,
        relay_read,
        stderr,
    })
}

/// A pidfd for `pid` (signals through it never reach a recycled pid).
///
/// # Errors
/// As `pidfd_open(2)`.
pub fn pidfd_of(pid: u32) -> io::Result<OwnedFd> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| io::Error::other("invalid pid"))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::NONBLOCK,
    )?)
}

/// Registers a pidfd with the shard's reactor: it turns readable when the process exits.
///
/// # Errors
/// When the reactor refuses it.
pub fn watch_exit(pidfd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes the OwnedFd by value; an OwnedFd is open until dropped and
    // always returns the same descriptor, which is what registration requires.
    unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// Waits for `exit` (the child's pidfd) to turn readable, then reaps the child without
/// blocking the shard (`Child::wait` would, for as long as a killed process takes to die: a
/// process stuck in uninterruptible I/O takes long). None if the pidfd fails.
pub async fn reap(child: &mut Child, exit: &AsyncFd<OwnedFd>) -> Option<std::process::ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => match exit.readable().await {
                Ok(mut ready) => ready.clear_ready(),
                Err(_) => return None,
            },
            Err(_) => return None,
        }
    }
}

/// Sends SIGKILL through the pidfd: never hits a recycled pid.
pub fn kill(pidfd: &OwnedFd) {
    let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
}

/// Resident set size of `pid` in bytes, from `/proc/PID/statm` (spec pool-server §11.2).
#[must_use]
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages * rustix::param::page_size() as u64)
}

/// The fields of `/proc/<process>/stat` after the command name (`process` a pid, or `self`):
/// the state is `[0]`, utime `[11]`, stime `[12]`, starttime `[19]`, vsize `[20]`, rss `[21]`.
#[must_use]
pub fn stat_fields(process: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    Some(
        stat.get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// The system's boot time, Unix seconds (`btime` in `/proc/stat`).
#[must_use]
pub fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// CPU time (user + system) `pid` has used, in seconds, from `/proc/PID/stat`.
#[must_use]
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let fields = stat_fields(&pid.to_string())?;
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_of_this_process_are_read() {
        let spent = cpu_seconds(std::process::id()).unwrap();
        assert!((0.0..1e6).contains(&spent));
        assert_eq!(cpu_seconds(0), None);
    }

    #[test]
    fn command_line_splits_on_runs_of_spaces() {
        let command = WorkerCommand::from_command_line("php  worker.php --x=1 ");
        assert_eq!(command.argv, ["php", "worker.php", "--x=1"]);
        assert!(spawn(&WorkerCommand::default(), StdioRelay::Pipes).is_err());
    }

    #[test]
    fn spawned_process_has_its_own_group_and_a_pidfd() {
        let command = WorkerCommand {
            argv: vec!["sleep".into(), "30".into()],
            ..WorkerCommand::default()
        };
        let mut process = spawn(&command, StdioRelay::Pipes).unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", process.pid)).unwrap();
        let pgid: u32 = stat
            .rsplit(") ")
            .next()
            .unwrap()
            .split(' ')
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(pgid, process.pid);
        assert!(rss_bytes(process.pid).unwrap() > 0);
        kill(&process.pidfd);
        let status = process.child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }
}
