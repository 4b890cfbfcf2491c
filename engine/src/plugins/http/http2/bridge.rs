//! One HTTP/2 stream relayed through the plugin's HTTP/1.1 connection code: its head and
//! body written as an HTTP/1.1 request into a socket pair whose other end
//! [`conn::serve`](super::super::conn::serve) serves, the answer read back and sent as the
//! stream's response (1xx heads as informational responses). Pairs are kept between the
//! streams of a connection (the connection code keeps them alive), so a stream costs no
//! socket and no task once the connection is warm.
//!
//! Flow control is the backpressure: the request body's window is given back only once
//! its bytes went into the pair, and the answer is read from the pair only as fast as the
//! client's window takes it. A client that resets a stream ends its pair: the request
//! runs on and the worker goes back to the pool, as when an HTTP/1.1 client goes away.

use super::super::conn::{self, Origin};
use super::super::HttpShared;
use super::answer::answer;
use crate::aio::Stream;
use crate::runtime::ShardContext;
use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Bytes of answer buffer a new pair starts with.
const READ_CHUNK: usize = 16 * 1024;

/// The process's budget of socket pairs for relayed streams: two descriptors each, so
/// many concurrent streams (a thousand connections of 128 streams each) cannot take the
/// descriptors the listeners and the workers' restarts need. A stream waits for a pair in
/// use to end; idle pairs kept for reuse are capped apart and closed past the cap.
#[derive(Debug)]
pub struct PairBudget {
    in_use: Arc<tokio::sync::Semaphore>,
    idle: std::sync::atomic::AtomicUsize,
    idle_max: usize,
}

impl PairBudget {
    /// Pairs in use at most.
    const IN_USE_MAX: usize = 2048;
    /// Idle pairs at most.
    const IDLE_MAX: usize = 512;

    /// A budget from the open-files limit: a quarter of it for pairs (half the
    /// descriptors), three quarters of those in use, the rest idle, within the caps.
    #[must_use]
    pub fn from_open_files_limit() -> Self {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let pairs = (limit / 4).max(16);
        Self {
            in_use: Arc::new(tokio::sync::Semaphore::new(
                (pairs * 3 / 4).min(Self::IN_USE_MAX),
            )),
            idle: std::sync::atomic::AtomicUsize::new(0),
            idle_max: (pairs / 4).min(Self::IDLE_MAX),
        }
    }

    /// Counts one more idle pair; false (nothing counted) when the cap is reached.
    fn keep_idle(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |idle| {
                (idle < self.idle_max).then_some(idle + 1)
            })
            .is_ok()
    }

    fn idle_ended(&self) {
        self.idle.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A socket pair whose other end the connection code serves.
struct Bridge {
    stream: Stream,
    /// Answer bytes read and not yet relayed.
    input: Vec<u8>,
    idle_since: Instant,
    /// Resolves when the connection code is done with the pair.
    served: tokio::sync::oneshot::Receiver<()>,
}

/// A pair taken for a stream, with its place in the budget.
struct InUse {
    bridge: Bridge,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// A connection's pairs: the idle ones, and what opening another takes.
pub(super) struct Bridges {
    idle: RefCell<Vec<Bridge>>,
    /// Streams the client reset mid-request, less those that ended whole.
    net_resets: Cell<usize>,
    peer: SocketAddr,
    https: bool,
    shared: Arc<HttpShared>,
    shard: Rc<ShardContext>,
}

impl Bridges {
    pub(super) fn new(
        peer: SocketAddr,
        https: bool,
        shared: Arc<HttpShared>,
        shard: Rc<ShardContext>,
    ) -> Self {
        Self {
            idle: RefCell::new(Vec::new()),
            net_resets: Cell::new(0),
            peer,
            https,
            shared,
            shard,
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

    /// A pair for a stream: an idle one the connection code still holds open, else a new
    /// one, once the budget has room (within the pool's `allocate_timeout`).
    async fn take(&self) -> std::io::Result<InUse> {
        let budget = &self.shared.h2_pairs;
        let wait = self.shared.pool.config().allocate_timeout;
        let permit = tokio::time::timeout(wait, Arc::clone(&budget.in_use).acquire_owned())
            .await
            .map_err(|_| std::io::Error::other("no socket pair free in time"))?
            .map_err(std::io::Error::other)?;
        // The connection code closes a pair idle for `read_header_timeout`; one idle for
        // half of it is safely open.
        let fresh = self.shared.read_header_timeout / 2;
        loop {
            let Some(bridge) = self.idle.borrow_mut().pop() else {
                break;
            };
            budget.idle_ended();
            if bridge.idle_since.elapsed() < fresh {
                return Ok(InUse {
                    bridge,
                    _permit: permit,
                });
            }
            bridge.stream.shut_down();
        }
        Ok(InUse {
            bridge: self.open()?,
            _permit: permit,
        })
    }

    /// A new pair, its other end served by the connection code.
    fn open(&self) -> std::io::Result<Bridge> {
        let (ours, theirs) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )?;
        let backend = self.shard.backend();
        let stream = Stream::new(ours, backend)?;
        let served = Stream::new(theirs, backend)?;
        let origin = Origin {
            https: self.https,
            http2: true,
        };
        let (done, served_signal) = tokio::sync::oneshot::channel();
        let (peer, shared, shard) = (self.peer, Arc::clone(&self.shared), Rc::clone(&self.shard));
        tokio::task::spawn_local(async move {
            conn::serve(served, peer, origin, shared, shard).await;
            let _ = done.send(());
        });
        Ok(Bridge {
            stream,
            input: Vec::with_capacity(READ_CHUNK),
            idle_since: Instant::now(),
            served: served_signal,
        })
    }

    /// Keeps `bridge` for the next stream, within the connection's stream limit and the
    /// process's idle cap.
    fn put(&self, mut bridge: Bridge) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() >= self.max_streams()
            || self.shared.lifecycle.is_stopping()
            || !self.shared.h2_pairs.keep_idle()
        {
            bridge.stream.shut_down();
            return;
        }
        bridge.idle_since = Instant::now();
        idle.push(bridge);
    }
}

impl Drop for Bridges {
    fn drop(&mut self) {
        for bridge in self.idle.get_mut().drain(..) {
            self.shared.h2_pairs.idle_ended();
            bridge.stream.shut_down();
        }
    }
}

/// How the request's body goes into the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    None,
    Length,
    Chunked,
}

/// How an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// Where its framing said: the pair can serve the next stream.
    Whole,
    /// The pair is spent (the answer ran to the pair's end, or said `Connection: close`).
    Spent,
}

/// Relays one stream: request into a pair, answer back; the pair is kept when both went
/// whole.
pub(super) async fn relay(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    bridges: &Bridges,
) {
    let (parts, body) = request.into_parts();
    let framing = if body.is_end_stream() {
        BodyFraming::None
    } else if parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        BodyFraming::Length
    } else {
        BodyFraming::Chunked
    };
    let mut head = Vec::with_capacity(1024);
    request_head(&parts, framing, &mut head);
    let is_head = parts.method == http::Method::HEAD;
    let taken = tokio::select! {
        taken = bridges.take() => taken,
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    let InUse {
        mut bridge,
        _permit,
    } = match taken {
        Ok(taken) => taken,
        Err(error) => {
            tracing::warn!(target: "http", %error, "http/2: stream refused");
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            return;
        }
    };
    let write_timeout = bridges.shared.config.write_timeout;
    let outcome = {
        let Bridge { stream, input, .. } = &mut bridge;
        let sending = send_request(stream, head, body, framing);
        let answering = answer(stream, input, &mut respond, is_head, write_timeout);
        tokio::pin!(sending, answering);
        let mut sent = None;
        loop {
            tokio::select! {
                whole = &mut sending, if sent.is_none() => sent = Some(whole),
                ended = &mut answering => break (sent, ended),
            }
        }
    };
    match outcome {
        (Some(true), Ok(Ended::Whole)) => {
            bridges
                .net_resets
                .set(bridges.net_resets.get().saturating_sub(1));
            bridges.put(bridge);
        }
        (_, Ok(_)) => bridge.stream.shut_down(),
        (_, Err(Some(reason))) => {
            bridge.stream.shut_down();
            respond.send_reset(reason);
        }
        (_, Err(None)) => {
            // The client reset it: the pair closes, and the connection code ends the
            // request as for a client gone away (a body cut short is dropped, a streamed
            // reply is stopped, a worker still running finishes and goes back to the
            // pool). The stream counts as open until then (this task lives on).
            bridges.net_resets.set(bridges.net_resets.get() + 1);
            bridge.stream.shut_down();
            let _ = bridge.served.await;
        }
    }
}

/// The stream's head as an HTTP/1.1 request head: `:authority` as `Host`, the cookie
/// fields joined into one `Cookie` (RFC 9113 §8.2.3), the body's framing ours.
fn request_head(parts: &http::request::Parts, framing: BodyFraming, out: &mut Vec<u8>) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| parts.headers.get(http::header::HOST).map(|h| h.as_bytes()))
        .unwrap_or_default();
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n");
    let mut cookies = parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .peekable();
    if cookies.peek().is_some() {
        out.extend_from_slice(b"cookie: ");
        for (index, cookie) in cookies.enumerate() {
            if index > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(cookie.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        let framed_here = matches!(
            name.as_str(),
            "host"
                | "cookie"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "upgrade"
                | "te"
        );
        if framed_here {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        BodyFraming::None => {}
        BodyFraming::Length => {
            if let Some(length) = parts.headers.get(http::header::CONTENT_LENGTH) {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(length.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the head and the body into the pair, giving the body's window back as its bytes
/// go in; true when the request went whole. A broken body (reset, a length that does not
/// match) shuts the pair's write side, so the connection code sees it end.
async fn send_request(
    stream: &Stream,
    head: Vec<u8>,
    mut body: RecvStream,
    framing: BodyFraming,
) -> bool {
    let (written, mut out) = stream.write_all(head).await;
    if written.is_err() {
        return false;
    }
    if framing == BodyFraming::None {
        return true;
    }
    while let Some(data) = body.data().await {
        let Ok(data) = data else {
            let _ = stream.shutdown(std::net::Shutdown::Write);
            return false;
        };
        if data.is_empty() {
            continue;
        }
        out.clear();
        if framing == BodyFraming::Chunked {
            let _ = write!(out, "{:x}\r\n", data.len());
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(&data);
        }
        let (written, returned) = stream.write_all(out).await;
        out = returned;
        if written.is_err() {
            return false;
        }
        let _ = body.flow_control().release_capacity(data.len());
    }
    if framing == BodyFraming::Chunked {
        let (written, _) = stream.write_all(b"0\r\n\r\n".to_vec()).await;
        return written.is_ok();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(request: http::Request<()>) -> http::request::Parts {
        request.into_parts().0
    }

    #[test]
    fn the_request_head_folds_authority_and_cookies_and_frames_the_body_itself() {
        let request = http::Request::post("https://example.com:8443/a%20b?x=1")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("content-type", "text/plain")
            .header("content-length", "5")
            .body(())
            .unwrap();
        let mut head = Vec::new();
        request_head(&parts(request), BodyFraming::Length, &mut head);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /a%20b?x=1 HTTP/1.1\r\nHost: example.com:8443\r\ncookie: a=1; b=2\r\n\
             content-type: text/plain\r\ncontent-length: 5\r\n\r\n"
        );
        let request = http::Request::put("/up").body(()).unwrap();
        let mut head = Vec::new();
        request_head(&parts(request), BodyFraming::Chunked, &mut head);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "PUT /up HTTP/1.1\r\nHost: \r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }
}
