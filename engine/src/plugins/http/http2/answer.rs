//! The answer to a relayed stream: read off the pair as the connection code wrote it
//! (HTTP/1.1), sent on the stream as HTTP/2 (1xx heads as informational responses, header
//! names lower-cased, hop-by-hop fields dropped, the body as DATA frames as fast as the
//! client's window opens).

use super::bridge::Ended;
use crate::aio::Stream;
use bytes::Bytes;
use h2::server::SendResponse;
use h2::SendStream;
use ringrunner_protocol::http1::{ChunkedDecoder, Http1Limits};
use std::time::Duration;

/// Bytes asked of the pair per read.
const READ_CHUNK: usize = 32 * 1024;
/// Header lines of an answer the relay reads (the connection code writes what the worker
/// sent; more than this is a 502).
const MAX_ANSWER_HEADERS: usize = 512;

/// Reads more of the answer; false at the pair's end.
pub(super) async fn read_more(stream: &Stream, input: &mut Vec<u8>) -> bool {
    matches!(stream.read_appending(input, READ_CHUNK).await, Ok(count) if count > 0)
}

/// How an answer's body is framed on the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerBody {
    Length(u64),
    Chunked,
    ToEnd,
}

/// An answer head read off the pair.
struct AnswerHead {
    response: http::Response<()>,
    body: AnswerBody,
    close: bool,
    consumed: usize,
}

/// The answer head at the start of `input`: None while incomplete, Err for bytes that are
/// no HTTP/1.1 answer.
fn answer_head(input: &[u8], is_head: bool) -> Result<Option<AnswerHead>, ()> {
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_ANSWER_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let consumed = match parsed.parse(input) {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let code = parsed.code.ok_or(())?;
    let mut response = http::Response::new(());
    *response.status_mut() = http::StatusCode::from_u16(code).map_err(drop)?;
    let mut body = AnswerBody::ToEnd;
    let mut close = false;
    for header in parsed.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if header.value.eq_ignore_ascii_case(b"chunked") {
                body = AnswerBody::Chunked;
            }
            continue;
        }
        if name.eq_ignore_ascii_case("connection") {
            close |= header.value.eq_ignore_ascii_case(b"close");
            continue;
        }
        if ["keep-alive", "proxy-connection", "upgrade"]
            .iter()
            .any(|hop| name.eq_ignore_ascii_case(hop))
        {
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") && body == AnswerBody::ToEnd {
            let length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(())?;
            body = AnswerBody::Length(length);
        }
        // A name or value h2 refuses (the worker's own bytes) is left out, not fatal.
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(header.value),
        ) else {
            continue;
        };
        response.headers_mut().append(name, value);
    }
    let bodiless = is_head || matches!(code, 100..=199 | 204 | 304);
    if bodiless {
        body = AnswerBody::Length(0);
    }
    Ok(Some(AnswerHead {
        response,
        body,
        close,
        consumed,
    }))
}

/// Reads the answer off the pair and sends it on the stream. Err(Some(reason)): reset the
/// stream with it; Err(None): the client reset it already.
pub(super) async fn answer(
    stream: &Stream,
    input: &mut Vec<u8>,
    respond: &mut SendResponse<Bytes>,
    is_head: bool,
    write_timeout: Duration,
) -> Result<Ended, Option<h2::Reason>> {
    let head = loop {
        match answer_head(input, is_head) {
            Ok(Some(head)) if head.response.status().is_informational() => {
                input.drain(..head.consumed);
                // 101 never comes from the connection code; the others are interim.
                if head.response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                    respond
                        .send_informational(head.response)
                        .map_err(|_| None)?;
                }
            }
            Ok(Some(head)) => break head,
            Ok(None) => {
                let reset = std::future::poll_fn(|cx| respond.poll_reset(cx));
                tokio::select! {
                    more = read_more(stream, input) => if !more {
                        return Err(Some(h2::Reason::INTERNAL_ERROR));
                    },
                    _ = reset => return Err(None),
                }
            }
            Err(()) => {
                tracing::warn!(target: "http", "http/2: the relayed answer was not HTTP/1.1");
                return Err(Some(h2::Reason::INTERNAL_ERROR));
            }
        }
    };
    input.drain(..head.consumed);
    let empty = head.body == AnswerBody::Length(0);
    let mut send = respond
        .send_response(head.response, empty)
        .map_err(|_| None)?;
    let ended = match head.body {
        AnswerBody::Length(0) => Ended::Whole,
        AnswerBody::Length(length) => {
            relay_length(stream, input, &mut send, length, write_timeout).await?
        }
        AnswerBody::Chunked => relay_chunked(stream, input, &mut send, write_timeout).await?,
        AnswerBody::ToEnd => {
            loop {
                if !input.is_empty() {
                    let data = Bytes::copy_from_slice(input);
                    input.clear();
                    send_data(&mut send, data, false, write_timeout).await?;
                }
                if !read_more(stream, input).await {
                    break;
                }
            }
            send_data(&mut send, Bytes::new(), true, write_timeout).await?;
            Ended::Spent
        }
    };
    Ok(if head.close { Ended::Spent } else { ended })
}

/// Relays a body of `length` bytes.
async fn relay_length(
    stream: &Stream,
    input: &mut Vec<u8>,
    send: &mut SendStream<Bytes>,
    length: u64,
    write_timeout: Duration,
) -> Result<Ended, Option<h2::Reason>> {
    let mut left = length;
    loop {
        let take = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if take > 0 {
            let data = Bytes::copy_from_slice(&input[..take]);
            input.drain(..take);
            left -= take as u64;
            send_data(send, data, left == 0, write_timeout).await?;
        }
        if left == 0 {
            return Ok(Ended::Whole);
        }
        if !read_more(stream, input).await {
            return Err(Some(h2::Reason::INTERNAL_ERROR));
        }
    }
}

/// Relays a chunked body, its chunks as DATA frames and its trailer section (the worker's
/// trailers, spec http §3.1d) as the stream's trailing HEADERS frame.
async fn relay_chunked(
    stream: &Stream,
    input: &mut Vec<u8>,
    send: &mut SendStream<Bytes>,
    write_timeout: Duration,
) -> Result<Ended, Option<h2::Reason>> {
    let mut decoder = ChunkedDecoder::within(&Http1Limits::default()).keeping_trailers();
    let mut body = Vec::new();
    loop {
        let used = decoder
            .decode(input, &mut body)
            .map_err(|_| Some(h2::Reason::INTERNAL_ERROR))?;
        input.drain(..used);
        let done = decoder.is_done();
        let trailers = if done {
            trailer_map(decoder.trailers())
        } else {
            http::HeaderMap::new()
        };
        let ends_with_data = done && trailers.is_empty();
        if !body.is_empty() || ends_with_data {
            let data = Bytes::copy_from_slice(&body);
            body.clear();
            send_data(send, data, ends_with_data, write_timeout).await?;
        }
        if done {
            if !ends_with_data {
                send.send_trailers(trailers).map_err(|_| None)?;
            }
            return Ok(Ended::Whole);
        }
        if !read_more(stream, input).await {
            return Err(Some(h2::Reason::INTERNAL_ERROR));
        }
    }
}

/// Trailer lines (`Name: value` CRLF, as the sink wrote them) as HTTP/2 fields; a line h2
/// refuses is left out.
fn trailer_map(lines: &[u8]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for line in lines.split(|&byte| byte == b'\n') {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
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
    use proptest::prelude::*;

    #[test]
    fn an_answer_head_loses_its_hop_by_hop_fields_and_keeps_repeated_ones() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n\
            Set-Cookie: b=2\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nrest";
        let head = answer_head(answer, false).unwrap().unwrap();
        assert_eq!(head.body, AnswerBody::Chunked);
        assert!(head.close);
        assert_eq!(&answer[head.consumed..], b"rest");
        let headers = head.response.headers();
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
        assert!(headers.get("connection").is_none());
        assert!(headers.get("transfer-encoding").is_none());
        let length = b"HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\n\r\n";
        let head = answer_head(length, false).unwrap().unwrap();
        assert_eq!(
            (head.response.status().as_u16(), head.body),
            (404, AnswerBody::Length(12))
        );
        // HEAD and 304 carry no body whatever their length says.
        let head = answer_head(length, true).unwrap().unwrap();
        assert_eq!(head.body, AnswerBody::Length(0));
        assert!(matches!(
            answer_head(b"HTTP/1.1 200 OK\r\nContent-", false),
            Ok(None)
        ));
        assert!(answer_head(b"garbage\r\n\r\n", false).is_err());
    }

    #[test]
    fn trailer_lines_become_lower_cased_fields_and_bad_lines_are_left_out() {
        let map = trailer_map(b"X-Sum: 1\r\nno colon\r\nBad Name: x\r\nX-Sum: 2\r\n");
        let sums: Vec<_> = map.get_all("x-sum").iter().collect();
        assert_eq!(sums, ["1", "2"]);
        assert_eq!(map.len(), 2);
        assert!(trailer_map(b"").is_empty());
    }

    proptest! {
        #[test]
        fn answer_heads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = answer_head(&bytes, false);
            let mut with_status = b"HTTP/1.1 200 OK\r\n".to_vec();
            with_status.extend_from_slice(&bytes);
            let _ = answer_head(&with_status, true);
        }
    }
}
