//! An answer written on an HTTP/2 stream ([`AnswerWriter`]): the head's lines become the
//! HEADERS frame's fields (names lower-cased, hop-by-hop fields left out), 1xx heads go as
//! informational responses, the body as DATA frames as fast as the client's window opens
//! (each wait bounded by `write_timeout`: a client that stops reading has its stream reset
//! and holds at most h2's send buffer), trailer lines as the trailing HEADERS frame.

use crate::aio::Backend;
use crate::plugins::client_io::WriteEnd;
use crate::plugins::http::answer::{AnswerWriter, ConnectionLine};
use bytes::Bytes;
use h2::server::SendResponse;
use h2::SendStream;
use std::time::Duration;

/// Fields of an HTTP/1 head that HTTP/2 does not carry (RFC 9113 §8.2.2).
const HOP_BY_HOP: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

/// The answer side of one stream.
pub(super) struct StreamWriter {
    respond: SendResponse<Bytes>,
    /// The body's side, once the final head went out.
    send: Option<SendStream<Bytes>>,
    backend: Backend,
    write_timeout: Duration,
    /// The status of the head the buffer starts with, until it is sent.
    head_status: Option<u16>,
    /// Where the head's lines end in the buffer.
    head_end: usize,
    /// The trailer section, sent after the last DATA.
    trailers: Option<http::HeaderMap>,
    /// The stream's answer ended (END_STREAM sent) or the stream was reset.
    ended: bool,
    /// The client reset the stream before its answer ended.
    pub(super) reset_by_client: bool,
}

impl StreamWriter {
    pub(super) fn new(respond: SendResponse<Bytes>, backend: Backend, timeout: Duration) -> Self {
        Self {
            respond,
            send: None,
            backend,
            write_timeout: timeout,
            head_status: None,
            head_end: 0,
            trailers: None,
            ended: false,
            reset_by_client: false,
        }
    }

    fn client_gone(&mut self) -> WriteEnd {
        self.ended = true;
        self.reset_by_client = true;
        WriteEnd::Closed
    }

    /// Sends the head the buffer starts with; true when it ended the stream.
    fn send_head(&mut self, status: u16, out: &[u8], last: bool) -> Result<bool, WriteEnd> {
        let response = response_of(status, &out[..self.head_end]);
        if status < 200 {
            self.respond
                .send_informational(response)
                .map_err(|_| self.client_gone())?;
            return Ok(false);
        }
        let end = last && out.len() == self.head_end && self.trailers.is_none();
        match self.respond.send_response(response, end) {
            Ok(send) => self.send = Some(send),
            Err(_) => return Err(self.client_gone()),
        }
        self.ended |= end;
        Ok(end)
    }

    async fn send_body(&mut self, body: &[u8], last: bool) -> Result<(), WriteEnd> {
        let Some(send) = self.send.as_mut() else {
            return Err(WriteEnd::Closed);
        };
        let data_ends = last && self.trailers.is_none();
        if !body.is_empty() || data_ends {
            let data = Bytes::copy_from_slice(body);
            match send_data(send, data, data_ends, self.write_timeout).await {
                Ok(()) => {}
                Err(Some(reason)) => {
                    // The sink logs it; the stream is reset so the client knows.
                    send.send_reset(reason);
                    self.ended = true;
                    return Err(WriteEnd::Stalled);
                }
                Err(None) => return Err(self.client_gone()),
            }
        }
        if last {
            if let Some(trailers) = self.trailers.take() {
                if send.send_trailers(trailers).is_err() {
                    return Err(self.client_gone());
                }
            }
            self.ended = true;
        }
        Ok(())
    }
}

impl AnswerWriter for StreamWriter {
    fn minor_version(&self) -> u8 {
        1
    }

    fn backend(&self) -> Backend {
        self.backend
    }

    fn open_head(&mut self, out: &mut Vec<u8>, status: u16) {
        out.clear();
        self.head_status = Some(status);
        self.head_end = 0;
    }

    fn close_head(&mut self, out: &mut Vec<u8>, _streamed: bool, _connection: ConnectionLine) {
        // A streamed body is DATA frames until END_STREAM; the connection is the client's.
        self.head_end = out.len();
    }

    fn push_chunk(&mut self, out: &mut Vec<u8>, body: &[u8]) {
        out.extend_from_slice(body);
    }

    fn end_chunks(&mut self, _out: &mut Vec<u8>, trailer_lines: &[u8]) {
        if !trailer_lines.is_empty() {
            self.trailers = Some(fields_of(trailer_lines));
        }
    }

    async fn send(&mut self, out: &mut Vec<u8>, last: bool) -> Result<u64, WriteEnd> {
        let total = out.len() as u64;
        let sent = self.send_buffered(out, last).await;
        out.clear();
        self.head_end = 0;
        sent.map(|()| total)
    }
}

impl StreamWriter {
    async fn send_buffered(&mut self, out: &[u8], last: bool) -> Result<(), WriteEnd> {
        if self.ended {
            return Err(WriteEnd::Closed);
        }
        let mut body_start = 0;
        if let Some(status) = self.head_status.take() {
            if self.send_head(status, out, last)? || status < 200 {
                return Ok(());
            }
            body_start = self.head_end;
        }
        self.send_body(&out[body_start..], last).await
    }
}

/// A response head of `status` with the fields of `lines` (`Name: value` CRLF).
fn response_of(status: u16, lines: &[u8]) -> http::Response<()> {
    let mut response = http::Response::new(());
    // The sink and the middleware only write statuses 100..=599.
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    *response.headers_mut() = fields_of(lines);
    response
}

/// Header lines (`Name: value` CRLF) as HTTP/2 fields, less the hop-by-hop ones; a line h2
/// refuses is left out.
fn fields_of(lines: &[u8]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for line in lines.split(|&byte| byte == b'\n') {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop)) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// Sends `data` as the client's window opens, each wait bounded by `write_timeout`.
/// Err(Some(CANCEL)): the client stopped reading; Err(None): the stream is gone.
async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    write_timeout: Duration,
) -> Result<(), Option<h2::Reason>> {
    if data.is_empty() {
        return if end {
            send.send_data(data, true).map_err(|_| None)
        } else {
            Ok(())
        };
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let capacity = std::future::poll_fn(|cx| send.poll_capacity(cx));
        let granted = match tokio::time::timeout(write_timeout, capacity).await {
            Ok(Some(Ok(granted))) => granted,
            Ok(_) => return Err(None),
            Err(_) => return Err(Some(h2::Reason::CANCEL)),
        };
        if granted == 0 {
            continue;
        }
        let piece = data.split_to(granted.min(data.len()));
        send.send_data(piece, end && data.is_empty())
            .map_err(|_| None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_lines_become_lower_cased_fields_without_hop_by_hop_ones() {
        let response = response_of(
            404,
            b"Content-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
              Connection: close\r\nTransfer-Encoding: chunked\r\nno colon\r\nBad Name: x\r\n",
        );
        assert_eq!(response.status(), 404);
        let headers = response.headers();
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(headers["content-type"], "text/plain");
        assert!(headers.get("connection").is_none());
        assert!(headers.get("transfer-encoding").is_none());
        assert_eq!(headers.len(), 3);
        assert!(fields_of(b"").is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_lines_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = fields_of(&bytes);
        }
    }
}
