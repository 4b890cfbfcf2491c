//! Writes to and lingering closes of a client socket, each bounded in time: a client that
//! stops reading, or keeps sending after its answer, cannot hold the connection (or
//! anything else) for longer than the configured bounds. Shared by the plugins that serve
//! clients (http, tcp).

use crate::aio::Stream;
use std::time::Duration;
use tokio_uring::buf::BoundedBuf;

/// Why a write to the client ended before all bytes were out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEnd {
    /// The client closed the connection (or the write failed).
    Closed,
    /// No byte left for `write_timeout`: the client stopped reading.
    Stalled,
}

/// Writes all of `buf`, each write completing within `stall` (nginx's `send_timeout` rule:
/// the time between two successive writes is bounded, not the whole response, so a slow
/// but reading client still gets a large reply). Hands `buf` back unless a write was cut
/// short by the timeout: on io_uring the ring still owns that buffer, and the caller closes
/// the connection, which completes the write.
pub async fn write_all_within(
    stream: &Stream,
    mut buf: Vec<u8>,
    stall: Duration,
) -> (Result<(), WriteEnd>, Option<Vec<u8>>) {
    let mut written = 0;
    while written < buf.len() {
        let write = stream.write(buf.slice(written..));
        let Ok((result, slice)) = tokio::time::timeout(stall, write).await else {
            return (Err(WriteEnd::Stalled), None);
        };
        buf = slice.into_inner();
        match result {
            Ok(0) => return (Err(WriteEnd::Closed), Some(buf)),
            Ok(n) => written += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (Err(WriteEnd::Closed), Some(buf)),
        }
    }
    (Ok(()), Some(buf))
}

/// How long a lingering close reads and discards at most, and how long it waits for each
/// read (nginx: `lingering_time` 30 s, `lingering_timeout` 5 s; ours are shorter because a
/// client that reads its answer closes well within them).
const LINGER_TOTAL: Duration = Duration::from_secs(5);
const LINGER_READ: Duration = Duration::from_secs(1);
/// Bytes a lingering close discards at most.
const LINGER_BYTES_MAX: usize = 16 << 20;

/// Closes after an answer sent before the request was read to its end (413, 400): shuts
/// the write side, so the client sees the answer's end, then reads and discards what it
/// still sends for a bounded time and size. Closing at once would make the kernel answer
/// the unread bytes with a reset, and the client often loses the answer with it.
pub async fn linger_close(stream: &Stream, mut scratch: Vec<u8>) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = tokio::time::Instant::now() + LINGER_TOTAL;
    let mut discarded = 0;
    scratch.clear();
    if scratch.capacity() < 16 * 1024 {
        scratch.reserve(16 * 1024);
    }
    while discarded < LINGER_BYTES_MAX {
        let read_deadline = (tokio::time::Instant::now() + LINGER_READ).min(deadline);
        let read = stream.read(scratch);
        let Ok((result, buf)) = tokio::time::timeout_at(read_deadline, read).await else {
            return;
        };
        match result {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
        scratch = buf;
        scratch.clear();
    }
}
