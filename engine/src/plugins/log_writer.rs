//! The log thread: lines formatted on the threads that log (the shards among them) are
//! queued here and written by one thread of their own, so a slow or full output (a pipe
//! nobody reads, a container log driver that polls) never blocks a shard. The queue is
//! bounded; a line that does not fit is dropped and counted, and the count is reported in
//! the log itself as soon as the output drains.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// Which outputs a line goes to: bit `i` for output `i`.
pub type OutputMask = u32;
/// Most distinct outputs (stdout, stderr, files) one configuration may name.
pub const OUTPUTS_MAX: usize = OutputMask::BITS as usize;
/// Lines the queue holds before it drops (at ~200 bytes a line, about 2 MiB).
pub const QUEUED_LINES_MAX: usize = 8192;

enum Message {
    Line(Vec<u8>, OutputMask),
    /// Write and flush everything queued before, then answer.
    Flush(SyncSender<()>),
}

/// Formats the report of `n` dropped lines, in the root logger's shape.
pub type DropReport = Box<dyn Fn(u64) -> Vec<u8> + Send>;

/// The sending side, shared by every thread that logs.
#[derive(Debug)]
pub struct LogQueue {
    sender: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl LogQueue {
    /// Starts the log thread over `outputs`; dropped lines are reported to `report_to`.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn start(
        outputs: Vec<Box<dyn Write + Send>>,
        report_to: OutputMask,
        report: DropReport,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel(QUEUED_LINES_MAX);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = LogThread {
            outputs,
            report_to,
            report,
            dropped: Arc::clone(&dropped),
        };
        std::thread::Builder::new()
            .name("rr-logs".into())
            .spawn(move || writer.run(&receiver))?;
        Ok(Self { sender, dropped })
    }

    /// Queues a line without ever waiting: when the queue is full the line is dropped and
    /// counted.
    pub fn push(&self, line: Vec<u8>, outputs: OutputMask) {
        match self.sender.try_send(Message::Line(line, outputs)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped and not reported yet.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` for every line queued so far to be written (at exit: an
    /// output that does not drain cannot hold the process).
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done, finished) = mpsc::sync_channel(1);
        let deadline = std::time::Instant::now() + timeout;
        let mut message = Message::Flush(done);
        loop {
            match self.sender.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(returned)) => {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    message = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        finished.recv_timeout(left).is_ok()
    }
}

struct LogThread {
    outputs: Vec<Box<dyn Write + Send>>,
    report_to: OutputMask,
    report: DropReport,
    dropped: Arc<AtomicU64>,
}

impl LogThread {
    /// Writes lines as they come, in batches: everything queued is written before the
    /// outputs are flushed once.
    fn run(mut self, receiver: &Receiver<Message>) {
        let mut waiting_flushes = Vec::new();
        while let Ok(first) = receiver.recv() {
            let mut dirty: OutputMask = 0;
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Message::Line(line, mask) => dirty |= self.write(&line, mask),
                    Message::Flush(done) => waiting_flushes.push(done),
                }
                next = receiver.try_recv().ok();
            }
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                let line = (self.report)(dropped);
                dirty |= self.write(&line, self.report_to);
            }
            for (index, output) in self.outputs.iter_mut().enumerate() {
                if dirty & (1 << index) != 0 {
                    let _ = output.flush();
                }
            }
            for done in waiting_flushes.drain(..) {
                let _ = done.try_send(());
            }
        }
    }

    fn write(&mut self, line: &[u8], mask: OutputMask) -> OutputMask {
        for (index, output) in self.outputs.iter_mut().enumerate() {
            if mask & (1 << index) != 0 {
                let _ = output.write_all(line);
            }
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An output the test can look into, and hold shut (a pipe nobody reads).
    #[derive(Clone, Default)]
    struct Held {
        written: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Held {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_output_never_blocks_the_logger_and_drops_are_reported() {
        let output = Held::default();
        let report: DropReport = Box::new(|n| format!("dropped {n}\n").into_bytes());
        let queue = LogQueue::start(vec![Box::new(output.clone())], 1, report).unwrap();
        queue.push(b"first\n".to_vec(), 1);
        assert!(queue.flush(Duration::from_secs(5)));
        let shut = output.gate.lock().unwrap();
        let started = std::time::Instant::now();
        for _ in 0..QUEUED_LINES_MAX * 2 {
            queue.push(b"x\n".to_vec(), 1);
        }
        // Pushing never waited on the blocked output, and the overflow was counted.
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(queue.dropped() >= QUEUED_LINES_MAX as u64 - 1);
        assert!(!queue.flush(Duration::from_millis(50)));
        drop(shut);
        assert!(queue.flush(Duration::from_secs(10)));
        let written = String::from_utf8(output.written.lock().unwrap().clone()).unwrap();
        assert!(written.starts_with("first\n"));
        let report = written.lines().find(|l| l.starts_with("dropped ")).unwrap();
        let reported: usize = report["dropped ".len()..].parse().unwrap();
        let kept = written.lines().filter(|l| *l == "x").count();
        assert_eq!(kept + reported, QUEUED_LINES_MAX * 2);
    }
}
