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
/// How long the log thread lets lines gather after writing a batch. While it waits no
/// sender wakes it (a wake-up per line cost the hello benchmark a fifth of its throughput
/// on 2 vCPUs); lines reach the output at most this much later. At the queue's size this
/// still drains four million lines a second.
const BATCH_INTERVAL: Duration = Duration::from_millis(2);

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
                    // std's bounded sender has no send-with-timeout: while the queue is full
                    // (the output is behind) the request is retried each millisecond.
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
    /// Writes lines in batches: everything queued is gathered per output and written with
    /// one write each, then the thread waits [`BATCH_INTERVAL`] before it takes more.
    fn run(mut self, receiver: &Receiver<Message>) {
        let mut waiting_flushes = Vec::new();
        let mut batches: Vec<Vec<u8>> = self.outputs.iter().map(|_| Vec::new()).collect();
        while let Ok(first) = receiver.recv() {
            let mut next = Some(first);
            let mut lines = 0;
            while let Some(message) = next {
                match message {
                    Message::Line(line, mask) => {
                        gather(&mut batches, &line, mask);
                        lines += 1;
                    }
                    Message::Flush(done) => waiting_flushes.push(done),
                }
                // A batch is bounded: lines beyond it wait in the (bounded) queue.
                next = if lines < BATCH_LINES_MAX {
                    receiver.try_recv().ok()
                } else {
                    None
                };
            }
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                gather(&mut batches, &(self.report)(dropped), self.report_to);
            }
            for (output, batch) in self.outputs.iter_mut().zip(&mut batches) {
                if !batch.is_empty() {
                    let _ = output.write_all(batch);
                    let _ = output.flush();
                    batch.clear();
                    if batch.capacity() > BATCH_BUFFER_BYTES_MAX {
                        *batch = Vec::new();
                    }
                }
            }
            let flushed = !waiting_flushes.is_empty();
            for done in waiting_flushes.drain(..) {
                let _ = done.try_send(());
            }
            if !flushed && lines < BATCH_LINES_MAX {
                std::thread::sleep(BATCH_INTERVAL);
            }
        }
    }
}

/// Lines written in one batch at most.
const BATCH_LINES_MAX: usize = 1024;

/// A batch buffer kept between batches holds at most this much.
const BATCH_BUFFER_BYTES_MAX: usize = 1 << 20;

/// Appends `line` to the batch of every output in `mask`.
fn gather(batches: &mut [Vec<u8>], line: &[u8], mask: OutputMask) {
    for (index, batch) in batches.iter_mut().enumerate() {
        if mask & (1 << index) != 0 {
            batch.extend_from_slice(line);
        }
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
        // Pushing never waited on the blocked output.
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!queue.flush(Duration::from_millis(50)));
        drop(shut);
        assert!(queue.flush(Duration::from_secs(10)));
        let written = String::from_utf8(output.written.lock().unwrap().clone()).unwrap();
        assert!(written.starts_with("first\n"));
        // Every line was written or counted and reported (a count may be reported in more
        // than one line: the thread takes the count before each batch it writes).
        let reported: usize = written
            .lines()
            .filter_map(|line| line.strip_prefix("dropped "))
            .map(|count| count.parse::<usize>().unwrap())
            .sum();
        let kept = written.lines().filter(|l| *l == "x").count();
        assert_eq!(kept + reported, QUEUED_LINES_MAX * 2);
        // Held while the output was shut: the queue and at most one batch.
        assert!(kept <= QUEUED_LINES_MAX + BATCH_LINES_MAX, "{kept} kept");
    }
}
