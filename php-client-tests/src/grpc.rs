//! The gRPC suites' server and client: `rr serve` with a `grpc` section over the test
//! protos (`php/grpc/*.proto`) and our PHP worker (`php/grpc/worker.php`), and the
//! grpcio client script (`python/grpc_client.py`) run from the test venv with a JSON plan.

use crate::server::{free_port, RrServer};
use serde_json::{json, Value};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The folder of the test protos and the worker.
#[must_use]
pub fn grpc_dir() -> PathBuf {
    crate::php_dir().join("grpc")
}

/// A config for the grpc worker: `grpc_extra` lines under `grpc:` and `pool_extra` under
/// `grpc.pool:` (each indented), `extra` top-level sections after it.
#[must_use]
pub fn grpc_config(port: u16, grpc_extra: &str, pool_extra: &str, extra: &str) -> String {
    format!(
        "version: '3'\nserver:\n  command: \"{} {}\"\ngrpc:\n  listen: tcp://127.0.0.1:{port}\n  proto:\n    - \"{}/*.proto\"\n{grpc_extra}  pool:\n    allocate_timeout: 20s\n{pool_extra}{extra}logs:\n  level: info\n",
        crate::php_binary(),
        grpc_dir().join("worker.php").display(),
        grpc_dir().display(),
    )
}

/// A running server with a grpc listener.
#[derive(Debug)]
pub struct GrpcServer {
    /// The server.
    pub rr: RrServer,
    /// Its grpc listener.
    pub address: SocketAddr,
}

impl GrpcServer {
    /// Starts `rr serve` on [`grpc_config`] with `workers` workers and waits for rr's
    /// "grpc server was started" line.
    ///
    /// # Panics
    /// When the server does not start.
    #[must_use]
    pub fn start(grpc_extra: &str, workers: usize, extra: &str) -> Self {
        let port = free_port();
        let yaml = grpc_config(
            port,
            grpc_extra,
            &format!("    num_workers: {workers}\n"),
            extra,
        );
        let rr = RrServer::start(&yaml);
        assert!(
            rr.wait_for_line("grpc server was started", Duration::from_secs(30)),
            "{}",
            rr.output()
        );
        Self {
            rr,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Runs `calls` (see `python/grpc_client.py`) on one channel; one result each.
    #[must_use]
    pub fn call(&self, calls: &Value) -> Vec<Value> {
        finish(self.spawn(calls))
    }

    /// Starts the client on `calls` without waiting for it.
    #[must_use]
    pub fn spawn(&self, calls: &Value) -> Child {
        spawn_client(&json!({"target": self.address.to_string(), "calls": calls}))
    }
}

/// Starts the client on a whole plan (`target`, `tls`, `calls`).
///
/// # Panics
/// When the venv's python cannot be started.
#[must_use]
pub fn spawn_client(plan: &Value) -> Child {
    let script = crate::php_dir().join("../python/grpc_client.py");
    let mut child = Command::new(crate::python::venv_program("python"))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(plan.to_string().as_bytes())
        .expect("plan written");
    child
}

/// Waits for a client and reads its results.
///
/// # Panics
/// When the client fails.
#[must_use]
pub fn finish(child: Child) -> Vec<Value> {
    let output = child.wait_with_output().expect("client ran");
    assert!(
        output.status.success(),
        "grpc client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON result"))
        .collect()
}

/// The value of `key` in a result's `initial` or `trailing` metadata list.
#[must_use]
pub fn metadata<'a>(list: &'a Value, key: &str) -> Vec<&'a str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|pair| pair[0] == key)
        .filter_map(|pair| pair[1].as_str())
        .collect()
}
