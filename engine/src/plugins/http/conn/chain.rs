//! The middleware that may answer before a worker does (`headers` with CORS, `static`),
//! and `gzip`'s part of the answer's head, run in the configured chain's order.

use super::read::ReadRequest;
use super::Connection;
use crate::plugins::client_io::write_all_within;
use crate::plugins::http::headers::{Cors, HeadersConfig};
use crate::plugins::http::static_files::{Outcome, StaticRequest};
use crate::plugins::http::{gzip, wire, HttpShared, Layer};

/// Runs the middleware that may answer before a worker does, outermost first (the last
/// one listed wraps the others, as in rr's chain): `headers` answers a CORS preflight and
/// puts its header lines on every answer it wraps (collected in `chain_head`); `static`
/// answers with a file. None: the worker's turn. Their answers are not in the `http log`
/// records, as rr's.
pub(super) async fn answer_in_chain(
    conn: &mut Connection,
    shared: &HttpShared,
    request: &ReadRequest,
) -> Option<bool> {
    conn.chain_head.clear();
    conn.compress = false;
    let config = &shared.config;
    if config.chain.is_empty() {
        return None;
    }
    let keep_alive =
        conn.head.keep_alive(&conn.buf) && !request.close_after && !shared.lifecycle.is_stopping();
    for layer in &config.chain {
        let answered = match (layer, &config.headers, &shared.static_files) {
            (Layer::Gzip, _, _) => {
                // Every answer it wraps varies with Accept-Encoding, compressed or not.
                conn.chain_head
                    .extend_from_slice(b"Vary: Accept-Encoding\r\n");
                conn.compress = &conn.buf[conn.head.method.clone()] != b"HEAD"
                    && gzip::accepts_gzip(conn.head.values(&conn.buf, "accept-encoding"));
                None
            }
            (Layer::Headers, Some(headers), _) => match wrap_with_headers(conn, headers) {
                Some(status) => Some(answer_preflight(conn, shared, status, keep_alive).await),
                None => None,
            },
            (Layer::Static, _, Some(statics)) => {
                let static_request = StaticRequest {
                    stream: &conn.stream,
                    buf: &conn.buf,
                    head: &conn.head,
                    keep_alive,
                    write_timeout: config.write_timeout,
                    middleware_head: &conn.chain_head,
                    compress: conn.compress,
                };
                match statics.serve(&static_request, &mut conn.out).await {
                    Outcome::Pass => None,
                    Outcome::Answered { keep_open } => Some(keep_open),
                }
            }
            _ => None,
        };
        if let Some(keep_open) = answered {
            if conn.buf.len() >= request.consumed {
                conn.buf.drain(..request.consumed);
            }
            return Some(keep_open);
        }
    }
    None
}

/// The `headers` middleware on this request: its `response` lines and CORS's into
/// `chain_head`. Some(status) when the request is a CORS preflight, which it answers.
fn wrap_with_headers(conn: &mut Connection, headers: &HeadersConfig) -> Option<u16> {
    for (name, value) in &headers.response {
        wire::canonical_header(&mut conn.chain_head, name.as_bytes(), value.as_bytes());
    }
    let cors = headers.cors.as_ref()?;
    let (buf, head) = (&conn.buf, &conn.head);
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
            &mut conn.chain_head,
        );
        return Some(cors.success_status);
    }
    cors.actual(
        &text("origin"),
        &String::from_utf8_lossy(method),
        &mut conn.chain_head,
    );
    None
}

/// Writes a preflight's answer: its status, the middleware's header lines, no body.
async fn answer_preflight(
    conn: &mut Connection,
    shared: &HttpShared,
    status: u16,
    keep_alive: bool,
) -> bool {
    let mut out = std::mem::take(&mut conn.out);
    out.clear();
    wire::status_line(&mut out, conn.head.minor_version, status);
    out.extend_from_slice(&conn.chain_head);
    if wire::status_has_body(status) {
        out.extend_from_slice(b"Content-Length: 0\r\n");
    }
    conn.date.header(&mut out, crate::clock::unix_seconds());
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let (written, returned) =
        write_all_within(&conn.stream, out, shared.config.write_timeout).await;
    if let Some(returned) = returned {
        conn.out = returned;
    }
    written.is_ok() && keep_alive
}
