//! The middleware that may answer before a worker does (`headers` with CORS, `static`),
//! and `gzip`'s part of the answer's head, run in the configured chain's order.

use super::answer::{AnswerWriter, ConnectionLine};
use super::head::Head;
use super::headers::{Cors, HeadersConfig};
use super::static_files::{Outcome, StaticRequest};
use super::wire::{self, DateCache};
use super::{gzip, HttpShared, Layer};

/// What the chain looks at and fills for one request, whatever front end it came by.
pub(super) struct ChainRequest<'a> {
    /// The bytes the head's ranges index.
    pub buf: &'a [u8],
    /// The request's head.
    pub head: &'a Head,
    /// Header lines the `headers` middleware puts on this request's answer.
    pub chain_head: &'a mut Vec<u8>,
    /// `gzip` wraps this request's answer and the client accepts gzip.
    pub compress: &'a mut bool,
    /// The answer buffer.
    pub out: &'a mut Vec<u8>,
    /// The connection's Date header cache.
    pub date: &'a mut DateCache,
    /// The connection may serve another request after this one.
    pub keep_alive: bool,
}

/// Runs the middleware that may answer before a worker does, outermost first (the last
/// one listed wraps the others, as in rr's chain): `headers` answers a CORS preflight and
/// puts its header lines on every answer it wraps (collected in `chain_head`); `static`
/// answers with a file. None: the worker's turn; Some(keep_open) when one answered. Their
/// answers are not in the `http log` records, as rr's.
pub(super) async fn answer_in_chain<W: AnswerWriter>(
    request: &mut ChainRequest<'_>,
    shared: &HttpShared,
    writer: &mut W,
) -> Option<bool> {
    request.chain_head.clear();
    *request.compress = false;
    let config = &shared.config;
    if config.chain.is_empty() {
        return None;
    }
    let keep_alive = request.keep_alive && !shared.lifecycle.is_stopping();
    let (buf, head) = (request.buf, request.head);
    for layer in &config.chain {
        let answered = match (layer, &config.headers, &shared.static_files) {
            (Layer::Gzip, _, _) => {
                // Every answer it wraps varies with Accept-Encoding, compressed or not.
                request
                    .chain_head
                    .extend_from_slice(b"Vary: Accept-Encoding\r\n");
                *request.compress = &buf[head.method.clone()] != b"HEAD"
                    && gzip::accepts_gzip(head.values(buf, "accept-encoding"));
                None
            }
            (Layer::Headers, Some(headers), _) => {
                match wrap_with_headers(buf, head, request.chain_head, headers) {
                    Some(status) => {
                        Some(answer_preflight(request, writer, status, keep_alive).await)
                    }
                    None => None,
                }
            }
            (Layer::Static, _, Some(statics)) => {
                let static_request = StaticRequest {
                    buf,
                    head,
                    keep_alive,
                    middleware_head: request.chain_head,
                    compress: *request.compress,
                };
                match statics.serve(&static_request, writer, request.out).await {
                    Outcome::Pass => None,
                    Outcome::Answered { keep_open } => Some(keep_open),
                }
            }
            _ => None,
        };
        if answered.is_some() {
            return answered;
        }
    }
    None
}

/// The `headers` middleware on this request: its `response` lines and CORS's into
/// `chain_head`. Some(status) when the request is a CORS preflight, which it answers.
fn wrap_with_headers(
    buf: &[u8],
    head: &Head,
    chain_head: &mut Vec<u8>,
    headers: &HeadersConfig,
) -> Option<u16> {
    for (name, value) in &headers.response {
        wire::canonical_header(chain_head, name.as_bytes(), value.as_bytes());
    }
    let cors = headers.cors.as_ref()?;
    let text = |name: &'static str| {
        head.value(buf, name)
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
    };
    let method = &buf[head.method.clone()];
    let request_method = head.value(buf, "access-control-request-method");
    if Cors::is_preflight(method, request_method) {
        cors.preflight(
            &text("origin"),
            &text("access-control-request-method"),
            &text("access-control-request-headers"),
            chain_head,
        );
        return Some(cors.success_status);
    }
    cors.actual(
        &text("origin"),
        &String::from_utf8_lossy(method),
        chain_head,
    );
    None
}

/// Writes a preflight's answer: its status, the middleware's header lines, no body.
async fn answer_preflight<W: AnswerWriter>(
    request: &mut ChainRequest<'_>,
    writer: &mut W,
    status: u16,
    keep_alive: bool,
) -> bool {
    let out = &mut *request.out;
    writer.open_head(out, status);
    out.extend_from_slice(request.chain_head);
    if wire::status_has_body(status) {
        out.extend_from_slice(b"Content-Length: 0\r\n");
    }
    request.date.header(out, crate::clock::unix_seconds());
    let connection = if keep_alive {
        ConnectionLine::Kept
    } else {
        ConnectionLine::Close
    };
    writer.close_head(out, false, connection);
    writer.send(out, true).await.is_ok() && keep_alive
}
