//! The `status` section (spec http §7).

use crate::config::values::{ConfigError, Reader};
use std::time::Duration;

/// `status` (spec http §7).
#[derive(Debug, Clone)]
pub struct StatusSection {
    /// `host:port`; empty when the section names none (then nothing is served).
    pub address: String,
    /// 503 by default.
    pub unavailable_status_code: u16,
    /// Read timeout of the listener (60 s).
    pub check_timeout: Duration,
}

impl StatusSection {
    /// Reads `status`.
    ///
    /// # Errors
    /// An address without a port, a value of the wrong type.
    pub fn read(reader: &Reader<'_>) -> Result<Self, ConfigError> {
        let address = reader.string("status.address")?.unwrap_or_default();
        if !address.is_empty() && !address.contains(':') {
            return Err(ConfigError {
                path: "status.address".into(),
                line: reader.node("status.address").map_or(0, |n| n.line),
                message: "status plugin address is required (host:port)".into(),
            });
        }
        let code = reader
            .unsigned("status.unavailable_status_code")?
            .and_then(|code| u16::try_from(code).ok())
            .filter(|code| (100..600).contains(code))
            .unwrap_or(503);
        let check_timeout = reader
            .seconds("status.check_timeout")?
            .filter(|timeout| !timeout.is_zero())
            .unwrap_or(Duration::from_secs(60));
        Ok(Self {
            address,
            unavailable_status_code: code,
            check_timeout,
        })
    }
}
