//! One HTTP/2 stream served on its shard by the request core: its head becomes the
//! exchange's head (`:authority` as `Host`, the cookie fields joined into one `Cookie`,
//! RFC 9113 §8.2.3), its body is taken off the stream within `max_request_size` (the
//! flow-control window given back as it is taken), then the middleware chain, the pool
//! relay, the access log and the metrics run as for HTTP/1, and the answer goes out through
//! a [`StreamWriter`]. The worker sees `HTTP/2.0`.
//!
//! A client that resets a stream mid-request does not stop its request: a worker that has
//! it finishes and goes back to the pool, as when an HTTP/1.1 client goes away.

use super::writer::StreamWriter;
use crate::plugins::http::conn::BodyClock;
use crate::plugins::http::exchange::{self, Arrival, Buffers, HeadBuilder};
use crate::plugins::http::head::Head;
use crate::plugins::http::sink::{HttpSink, RequestFacts};
use crate::plugins::http::HttpShared;
use crate::runtime::ShardContext;
use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// rr's answer to a body past `max_request_size` (as on HTTP/1).
const TOO_LARGE_TEXT: &[u8] = b"serve_http: http: request body too large\n";

/// What the streams of one connection share.
pub(super) struct StreamSite {
    pub(super) peer: SocketAddr,
    pub(super) https: bool,
    pub(super) shared: Arc<HttpShared>,
    pub(super) shard: Rc<ShardContext>,
    /// Streams the client reset mid-request, less those that ended whole.
    net_resets: Cell<usize>,
}

impl StreamSite {
    pub(super) fn new(
        peer: SocketAddr,
        https: bool,
        shared: Arc<HttpShared>,
        shard: Rc<ShardContext>,
    ) -> Self {
        Self {
            peer,
            https,
            shared,
            shard,
            net_resets: Cell::new(0),
        }
    }

    /// True when the client reset so many streams mid-request, net of those it let end,
    /// that it looks like a reset flood: the connection should end.
    pub(super) fn reset_flood(&self) -> bool {
        self.net_resets.get() > 2 * self.max_streams().max(50)
    }

    pub(super) fn max_streams(&self) -> usize {
        self.shared.config.http2.max_concurrent_streams as usize
    }

    fn ended(&self, reset_by_client: bool) {
        let resets = self.net_resets.get();
        self.net_resets.set(if reset_by_client {
            resets + 1
        } else {
            resets.saturating_sub(1)
        });
    }
}

/// Why a stream's body was not taken whole.
enum BodyEnd {
    /// Past `max_request_size`.
    TooLarge,
    /// No DATA within `read_header_timeout`.
    TimedOut,
    /// The client reset the stream.
    Reset,
}

/// Serves one stream to its end.
pub(super) async fn serve(
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    site: &StreamSite,
) {
    let started = Instant::now();
    let shared = &*site.shared;
    let (parts, mut body) = request.into_parts();
    let mut buffers = Buffers::default();
    exchange_head(&parts, &mut buffers.buf, &mut buffers.head);
    let is_head = parts.method == http::Method::HEAD;
    let backend = site.shard.backend();
    let mut writer = StreamWriter::new(respond, backend, shared.config.write_timeout);
    let announced = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok());
    let taken = take_body(&mut body, announced, &mut buffers.body, shared).await;
    drop(body);
    let facts = RequestFacts {
        minor_version: 1,
        is_head,
        keep_alive: true,
    };
    match taken {
        Ok(()) => {}
        Err(BodyEnd::Reset) => {
            tracing::debug!(target: "http", peer = %site.peer, "http/2 client reset its stream while sending the body");
            site.ended(true);
            return;
        }
        Err(refused) => {
            let (status, text): (u16, &[u8]) = match refused {
                BodyEnd::TooLarge => {
                    tracing::warn!(target: "http", peer = %site.peer, "request body too large");
                    (413, TOO_LARGE_TEXT)
                }
                _ => {
                    tracing::warn!(target: "http", peer = %site.peer, received = buffers.body.len(), "request body timed out");
                    (408, b"408 Request Timeout")
                }
            };
            let Buffers { out, date, .. } = &mut buffers;
            let lifecycle = (&*shared.lifecycle, shared.config.write_timeout);
            let mut sink = HttpSink::new(&mut writer, out, facts, lifecycle, date);
            sink.send_plain(status, &[], text);
            sink.flush_pending().await;
            site.ended(writer.reset_by_client);
            return;
        }
    }
    let arrival = Arrival {
        peer: site.peer,
        started,
        https: site.https,
        http2: true,
    };
    let serving = (shared, &site.shard);
    exchange::serve_whole(&mut buffers, arrival, serving, &mut writer).await;
    site.ended(writer.reset_by_client);
}

/// Takes the stream's body into `into`, giving its window back as it goes, within
/// `max_request_size` (a larger announced length is refused before a byte is taken) and
/// the body's clock (`read_header_timeout` per DATA frame, `body_min_rate` in all), as an
/// HTTP/1.1 body.
async fn take_body(
    body: &mut RecvStream,
    announced: Option<u64>,
    into: &mut Vec<u8>,
    shared: &HttpShared,
) -> Result<(), BodyEnd> {
    let limit = shared.config.max_request_size;
    if body.is_end_stream() {
        return Ok(());
    }
    if announced.is_some_and(|length| length > limit) {
        return Err(BodyEnd::TooLarge);
    }
    if let Some(length) = announced {
        // Within the limit (checked above): the whole body at once.
        into.reserve(usize::try_from(length).unwrap_or(0));
    }
    let clock = BodyClock::new(shared);
    loop {
        let deadline = clock.next_deadline(into.len());
        let data = tokio::time::timeout_at(deadline, body.data()).await;
        let data = match data {
            Err(_) => return Err(BodyEnd::TimedOut),
            Ok(None) => return Ok(()),
            Ok(Some(Err(_))) => return Err(BodyEnd::Reset),
            Ok(Some(Ok(data))) => data,
        };
        if (into.len() + data.len()) as u64 > limit {
            return Err(BodyEnd::TooLarge);
        }
        into.extend_from_slice(&data);
        let _ = body.flow_control().release_capacity(data.len());
    }
}

/// The stream's head as the exchange's head: method, target (`:path`), `Host` from
/// `:authority`, the cookie fields joined into one, the other fields as sent, in `buf`.
fn exchange_head(parts: &http::request::Parts, buf: &mut Vec<u8>, head: &mut Head) {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let target = if target.is_empty() { "/" } else { target };
    let method = parts.method.as_str().as_bytes();
    let mut builder = HeadBuilder::new(buf, head, method, target.as_bytes());
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| parts.headers.get(http::header::HOST).map(|h| h.as_bytes()));
    if let Some(host) = host {
        builder.field(b"host", host);
    }
    let cookies = parts.headers.get_all(http::header::COOKIE);
    if cookies.iter().next().is_some() {
        builder.field_with(|buf| {
            buf.extend_from_slice(b"cookie");
            let start = buf.len();
            for (index, cookie) in cookies.iter().enumerate() {
                if index > 0 {
                    buf.extend_from_slice(b"; ");
                }
                buf.extend_from_slice(cookie.as_bytes());
            }
            start
        });
    }
    for (name, value) in &parts.headers {
        // `te` says what the client takes of HTTP/2 itself, not of the worker.
        if matches!(name.as_str(), "host" | "cookie" | "te") {
            continue;
        }
        builder.field(name.as_str().as_bytes(), value.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exchange_head_folds_authority_and_cookies() {
        let request = http::Request::post("https://example.com:8443/a%20b?x=1")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let (mut buf, mut head) = (Vec::new(), Head::default());
        exchange_head(&parts, &mut buf, &mut head);
        assert_eq!(&buf[head.method.clone()], b"POST");
        assert_eq!(&buf[head.target.clone()], b"/a%20b?x=1");
        assert_eq!(head.value(&buf, "host"), Some(&b"example.com:8443"[..]));
        assert_eq!(head.value(&buf, "cookie"), Some(&b"a=1; b=2"[..]));
        assert_eq!(head.value(&buf, "content-type"), Some(&b"text/plain"[..]));
        assert_eq!(head.headers.len(), 3);
    }
}
