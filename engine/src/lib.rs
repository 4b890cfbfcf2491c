//! ringrunner: a PHP application server that keeps worker processes alive and relays work to
//! them over the goridge protocol.

pub mod accept_backoff;
pub mod aio;
pub mod cli;
pub mod clock;
pub mod config;
pub mod memory;
pub mod plugins;
pub mod pool;
pub mod runtime;
pub mod stats;
#[cfg(test)]
pub(crate) mod test_alloc;
pub mod uuid;
pub mod worker;

/// The RoadRunner release whose behaviour ringrunner matches; exported to workers as
/// `RR_VERSION` (spec relay-protocol §7.6).
pub const RR_COMPATIBLE_VERSION: &str = "2025.1.15";

/// ringrunner's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `rr --version` line, in RoadRunner's shape (spec config-cli-rpc §3): its third token
/// is the rr release this one is compatible with (Laravel Octane reads it and offers to
/// download rr below 2023.3.0), ringrunner's own version follows on the same line.
#[must_use]
pub fn version_line() -> String {
    format!(
        "rr version {RR_COMPATIBLE_VERSION} (ringrunner {VERSION}, build time: {}, rust), OS: {}, arch: {}",
        option_env!("RINGRUNNER_BUILD_TIME").unwrap_or("unknown"),
        std::env::consts::OS,
        go_arch_name(std::env::consts::ARCH)
    )
}

/// Go's name for an architecture, as RoadRunner prints it.
fn go_arch_name(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}
