//! The time, for log timestamps and HTTP Date headers (the calendar fields are the protocol
//! crate's `civil`, pure).

pub use ringrunner_protocol::http1::{civil, Civil};

/// Seconds and nanoseconds since the Unix epoch, now.
#[must_use]
pub fn unix_now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Whole seconds since the Unix epoch, now (HTTP Date headers).
#[must_use]
pub fn unix_seconds() -> u64 {
    unix_now().as_secs()
}
