//! The log thread: lines formatted on the threads that log (the shards among them) are
//! queued here and written by one thread of their own, so a slow or full output (a pipe
//! nobody reads, a container log driver that polls) never blocks a shard.
//!
//! The queue is bounded in lines and in bytes ([`QUEUED_LINES_MAX`], [`QUEUED_BYTES_MAX`]);
//! a line that does not fit is dropped. Dropped lines and bytes and failed writes (a full
//! disk) are counted in [`LogCounters`] (the metrics plugin exports them) and reported, at
//! most once per [`LOSS_REPORT_INTERVAL`] and at each flush, in the log itself and on a
//! warning output (stderr, where the log does not already go).

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which outputs a line goes to: bit `i` for output `i`.
pub type OutputMask = u32;
/// Most distinct outputs (stdout, stderr, files) one configuration may name.
pub const OUTPUTS_MAX: usize = OutputMask::BITS as usize;
/// Lines the queue holds before it drops.
pub const QUEUED_LINES_MAX: usize = 8192;
/// Bytes of line buffers the queue holds before it drops: a flood of long lines waits in at
/// most this much memory (8,192 lines of 64 KiB would be 512 MiB).
pub const QUEUED_BYTES_MAX: usize = 4 << 20;
/// Losses are reported at most this often (and at each flush): a full disk is a warning
/// every ten seconds, not one per line.
pub const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(10);
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

/// What the log has lost since the process started.
#[derive(Debug, Default)]
pub struct LogCounters {
    dropped_lines: AtomicU64,
    dropped_bytes: AtomicU64,
    write_errors: AtomicU64,
}

/// A reading of [`LogCounters`], or the difference of two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossCounts {
    /// Lines dropped because the queue was full.
    pub dropped_lines: u64,
    /// Their bytes.
    pub dropped_bytes: u64,
    /// Writes (or flushes) to an output that failed; what they carried is lost.
    pub write_errors: u64,
}

impl LogCounters {
    /// The counts now.
    #[must_use]
    pub fn read(&self) -> LossCounts {
        LossCounts {
            dropped_lines: self.dropped_lines.load(Ordering::Relaxed),
            dropped_bytes: self.dropped_bytes.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
        }
    }

    fn count_drop(&self, bytes: usize) {
        self.dropped_lines.fetch_add(1, Ordering::Relaxed);
        self.dropped_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl LossCounts {
    fn since(self, earlier: Self) -> Self {
        Self {
            dropped_lines: self.dropped_lines.saturating_sub(earlier.dropped_lines),
            dropped_bytes: self.dropped_bytes.saturating_sub(earlier.dropped_bytes),
            write_errors: self.write_errors.saturating_sub(earlier.write_errors),
        }
    }
}

/// A loss report's content: the losses since the last report, and the last write error.
#[derive(Debug)]
pub struct LossReport<'a> {
    /// Since the last report.
    pub lost: LossCounts,
    /// The last failed write's error, when writes failed.
    pub last_error: Option<&'a str>,
}

/// Formats a loss report, in the root logger's shape.
pub type DropReport = Box<dyn Fn(&LossReport<'_>) -> Vec<u8> + Send>;

/// Where losses are reported.
pub struct LossReporting {
    /// The outputs of the root logger.
    pub report_to: OutputMask,
    /// Written to as well, directly (stderr when no root output is stderr).
    pub warn_to: Option<Box<dyn Write + Send>>,
    /// The report's line.
    pub format: DropReport,
}

impl std::fmt::Debug for LossReporting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LossReporting")
            .field("report_to", &self.report_to)
            .field("warn_to", &self.warn_to.is_some())
            .finish_non_exhaustive()
    }
}

/// The sending side, shared by every thread that logs.
#[derive(Debug)]
pub struct LogQueue {
    sender: SyncSender<Message>,
    /// Capacity of the line buffers in the queue.
    queued_bytes: Arc<AtomicUsize>,
    counters: Arc<LogCounters>,
}

impl LogQueue {
    /// Starts the log thread over `outputs`; losses are counted in `counters` and reported
    /// as `reporting` says.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn start(
        outputs: Vec<Box<dyn Write + Send>>,
        reporting: LossReporting,
        counters: Arc<LogCounters>,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel(QUEUED_LINES_MAX);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let writer = LogThread {
            batches: outputs.iter().map(|_| Vec::new()).collect(),
            outputs,
            reporting,
            counters: Arc::clone(&counters),
            queued_bytes: Arc::clone(&queued_bytes),
            reported: LossCounts::default(),
            last_report: None,
            last_error: None,
        };
        std::thread::Builder::new()
            .name("rr-logs".into())
            .spawn(move || writer.run(&receiver))?;
        Ok(Self {
            sender,
            queued_bytes,
            counters,
        })
    }

    /// Queues a line without ever waiting: when the queue is full (in lines or bytes) the
    /// line is dropped and counted.
    pub fn push(&self, line: Vec<u8>, outputs: OutputMask) {
        let size = line.capacity();
        let before = self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if before.saturating_add(size) > QUEUED_BYTES_MAX {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.counters.count_drop(line.len());
            return;
        }
        match self.sender.try_send(Message::Line(line, outputs)) {
            Ok(()) => {}
            Err(TrySendError::Full(message) | TrySendError::Disconnected(message)) => {
                self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                if let Message::Line(line, _) = message {
                    self.counters.count_drop(line.len());
                }
            }
        }
    }

    /// What the log has lost so far.
    #[must_use]
    pub fn losses(&self) -> LossCounts {
        self.counters.read()
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
    /// Per output, the lines of the batch being gathered.
    batches: Vec<Vec<u8>>,
    reporting: LossReporting,
    counters: Arc<LogCounters>,
    queued_bytes: Arc<AtomicUsize>,
    /// The counts as of the last report.
    reported: LossCounts,
    last_report: Option<Instant>,
    last_error: Option<String>,
}

/// What the log thread waits for next.
enum Next {
    Message(Message),
    /// Nothing came in, and losses are due to be reported.
    ReportDue,
    Closed,
}

impl LogThread {
    /// Writes lines in batches: everything queued is gathered per output and written with
    /// one write each, then the thread waits [`BATCH_INTERVAL`] before it takes more.
    fn run(mut self, receiver: &Receiver<Message>) {
        let mut waiting_flushes = Vec::new();
        loop {
            let first = match self.next_message(receiver) {
                Next::Message(message) => message,
                Next::ReportDue => {
                    self.report_losses();
                    continue;
                }
                Next::Closed => break,
            };
            let full = self.gather_batch(first, receiver, &mut waiting_flushes);
            self.write_batches();
            let flushed = !waiting_flushes.is_empty();
            // A flush (at exit, or a test's) writes out the losses counted so far too.
            if flushed || self.report_due() {
                self.report_losses();
            }
            for done in waiting_flushes.drain(..) {
                let _ = done.try_send(());
            }
            if !flushed && !full {
                std::thread::sleep(BATCH_INTERVAL);
            }
        }
    }

    /// The next message; while losses wait for their report, no longer than until it is
    /// due (a full disk is reported even when nothing more is logged).
    fn next_message(&self, receiver: &Receiver<Message>) -> Next {
        if self.counters.read() == self.reported {
            return receiver.recv().map_or(Next::Closed, Next::Message);
        }
        let until_due = self.last_report.map_or(Duration::ZERO, |at| {
            (at + LOSS_REPORT_INTERVAL).saturating_duration_since(Instant::now())
        });
        match receiver.recv_timeout(until_due) {
            Ok(message) => Next::Message(message),
            Err(RecvTimeoutError::Timeout) => Next::ReportDue,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }

    /// Gathers `first` and what else is queued, up to a batch's bounds; true when a bound
    /// stopped it (more may be waiting).
    fn gather_batch(
        &mut self,
        first: Message,
        receiver: &Receiver<Message>,
        waiting_flushes: &mut Vec<SyncSender<()>>,
    ) -> bool {
        let mut next = Some(first);
        let (mut lines, mut bytes) = (0, 0);
        while let Some(message) = next {
            match message {
                Message::Line(line, mask) => {
                    gather(&mut self.batches, &line, mask);
                    lines += 1;
                    bytes += line.len();
                    self.queued_bytes
                        .fetch_sub(line.capacity(), Ordering::Relaxed);
                }
                Message::Flush(done) => waiting_flushes.push(done),
            }
            // A batch is bounded: lines beyond it wait in the (bounded) queue.
            if lines >= BATCH_LINES_MAX || bytes >= BATCH_BUFFER_BYTES_MAX {
                return true;
            }
            next = receiver.try_recv().ok();
        }
        false
    }

    /// Writes each output's batch; a failed write is counted, its lines are lost.
    fn write_batches(&mut self) {
        for (output, batch) in self.outputs.iter_mut().zip(&mut self.batches) {
            if batch.is_empty() {
                continue;
            }
            if let Err(error) = output.write_all(batch).and_then(|()| output.flush()) {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                self.last_error = Some(error.to_string());
            }
            batch.clear();
            if batch.capacity() > BATCH_BUFFER_BYTES_MAX {
                *batch = Vec::new();
            }
        }
    }

    /// Losses wait to be reported and the last report is [`LOSS_REPORT_INTERVAL`] old.
    fn report_due(&self) -> bool {
        self.counters.read() != self.reported
            && self
                .last_report
                .is_none_or(|at| at.elapsed() >= LOSS_REPORT_INTERVAL)
    }

    /// Reports the losses since the last report to the root logger's outputs and the
    /// warning output. The report's own failed write is reported the next time.
    fn report_losses(&mut self) {
        let now = self.counters.read();
        let lost = now.since(self.reported);
        if lost == LossCounts::default() {
            return;
        }
        self.reported = now;
        self.last_report = Some(Instant::now());
        let line = (self.reporting.format)(&LossReport {
            lost,
            last_error: self.last_error.as_deref().filter(|_| lost.write_errors > 0),
        });
        gather(&mut self.batches, &line, self.reporting.report_to);
        self.write_batches();
        if let Some(warn_to) = &mut self.reporting.warn_to {
            let _ = warn_to.write_all(&line).and_then(|()| warn_to.flush());
        }
    }
}

/// Lines written in one batch at most.
const BATCH_LINES_MAX: usize = 1024;

/// A batch gathers at most about this much (a line more); a batch buffer kept between
/// batches holds at most this much.
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

    /// An output whose every write fails as a full disk does.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(28))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Reports as `dropped <lines> <bytes> failed <writes> <error>` lines.
    fn reporting(report_to: OutputMask, warn_to: Option<Held>) -> LossReporting {
        LossReporting {
            report_to,
            warn_to: warn_to.map(|held| Box::new(held) as Box<dyn Write + Send>),
            format: Box::new(|report| {
                let lost = report.lost;
                format!(
                    "dropped {} {} failed {} {}\n",
                    lost.dropped_lines,
                    lost.dropped_bytes,
                    lost.write_errors,
                    report.last_error.unwrap_or("-")
                )
                .into_bytes()
            }),
        }
    }

    fn text(output: &Held) -> String {
        String::from_utf8(output.written.lock().unwrap().clone()).unwrap()
    }

    /// The `dropped` reports' counts of lines, summed.
    fn reported_drops(text: &str) -> usize {
        text.lines()
            .filter_map(|line| line.strip_prefix("dropped "))
            .map(|rest| rest.split(' ').next().unwrap().parse::<usize>().unwrap())
            .sum()
    }

    #[test]
    fn a_blocked_output_never_blocks_the_logger_and_drops_are_reported() {
        let output = Held::default();
        let counters = Arc::new(LogCounters::default());
        let queue = LogQueue::start(
            vec![Box::new(output.clone())],
            reporting(1, None),
            Arc::clone(&counters),
        )
        .unwrap();
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
        let written = text(&output);
        assert!(written.starts_with("first\n"));
        // Every line was written or counted and reported (a count may be reported in more
        // than one line: a report goes out at each flush).
        let reported = reported_drops(&written);
        let kept = written.lines().filter(|l| *l == "x").count();
        assert_eq!(kept + reported, QUEUED_LINES_MAX * 2);
        assert_eq!(queue.losses().dropped_lines, reported as u64);
        assert_eq!(queue.losses().dropped_bytes, 2 * reported as u64);
        // Held while the output was shut: the queue and at most one batch.
        assert!(kept <= QUEUED_LINES_MAX + BATCH_LINES_MAX, "{kept} kept");
    }

    #[test]
    fn long_lines_behind_a_blocked_output_are_held_in_bounded_bytes() {
        const LINE_BYTES: usize = 64 * 1024;
        let output = Held::default();
        let queue = LogQueue::start(
            vec![Box::new(output.clone())],
            reporting(1, None),
            Arc::default(),
        )
        .unwrap();
        let shut = output.gate.lock().unwrap();
        let mut line = vec![b'x'; LINE_BYTES - 1];
        line.push(b'\n');
        let pushed = 2048;
        for _ in 0..pushed {
            queue.push(line.clone(), 1);
            assert!(queue.queued_bytes.load(Ordering::Relaxed) <= QUEUED_BYTES_MAX);
        }
        drop(shut);
        assert!(queue.flush(Duration::from_secs(10)));
        let written = text(&output);
        let kept = written
            .lines()
            .filter(|l| l.len() == LINE_BYTES - 1)
            .count();
        let reported = reported_drops(&written);
        assert_eq!(kept + reported, pushed);
        // What waited behind the shut output: the queue's bytes, and the batch the thread
        // held when it blocked (a line more than its bound).
        let held_max = (QUEUED_BYTES_MAX + BATCH_BUFFER_BYTES_MAX) / LINE_BYTES + 1;
        assert!(
            kept <= held_max,
            "{kept} lines of 64 KiB held, at most {held_max}"
        );
        let losses = queue.losses();
        assert_eq!(losses.dropped_lines, reported as u64);
        assert_eq!(losses.dropped_bytes, (reported * LINE_BYTES) as u64);
    }

    #[test]
    fn failed_writes_are_counted_and_reported_on_the_warning_output() {
        let healthy = Held::default();
        let warnings = Held::default();
        let queue = LogQueue::start(
            vec![Box::new(Full), Box::new(healthy.clone())],
            reporting(0b01, Some(warnings.clone())),
            Arc::default(),
        )
        .unwrap();
        queue.push(b"to both\n".to_vec(), 0b11);
        assert!(queue.flush(Duration::from_secs(5)));
        // The healthy output has its line; the full one counted a failed write, and the
        // report's own write to it failed too (reported the next time).
        assert_eq!(text(&healthy), "to both\n");
        assert_eq!(queue.losses().write_errors, 2);
        let warned = text(&warnings);
        assert!(warned.starts_with("dropped 0 0 failed 1 "), "{warned:?}");
        assert!(warned.contains("(os error 28)"), "{warned:?}");
        // Within the interval, more failures wait for the next report (or a flush): the
        // report's failed write and this line's.
        queue.push(b"again\n".to_vec(), 0b01);
        assert!(queue.flush(Duration::from_secs(5)));
        assert_eq!(text(&warnings).lines().count(), 2, "{}", text(&warnings));
        assert!(text(&warnings)
            .ends_with("dropped 0 0 failed 2 No space left on device (os error 28)\n"));
    }
}
