//! A service's stdout and stderr into the log, a record per line (rr logs a record per pipe
//! read, which splits and merges lines at random), and the last lines kept for a start error.

use crate::aio::{Backend, Stream};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::Rc;

/// Lines kept for a start error.
const TAIL_LINES: usize = 20;
/// Bytes of a log file read back for a start error.
const TAIL_BYTES: u64 = 4096;
/// A line longer than this is logged in pieces.
const LINE_BYTES_MAX: usize = 64 * 1024;

/// The last lines a process wrote (shared by its readers and its supervisor, on one shard).
#[derive(Debug, Clone, Default)]
pub struct Tail(Rc<RefCell<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: String) {
        let mut lines = self.0.borrow_mut();
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The kept lines, joined.
    #[must_use]
    pub fn lines(&self) -> String {
        self.0
            .borrow()
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Starts a reader task for each pipe on this shard; with `name_in_log` the records'
/// logger is `service.<name>` (rr's `service_name_in_log`).
pub fn forward(
    pipes: (OwnedFd, OwnedFd),
    name: &str,
    name_in_log: bool,
    pid: u32,
    tail: &Tail,
    backend: Backend,
) {
    let logger = name_in_log.then(|| format!("service.{name}"));
    for pipe in [pipes.0, pipes.1] {
        match Stream::new(pipe, backend) {
            Ok(stream) => {
                let source = Source {
                    name: name.to_owned(),
                    logger: logger.clone(),
                    pid,
                };
                tokio::task::spawn_local(read_lines(stream, source, tail.clone()));
            }
            Err(error) => {
                tracing::error!(target: "service", name, %error, "service output cannot be read")
            }
        }
    }
}

/// Who writes: the service, its own logger name when it has one, the process.
struct Source {
    name: String,
    logger: Option<String>,
    pid: u32,
}

async fn read_lines(stream: Stream, source: Source, tail: Tail) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        let (read, returned) = stream.read(buf).await;
        buf = returned;
        let Ok(count) = read else { break };
        if count == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..count]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            emit(&line, &source, &tail);
        }
        if pending.len() > LINE_BYTES_MAX {
            emit(&std::mem::take(&mut pending), &source, &tail);
        }
    }
    if !pending.is_empty() {
        emit(&pending, &source, &tail);
    }
}

fn emit(line: &[u8], source: &Source, tail: &Tail) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let (service, pid) = (source.name.as_str(), source.pid);
    match &source.logger {
        Some(logger) => {
            tracing::info!(target: "service", logger = logger.as_str(), service, pid, "{text}");
        }
        None => tracing::info!(target: "service", service, pid, "{text}"),
    }
    tail.push(text.to_owned());
}

/// The last lines of a log file (at most the last 4 KiB).
#[must_use]
pub fn file_tail(path: &Path) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let size = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(size.saturating_sub(TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}
