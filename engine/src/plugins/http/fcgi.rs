//! `http.fcgi` (spec http-extras §7.1): a FastCGI responder, so a front server (nginx's
//! `fastcgi_pass`) can hand requests to the PHP workers. Each request's CGI parameters and
//! body become an HTTP/1.1 request served by the plugin's own connection code over a
//! socket pair (the same middleware, limits, context and error answers as a client
//! connection), and its answer goes back as CGI `Status:` and headers in STDOUT records.
//! One request at a time per connection (nginx multiplexes nothing); `FCGI_KEEP_CONN`
//! is honoured.

use super::HttpShared;
use crate::aio::Stream;
use crate::runtime::ShardContext;
use ringrunner_protocol::fcgi;
use ringrunner_protocol::http1::{ChunkedDecoder, Http1Limits};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 * 1024;
/// STDOUT bytes gathered before they are written.
const WRITE_BATCH: usize = 64 * 1024;
/// Bytes of CGI parameters one request may send.
const MAX_PARAMS_BYTES: usize = 1 << 20;

/// A request read off the connection.
struct FcgiRequest {
    id: u16,
    keep_conn: bool,
    params: Vec<u8>,
    stdin: Vec<u8>,
}

/// Serves one front-server connection until it closes or a request asks to close it.
pub(super) async fn serve(stream: Stream, shared: Arc<HttpShared>, shard: Rc<ShardContext>) {
    let _counted = shared.lifecycle.connection_opened();
    let mut input = Vec::with_capacity(READ_CHUNK);
    loop {
        let request = match read_request(&stream, &mut input, &shared).await {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(target: "http", %error, "fastcgi connection closed");
                break;
            }
        };
        let keep_conn = request.keep_conn;
        if let Err(error) = respond(&stream, request, &shared, &shard).await {
            tracing::warn!(target: "http", %error, "fastcgi answer");
            break;
        }
        if !keep_conn || shared.lifecycle.is_stopping() {
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Reads more bytes, within `read_header_timeout` when `shared` is given; false at the end.
async fn read_more(
    stream: &Stream,
    input: &mut Vec<u8>,
    shared: Option<&HttpShared>,
) -> std::io::Result<bool> {
    let read = stream.read_appending(input, READ_CHUNK);
    let count = match shared {
        Some(shared) => tokio::time::timeout(shared.read_header_timeout, read)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??,
        None => read.await?,
    };
    Ok(count > 0)
}

/// A request being gathered from its records.
#[derive(Default)]
struct Gathering {
    request: Option<FcgiRequest>,
    params_done: bool,
    stdin_done: bool,
}

/// What a record did to the request being gathered.
enum Taken {
    /// Keep reading.
    More,
    /// Its body passed `max_request_size`: answered with a 413, the connection ends.
    TooLarge(u16),
}

impl Gathering {
    fn complete(&self) -> bool {
        self.params_done && self.stdin_done
    }

    /// Takes one record; management records and refusals are answered into `answers`.
    fn take(
        &mut self,
        record: fcgi::Record<'_>,
        answers: &mut Vec<u8>,
        max_body: u64,
    ) -> Result<Taken, String> {
        let id = record.request_id;
        match (record.kind, &mut self.request) {
            (fcgi::BEGIN_REQUEST, None) => {
                let (role, keep_conn) =
                    fcgi::parse_begin_request(record.content).map_err(|e| e.to_string())?;
                if role == fcgi::RESPONDER {
                    self.request = Some(FcgiRequest {
                        id,
                        keep_conn,
                        params: Vec::new(),
                        stdin: Vec::new(),
                    });
                } else {
                    fcgi::write_end_request(answers, id, 0, fcgi::UNKNOWN_ROLE);
                }
            }
            (fcgi::BEGIN_REQUEST, Some(active)) if active.id != id => {
                fcgi::write_end_request(answers, id, 0, fcgi::CANT_MPX_CONN);
            }
            (fcgi::PARAMS, Some(active)) if active.id == id => {
                self.params_done = record.content.is_empty();
                if active.params.len() + record.content.len() > MAX_PARAMS_BYTES {
                    return Err("fastcgi parameters over 1 MiB".into());
                }
                active.params.extend_from_slice(record.content);
            }
            (fcgi::STDIN, Some(active)) if active.id == id => {
                self.stdin_done = record.content.is_empty();
                if (active.stdin.len() + record.content.len()) as u64 > max_body {
                    return Ok(Taken::TooLarge(id));
                }
                active.stdin.extend_from_slice(record.content);
            }
            (fcgi::ABORT_REQUEST, Some(active)) if active.id == id => {
                fcgi::write_end_request(answers, id, 0, fcgi::REQUEST_COMPLETE);
                *self = Self::default();
            }
            (fcgi::GET_VALUES, _) => {
                let mut values = Vec::new();
                fcgi::write_pair(&mut values, b"FCGI_MPXS_CONNS", b"0");
                fcgi::write_records(answers, fcgi::GET_VALUES_RESULT, 0, &values);
            }
            (kind, _) if id == 0 => {
                fcgi::write_records(answers, fcgi::UNKNOWN_TYPE, 0, &[kind, 0, 0, 0, 0, 0, 0, 0]);
            }
            // Records of a request that is not the one in hand: ignored.
            _ => {}
        }
        Ok(Taken::More)
    }
}

/// The next whole request (management records answered on the way); None at the end.
async fn read_request(
    stream: &Stream,
    input: &mut Vec<u8>,
    shared: &HttpShared,
) -> Result<Option<FcgiRequest>, String> {
    let mut gathering = Gathering::default();
    loop {
        let mut answers = Vec::new();
        let mut consumed = 0;
        while !gathering.complete() {
            let Some((record, used)) =
                fcgi::parse_record(&input[consumed..]).map_err(|e| e.to_string())?
            else {
                break;
            };
            consumed += used;
            if let Taken::TooLarge(id) =
                gathering.take(record, &mut answers, shared.config.max_request_size)?
            {
                fcgi::write_records(&mut answers, fcgi::STDOUT, id, b"Status: 413 Request Entity Too Large\r\nContent-Type: text/plain\r\n\r\nrequest body too large\n");
                fcgi::write_records(&mut answers, fcgi::STDOUT, id, b"");
                fcgi::write_end_request(&mut answers, id, 0, fcgi::REQUEST_COMPLETE);
                let _ = stream.write_all(answers).await;
                return Ok(None);
            }
        }
        input.drain(..consumed);
        if !answers.is_empty() {
            let (written, _) = stream.write_all(answers).await;
            written.map_err(|e| e.to_string())?;
        }
        if gathering.complete() {
            return Ok(gathering.request);
        }
        if !read_more(stream, input, Some(shared))
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(None);
        }
    }
}

/// The value of the CGI parameter `name`.
fn param<'a>(params: &[fcgi::Param<'a>], name: &str) -> Option<&'a [u8]> {
    params
        .iter()
        .find(|(key, _)| *key == name.as_bytes())
        .map(|(_, value)| *value)
}

/// A value that fits on a header line.
fn one_line(value: &[u8]) -> bool {
    !value.iter().any(|b| matches!(b, b'\r' | b'\n'))
}

/// The request's CGI parameters as an HTTP/1.1 request, the client address and whether
/// the front server took it over TLS.
fn http_request(params: &[fcgi::Param<'_>], body_len: usize) -> (Vec<u8>, SocketAddr, bool) {
    let method = param(params, "REQUEST_METHOD")
        .filter(|m| !m.is_empty() && m.iter().all(u8::is_ascii_alphabetic))
        .unwrap_or(b"GET");
    let mut out = Vec::with_capacity(512 + body_len);
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(&request_target(params));
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    let host = param(params, "HTTP_HOST")
        .or(param(params, "SERVER_NAME"))
        .filter(|h| one_line(h))
        .unwrap_or(b"localhost");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n");
    if let Some(content_type) =
        param(params, "CONTENT_TYPE").filter(|v| !v.is_empty() && one_line(v))
    {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type);
        out.extend_from_slice(b"\r\n");
    }
    push_headers(params, &mut out);
    // No `Connection: close`: the pair's write side is shut after the request, so the
    // connection ends after its answer, and the worker sees the front server's headers
    // only (and a `Content-Length` where there is a body, as HTTP sends it).
    if body_len > 0 {
        out.extend_from_slice(format!("Content-Length: {body_len}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    let peer = std::str::from_utf8(param(params, "REMOTE_ADDR").unwrap_or_default())
        .ok()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map_or_else(
            || SocketAddr::from(([0, 0, 0, 0], 0)),
            |ip| {
                let port = std::str::from_utf8(param(params, "REMOTE_PORT").unwrap_or_default())
                    .ok()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                SocketAddr::new(ip, port)
            },
        );
    let https = param(params, "HTTPS").is_some_and(|v| v.eq_ignore_ascii_case(b"on"));
    (out, peer, https)
}

/// `REQUEST_URI`, else `SCRIPT_NAME` + `PATH_INFO` + `?QUERY_STRING`; `/` for anything that
/// is not an origin-form target.
fn request_target(params: &[fcgi::Param<'_>]) -> Vec<u8> {
    let target = param(params, "REQUEST_URI")
        .filter(|t| !t.is_empty())
        .map(<[u8]>::to_vec)
        .unwrap_or_else(|| {
            let mut target = param(params, "SCRIPT_NAME").unwrap_or_default().to_vec();
            target.extend_from_slice(param(params, "PATH_INFO").unwrap_or_default());
            if let Some(query) = param(params, "QUERY_STRING").filter(|q| !q.is_empty()) {
                target.push(b'?');
                target.extend_from_slice(query);
            }
            target
        });
    let origin_form = target.starts_with(b"/")
        && !target
            .iter()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    if origin_form {
        target
    } else {
        b"/".to_vec()
    }
}

/// The `HTTP_*` parameters as header lines (`HTTP_X_FOO` is `X-Foo`), but for those the
/// request line and framing own.
fn push_headers(params: &[fcgi::Param<'_>], out: &mut Vec<u8>) {
    for (name, value) in params {
        let Some(header) = name.strip_prefix(b"HTTP_") else {
            continue;
        };
        let owned = matches!(
            header,
            b"HOST"
                | b"CONNECTION"
                | b"TRANSFER_ENCODING"
                | b"CONTENT_LENGTH"
                | b"CONTENT_TYPE"
                | b"KEEP_ALIVE"
                | b"PROXY"
                | b"UPGRADE"
                | b"TE"
        );
        if owned
            || header.is_empty()
            || !header
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
            || !one_line(value)
        {
            continue;
        }
        for (index, byte) in header.iter().enumerate() {
            out.push(match byte {
                b'_' => b'-',
                b if index == 0 || header[index - 1] == b'_' => b.to_ascii_uppercase(),
                b => b.to_ascii_lowercase(),
            });
        }
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Serves `request` through the connection code on a socket pair and sends the answer back
/// as STDOUT records, then END_REQUEST.
async fn respond(
    stream: &Stream,
    request: FcgiRequest,
    shared: &Arc<HttpShared>,
    shard: &Rc<ShardContext>,
) -> Result<(), String> {
    let params = fcgi::parse_params(&request.params).map_err(|e| e.to_string())?;
    let (mut http, peer, https) = http_request(&params, request.stdin.len());
    http.extend_from_slice(&request.stdin);
    drop(request.stdin);
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    let backend = shard.backend();
    let client = Stream::new(ours, backend).map_err(|e| e.to_string())?;
    let server = Stream::new(theirs, backend).map_err(|e| e.to_string())?;
    let origin = super::conn::Origin { https };
    tokio::task::spawn_local(super::conn::serve(
        server,
        peer,
        origin,
        Arc::clone(shared),
        Rc::clone(shard),
    ));
    // The connection reads while this writes: a body larger than the pair's buffer flows.
    // (Answered early, a 413 or a 400, the write fails: the answer waits to be read.)
    let _ = client.write_all(http).await;
    let _ = client.shutdown(std::net::Shutdown::Write);
    relay_answer(&client, stream, request.id).await
}

/// Reads the connection's HTTP answer (unbounded here: the connection bounds its own
/// waits) and writes it to the front server as CGI.
async fn relay_answer(client: &Stream, stream: &Stream, id: u16) -> Result<(), String> {
    let mut input = Vec::with_capacity(READ_CHUNK);
    let mut out = Vec::with_capacity(WRITE_BATCH + 1024);
    let mut head_done = false;
    let mut chunked: Option<ChunkedDecoder> = None;
    let mut body = Vec::new();
    loop {
        let more = read_more(client, &mut input, None)
            .await
            .map_err(|e| e.to_string())?;
        if !head_done {
            match fcgi::cgi_head(&input) {
                Ok(Some(head)) => {
                    fcgi::write_records(&mut out, fcgi::STDOUT, id, &head.bytes);
                    input.drain(..head.consumed);
                    if head.chunked {
                        chunked = Some(ChunkedDecoder::within(&Http1Limits::default()));
                    }
                    head_done = true;
                }
                Ok(None) if more => continue,
                _ => {
                    fcgi::write_records(
                        &mut out,
                        fcgi::STDOUT,
                        id,
                        b"Status: 502 Bad Gateway\r\n\r\n",
                    );
                    input.clear();
                    head_done = true;
                }
            }
        }
        if head_done && !input.is_empty() {
            match &mut chunked {
                Some(decoder) => {
                    let used = decoder
                        .decode(&input, &mut body)
                        .map_err(|_| "a malformed chunked answer".to_owned())?;
                    input.drain(..used);
                    fcgi::write_stdout(&mut out, id, &body);
                    body.clear();
                }
                None => {
                    fcgi::write_stdout(&mut out, id, &input);
                    input.clear();
                }
            }
        }
        let finished = !more || chunked.as_ref().is_some_and(ChunkedDecoder::is_done);
        if finished {
            fcgi::write_records(&mut out, fcgi::STDOUT, id, b"");
            fcgi::write_end_request(&mut out, id, 0, fcgi::REQUEST_COMPLETE);
        }
        if finished || out.len() >= WRITE_BATCH {
            let batch = std::mem::replace(&mut out, Vec::with_capacity(WRITE_BATCH + 1024));
            let (written, _) = stream.write_all(batch).await;
            written.map_err(|e| e.to_string())?;
        }
        if finished {
            return Ok(());
        }
    }
}
