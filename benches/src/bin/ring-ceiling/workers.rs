//! The worker hop: `native-echo-worker --ping-pong` processes, each copying back the
//! fixed-size messages written to its stdin, as a PHP worker answers rr over its pipes.

use std::io;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};

/// Bytes per message each way (a small request frame and its reply).
pub const MESSAGE_BYTES: usize = 64;

/// One echo process and the two pipe ends that talk to it.
pub struct Worker {
    /// Its stdin: requests are written here.
    pub input: OwnedFd,
    /// Its stdout: replies are read here.
    pub output: OwnedFd,
    /// Killed when the benchmark ends (the pipes closing end it too).
    child: Child,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `count` echo processes (the `native-echo-worker` binary beside this one).
///
/// # Errors
/// When the binary is missing or a process cannot start.
pub fn spawn(count: usize) -> io::Result<Vec<Worker>> {
    let binary = std::env::current_exe()?.with_file_name("native-echo-worker");
    (0..count)
        .map(|_| {
            let mut child = Command::new(&binary)
                .args(["--ping-pong", &MESSAGE_BYTES.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let input = OwnedFd::from(child.stdin.take().expect("piped stdin"));
            let output = OwnedFd::from(child.stdout.take().expect("piped stdout"));
            Ok(Worker {
                input,
                output,
                child,
            })
        })
        .collect()
}
