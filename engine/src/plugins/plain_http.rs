//! One HTTP/1.1 request answered on a connection of its own, then closed: what the status
//! and metrics listeners serve (their clients are probes and scrapers, not browsers).

use super::http::head::Head;
use super::http::wire;
use crate::aio::Stream;
use ringrunner_protocol::http1::HeadScan;
use tokio_uring::buf::BoundedBuf;

/// Request heads larger than this are answered 400.
const HEAD_BYTES_MAX: usize = 64 * 1024;

/// What to answer.
#[derive(Debug)]
pub struct PlainAnswer {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Header lines beside the standard ones.
    pub headers: Vec<(&'static str, &'static str)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Reads one request head within `deadline`, answers it with `answer(head, bytes)`, and
/// shuts the connection. A malformed or oversized head gets a 400; a client that sends
/// nothing in time or goes away gets nothing.
pub async fn answer_once(
    stream: Stream,
    deadline: tokio::time::Instant,
    answer: impl FnOnce(&Head, &[u8]) -> PlainAnswer,
) {
    if let Some(out) = read_and_answer(&stream, deadline, answer).await {
        let _ = tokio::time::timeout_at(deadline, stream.write_all(out)).await;
    }
    // Also completes a read abandoned by the timeout, which holds the socket open otherwise.
    stream.shut_down();
}

async fn read_and_answer(
    stream: &Stream,
    deadline: tokio::time::Instant,
    answer: impl FnOnce(&Head, &[u8]) -> PlainAnswer,
) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(4096);
    let mut head = Head::default();
    let mut scan = HeadScan::default();
    loop {
        let parsed = if scan.worth_parsing(&buf, HEAD_BYTES_MAX) {
            Head::parse(&buf, &mut head)
        } else {
            Ok(None)
        };
        match parsed {
            Ok(Some(())) => break,
            Ok(None) if buf.len() < HEAD_BYTES_MAX => {
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(4096);
                }
                let filled = buf.len();
                let read = stream.read(buf.slice(filled..));
                let (result, slice) = tokio::time::timeout_at(deadline, read).await.ok()?;
                buf = slice.into_inner();
                if !matches!(result, Ok(n) if n > 0) {
                    return None;
                }
            }
            _ => {
                let now = crate::clock::unix_seconds();
                return Some(wire::plain_response(1, 400, "400 Bad Request", true, now));
            }
        }
    }
    let reply = answer(&head, &buf);
    let mut out = Vec::with_capacity(256 + reply.body.len());
    wire::status_line(&mut out, 1, reply.status);
    wire::header(&mut out, b"Content-Type", reply.content_type.as_bytes());
    for (name, value) in &reply.headers {
        wire::header(&mut out, name.as_bytes(), value.as_bytes());
    }
    wire::date_header(&mut out, crate::clock::unix_seconds());
    wire::header(
        &mut out,
        b"Content-Length",
        reply.body.len().to_string().as_bytes(),
    );
    wire::header(&mut out, b"Connection", b"close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&reply.body);
    Some(out)
}
