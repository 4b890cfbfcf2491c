//! HTTP/1.1 as a sans-IO state machine's parts: the head parser with Go's checks, the body
//! framing rules and the chunked decoder, each within [`Http1Limits`], and the response
//! bytes (status lines, headers, dates, chunks). The server feeds them bytes from its sockets
//! and the time; they never read, write or look at a clock.

mod chunked;
mod head;
mod head_scan;
pub mod response;

pub use chunked::{ChunkError, ChunkedDecoder};
pub use head::{BodyKind, Head, HeadError, MAX_HEADERS, MAX_HEAD_BYTES};
pub use head_scan::HeadScan;
pub use response::DateCache;

/// The bounds a request must stay within; past each, a defined refusal (431 for the head,
/// 400 for a chunk line or trailers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http1Limits {
    /// Header lines in one head (at most [`MAX_HEADERS`]).
    pub max_header_lines: usize,
    /// Bytes of one head, request line and blank line included.
    pub max_head_bytes: usize,
    /// Bytes of one chunk-size line.
    pub max_chunk_line_bytes: usize,
    /// Bytes of the trailer section after the last chunk.
    pub max_trailer_bytes: usize,
}

impl Default for Http1Limits {
    /// Go's: 1 MiB heads (`DefaultMaxHeaderBytes`); ours: 128 header lines, 1 KiB chunk
    /// lines, 64 KiB of trailers.
    fn default() -> Self {
        Self {
            max_header_lines: MAX_HEADERS,
            max_head_bytes: MAX_HEAD_BYTES,
            max_chunk_line_bytes: 1024,
            max_trailer_bytes: 64 * 1024,
        }
    }
}

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub year: i64,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    /// 0..=23.
    pub hour: u32,
    /// 0..=59.
    pub minute: u32,
    /// 0..=59.
    pub second: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

/// UTC calendar fields of `unix` seconds (Howard Hinnant's civil-from-days).
#[must_use]
pub fn civil(unix: u64) -> Civil {
    let days = (unix / 86_400) as i64;
    let seconds = (unix % 86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: seconds / 3600,
        minute: seconds / 60 % 60,
        second: seconds % 60,
        // 1970-01-01 was a Thursday.
        weekday: ((days + 4).rem_euclid(7)) as u32,
    }
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
