//! How an accept loop waits after `accept(2)` fails (EMFILE, ENFILE, ENOBUFS: the process or
//! the system is out of something a moment may give back): as Go's `net/http` server does, a
//! delay that starts at 5 ms and doubles up to one second while the errors go on, and starts
//! over at the first success. Each failure is logged with the delay it waits, so a listener
//! out of descriptors logs about once a second, not a hundred times.

use std::time::Duration;

/// The first delay after a failure.
const FIRST_DELAY: Duration = Duration::from_millis(5);
/// The longest delay: a second, as Go's.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// The delay state of one accept loop.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    last_delay: Option<Duration>,
}

impl AcceptBackoff {
    /// An accept failed: the delay to wait before the next one.
    pub fn failed(&mut self) -> Duration {
        let delay = self
            .last_delay
            .map_or(FIRST_DELAY, |last| (last * 2).min(MAX_DELAY));
        self.last_delay = Some(delay);
        delay
    }

    /// An accept succeeded: the next failure waits the first delay again.
    pub fn succeeded(&mut self) {
        self.last_delay = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_a_second_and_start_over_after_a_success() {
        let mut backoff = AcceptBackoff::default();
        let delays: Vec<u64> = (0..10)
            .map(|_| u64::try_from(backoff.failed().as_millis()).unwrap())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.succeeded();
        assert_eq!(backoff.failed(), Duration::from_millis(5));
    }

    #[test]
    fn a_minute_of_failures_is_under_seventy_log_lines() {
        // What bounds the log: each failure is one line.
        let mut backoff = AcceptBackoff::default();
        let mut waited = Duration::ZERO;
        let mut failures = 0;
        while waited < Duration::from_secs(60) {
            waited += backoff.failed();
            failures += 1;
        }
        assert!(failures < 70, "{failures} log lines in a minute");
    }
}
