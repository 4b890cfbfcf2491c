//! Reading one request off a connection: the head within `read_header_timeout`, the body
//! within its overall bound (a minimum rate), Go's checks on the head, and the refusals
//! (400, 408, 413, 431, 501) with how the connection ends after each.

use super::{Connection, ReadEnd, Refusal};
use crate::clock::unix_seconds;
use crate::plugins::http::head::{BodyKind, ChunkedDecoder, Head, HeadError};
use crate::plugins::http::{wire, HttpShared};
use ringrunner_protocol::http1::{HeadScan, MAX_HEAD_BYTES};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::time::Instant as Deadline;

/// A request read whole: the head in `buf`, the body in `buf` (Content-Length) or `body`
/// (chunked).
pub(super) struct ReadRequest {
    pub(super) started: Instant,
    pub(super) body_kind: BodyKind,
    /// Bytes of `buf` this request used (head and a Content-Length body).
    pub(super) consumed: usize,
    /// The connection must close after the answer.
    pub(super) close_after: bool,
}

/// Reads the next request's head and body within their bounds.
pub(super) async fn read_request(
    conn: &mut Connection,
    peer: SocketAddr,
    shared: &HttpShared,
) -> Result<ReadRequest, Refusal> {
    read_head(conn, peer, shared).await?;
    let started = Instant::now();
    let refused = |error: HeadError| {
        let (status, text) = error.status();
        tracing::warn!(target: "http", %peer, status, ?error, "bad request");
        Refusal::Linger(wire::plain_response(1, status, text, true, unix_seconds()))
    };
    conn.head.validate(&conn.buf).map_err(refused)?;
    let body_kind = conn.head.body_kind(&conn.buf).map_err(refused)?;
    let close_after = conn.head.has_length_and_coding(&conn.buf);
    if close_after {
        tracing::warn!(target: "http", %peer,
            "request with both Content-Length and Transfer-Encoding: read as chunked, connection closed after the answer");
    }
    let consumed = read_body(conn, peer, shared, body_kind).await?;
    Ok(ReadRequest {
        started,
        body_kind,
        consumed,
        close_after,
    })
}

/// Reads until `buf` starts with a whole head, within `read_header_timeout` from its first
/// byte (a slow client cannot hold the connection by trickling); an idle keep-alive
/// connection gets the same time.
async fn read_head(
    conn: &mut Connection,
    peer: SocketAddr,
    shared: &HttpShared,
) -> Result<(), Refusal> {
    let timeout = shared.read_header_timeout;
    let mut head_deadline = None;
    // Parsed again only when the new bytes may end it (linear in a trickled head).
    let mut scan = HeadScan::default();
    loop {
        let parsed = if scan.worth_parsing(&conn.buf, MAX_HEAD_BYTES) {
            Head::parse(&conn.buf, &mut conn.head)
        } else {
            Ok(None)
        };
        match parsed {
            Ok(Some(())) => return Ok(()),
            Ok(None) => {
                let idle = conn.buf.is_empty();
                let now = Deadline::now();
                let deadline = if idle {
                    now + timeout
                } else {
                    *head_deadline.get_or_insert(now + timeout)
                };
                match conn.read_more(deadline, shared, idle).await {
                    Ok(()) => {}
                    Err(ReadEnd::TimedOut) if !idle => {
                        tracing::debug!(target: "http", %peer, "request head timed out");
                        let reply = wire::plain_response(
                            1,
                            408,
                            "408 Request Timeout",
                            true,
                            unix_seconds(),
                        );
                        return Err(Refusal::Close(reply));
                    }
                    Err(_) => return Err(Refusal::Silent),
                }
            }
            Err(error) => {
                let (status, text) = error.status();
                tracing::warn!(target: "http", %peer, status, ?error, "bad request");
                return Err(Refusal::Linger(wire::plain_response(
                    1,
                    status,
                    text,
                    true,
                    unix_seconds(),
                )));
            }
        }
    }
}

/// The bound on a whole body: each read within `read_header_timeout`, and the body in all
/// within `read_header_timeout` plus one second per `body_min_rate` bytes received.
pub(in crate::plugins::http) struct BodyClock {
    started: Deadline,
    per_read: Duration,
    min_rate: u64,
}

impl BodyClock {
    /// Started now, with `shared`'s `read_header_timeout` and `body_min_rate`.
    pub(in crate::plugins::http) fn new(shared: &HttpShared) -> Self {
        Self {
            started: Deadline::now(),
            per_read: shared.read_header_timeout,
            min_rate: shared.config.body_min_rate,
        }
    }

    /// The deadline of the next read, `received` body bytes in.
    pub(in crate::plugins::http) fn next_deadline(&self, received: usize) -> Deadline {
        let next_read = Deadline::now() + self.per_read;
        if self.min_rate == 0 {
            return next_read;
        }
        let earned = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        next_read.min(self.started + self.per_read + earned)
    }
}

/// The least a body's buffer grows by.
const BODY_GROWTH_MIN_BYTES: usize = 64 * 1024;

/// Room a read wants before the buffer grows (or what is missing of the body, if less).
const BODY_READ_ROOM_BYTES: usize = 16 * 1024;

/// Growth factor up to which a body's buffer follows what arrived: the whole announced
/// length is taken once 1/16 of it is in.
const BODY_PROOF_FACTOR: usize = 16;

/// Makes room in `buf` for more of a body that ends at `end`, by what has arrived and never
/// by what was announced: the capacity doubles, and takes the whole announced length once
/// 1/[`BODY_PROOF_FACTOR`] of it is in. An announced length alone reserves nothing (ten
/// clients that announced 900 MB and sent 1 KB grew the server's address space by 8.7 GiB
/// when the whole length was reserved on the head). The buffer stays within 16 times the
/// bytes received (or [`BODY_GROWTH_MIN_BYTES`]); the buffers outgrown on the way add up to
/// under 1/8 of the body, so a body's peak stays within about 1.2 times its size (the
/// allocator may keep them a while; with a jump at a quarter the peak was 1.6 times).
fn grow_body_room(buf: &mut Vec<u8>, end: usize) {
    let missing = end.saturating_sub(buf.len());
    if buf.capacity() - buf.len() >= missing.min(BODY_READ_ROOM_BYTES) {
        return;
    }
    let doubled = buf.capacity().saturating_mul(2).max(BODY_GROWTH_MIN_BYTES);
    let capacity = if buf.capacity().saturating_mul(BODY_PROOF_FACTOR) >= end {
        end
    } else {
        doubled.min(end)
    };
    buf.reserve_exact(capacity - buf.len());
}

/// Reads the body `kind` announces; returns the bytes of `buf` the request used.
async fn read_body(
    conn: &mut Connection,
    peer: SocketAddr,
    shared: &HttpShared,
    kind: BodyKind,
) -> Result<usize, Refusal> {
    let head_len = conn.head.len;
    let minor_version = conn.head.minor_version;
    let limit = shared.config.max_request_size;
    let too_large = || {
        tracing::warn!(target: "http", %peer, "request body too large");
        Refusal::Linger(wire::plain_response(
            minor_version,
            413,
            "serve_http: http: request body too large\n",
            true,
            unix_seconds(),
        ))
    };
    let timed_out = |received: usize| {
        tracing::warn!(target: "http", %peer, received, "request body timed out");
        Refusal::Close(wire::plain_response(
            minor_version,
            408,
            "408 Request Timeout",
            true,
            unix_seconds(),
        ))
    };
    // `100 Continue` is owed before the first read of a body the client waits to send.
    let mut continue_pending = conn
        .head
        .value(&conn.buf, "expect")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"))
        && minor_version == 1;
    let clock = BodyClock::new(shared);
    // The body: Content-Length bytes stay in `buf`; chunked bodies are decoded into `body`.
    conn.body.clear();
    match kind {
        BodyKind::Empty => Ok(head_len),
        BodyKind::Length(length) if length > limit => Err(too_large()),
        BodyKind::Length(length) => {
            let end = head_len + length as usize;
            while conn.buf.len() < end {
                grow_body_room(&mut conn.buf, end);
                conn.continue_once(&mut continue_pending, shared).await?;
                let received = conn.buf.len() - head_len;
                match conn
                    .read_more(clock.next_deadline(received), shared, false)
                    .await
                {
                    Ok(()) => {}
                    Err(ReadEnd::TimedOut) => return Err(timed_out(received)),
                    Err(_) => {
                        tracing::debug!(target: "http", %peer, "client went away while sending the body");
                        return Err(Refusal::Silent);
                    }
                }
            }
            Ok(end)
        }
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            let mut at = head_len;
            let mut received = 0;
            loop {
                match decoder.decode(&conn.buf[at..], &mut conn.body) {
                    Ok(used) => {
                        at += used;
                        received += used;
                    }
                    Err(_) => {
                        let error = HeadError::BadRequest("malformed chunked encoding");
                        tracing::warn!(target: "http", %peer, ?error, "bad request");
                        return Err(Refusal::Linger(wire::plain_response(
                            1,
                            400,
                            error.status().1,
                            true,
                            unix_seconds(),
                        )));
                    }
                }
                if conn.body.len() as u64 + decoder.announced_remaining() > limit {
                    return Err(too_large());
                }
                if decoder.is_done() {
                    return Ok(at);
                }
                // Keep `buf` from growing with decoded chunks: drop what is consumed.
                conn.buf.drain(head_len..at);
                at = head_len;
                conn.continue_once(&mut continue_pending, shared).await?;
                match conn
                    .read_more(clock.next_deadline(received), shared, false)
                    .await
                {
                    Ok(()) => {}
                    Err(ReadEnd::TimedOut) => return Err(timed_out(received)),
                    Err(_) => return Err(Refusal::Silent),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_buffer_grows_with_what_arrived_not_with_what_was_announced() {
        let announced = 900 << 20;
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&[b'h'; 200]);
        grow_body_room(&mut buf, 200 + announced);
        assert!(
            buf.capacity() <= BODY_GROWTH_MIN_BYTES,
            "{}",
            buf.capacity()
        );
        // Filled a step at a time: capacity within 16x received (or the minimum step), and
        // the whole announced length once 1/16 has come.
        let end = 200 + (10 << 20);
        let mut buf = vec![b'h'; 200];
        while buf.len() < end {
            grow_body_room(&mut buf, end);
            let bound = (buf.len() * BODY_PROOF_FACTOR).max(BODY_GROWTH_MIN_BYTES);
            assert!(
                buf.capacity() <= bound,
                "{} for {}",
                buf.capacity(),
                buf.len()
            );
            let room = (buf.capacity() - buf.len()).min(end - buf.len());
            assert!(room > 0);
            buf.resize(buf.len() + room, b'b');
        }
        assert_eq!(buf.capacity(), end);
    }
}
