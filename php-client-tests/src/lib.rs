//! Drives the protocol, and the real `rr` binary, through real PHP worker processes running
//! our own goridge client (`php/Goridge.php`, written from the spec).

use ringrunner_protocol::payload::{
    encode_data_frame, encode_pid_request, encode_stop, parse_pid_reply, WorkerMessage,
};
use ringrunner_protocol::{Flags, Frame, FrameDecoder, StreamFlags};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The folder of our PHP client and worker scripts.
#[must_use]
pub fn php_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("php")
}

/// The `php` binary to run: `$PHP_BINARY`, else `php` from `PATH`.
#[must_use]
pub fn php_binary() -> String {
    std::env::var("PHP_BINARY").unwrap_or_else(|_| "php".to_owned())
}

/// What a self-check measured.
#[derive(Debug)]
pub struct SelfCheckReport {
    /// The pid the worker reported in the handshake.
    pub worker_pid: u32,
    /// Requests echoed correctly.
    pub round_trips: usize,
    /// Mean round-trip time.
    pub mean_round_trip: Duration,
}

/// A PHP worker on pipes, driven with blocking I/O and the sans-IO protocol crate.
struct PipeWorker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    decoder: FrameDecoder,
    read_buf: Vec<u8>,
}

impl PipeWorker {
    fn spawn(script: &Path) -> Result<Self, String> {
        let mut child = Command::new(php_binary())
            .arg(script)
            .env("RR_RELAY", "pipes")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", php_binary()))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        Ok(Self {
            child,
            stdin,
            stdout,
            decoder: FrameDecoder::default(),
            read_buf: vec![0; 64 * 1024],
        })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stdin
            .write_all(bytes)
            .map_err(|error| format!("write to worker: {error}"))
    }

    /// Reads until a frame is complete and hands it to `on_frame`.
    fn receive<T>(
        &mut self,
        on_frame: impl FnOnce(&Frame<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        loop {
            if let Some(frame) = self.decoder.next_frame().map_err(|e| e.to_string())? {
                return on_frame(&frame);
            }
            let read = self
                .stdout
                .read(&mut self.read_buf)
                .map_err(|e| e.to_string())?;
            if read == 0 {
                self.decoder.finish().map_err(|e| e.to_string())?;
                return Err("worker closed its stdout".into());
            }
            self.decoder.feed(&self.read_buf[..read]);
        }
    }
}

impl Drop for PipeWorker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Spawns `php workers/echo.php` on pipes, runs the pid handshake, echoes `rounds` requests
/// of every shape (context only, body only, both, binary, 1 MiB), then stops the worker with
/// the stop control frame and checks that it exits 0.
///
/// # Errors
/// A text that says which step failed.
pub fn self_check(rounds: usize) -> Result<SelfCheckReport, String> {
    let mut worker = PipeWorker::spawn(&php_dir().join("workers/echo.php"))?;
    let mut out = Vec::new();
    encode_pid_request(std::process::id(), &mut out);
    worker.send(&out)?;
    let worker_pid = worker.receive(|frame| parse_pid_reply(frame).map_err(|e| e.to_string()))?;
    if worker_pid != worker.child.id() {
        return Err(format!(
            "worker reported pid {worker_pid}, spawned {}",
            worker.child.id()
        ));
    }

    let big_body = vec![0xA5; 1 << 20];
    let shapes: [(Flags, &[u8], &[u8]); 5] = [
        (Flags::CODEC_JSON, br#"{"k":"v"}"#, b""),
        (Flags::EMPTY, b"", b"hello"),
        (Flags::CODEC_PROTO, b"\x08\xc8\x01", b"body"),
        (Flags::CODEC_RAW, &[0, 255, 10, 13], &[0, 1, 2]),
        (Flags::EMPTY, b"ctx", &big_body),
    ];
    let started = Instant::now();
    let mut round_trips = 0;
    for round in 0..rounds {
        let (codec, context, body) = shapes[round % shapes.len()];
        out.clear();
        encode_data_frame(codec, StreamFlags::EMPTY, context, body, &mut out)
            .map_err(|e| e.to_string())?;
        worker.send(&out)?;
        worker.receive(|frame| match WorkerMessage::from_frame(frame) {
            Ok(WorkerMessage::Data(data))
                if data.codec == codec && data.context == context && data.body == body =>
            {
                Ok(())
            }
            other => Err(format!("round {round}: unexpected reply {other:?}")),
        })?;
        round_trips += 1;
    }
    let mean_round_trip = started.elapsed() / u32::try_from(rounds.max(1)).unwrap_or(u32::MAX);

    out.clear();
    encode_stop(&mut out);
    worker.send(&out)?;
    let status = worker.child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("worker exited with {status} after the stop frame"));
    }
    Ok(SelfCheckReport {
        worker_pid,
        round_trips,
        mean_round_trip,
    })
}

pub mod grpc;
pub mod h2_frames;
pub mod harness;
pub mod http_client;
pub mod jobs_log;
pub mod nginx;
pub mod otlp_receiver;
pub mod pki;
pub mod python;
pub mod rabbitmq;
pub mod redis;
pub mod rpc_call;
pub mod server;
pub mod temporal_server;
