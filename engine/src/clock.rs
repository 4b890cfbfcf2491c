//! Calendar fields of a Unix time in UTC, for log timestamps and the HTTP Date header.

pub use ringrunner_protocol::http1::{civil, Civil};

/// Seconds and nanoseconds since the Unix epoch, now.
#[must_use]
pub fn unix_now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let c = civil(784_111_777);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second, c.weekday),
            (1994, 11, 6, 8, 49, 37, 0)
        );
        let leap = civil(1_709_251_200);
        assert_eq!(
            (leap.year, leap.month, leap.day, leap.weekday),
            (2024, 3, 1, 5)
        );
    }
}
