//! `http.fcgi` (spec http-extras §7.1): a FastCGI responder, so a front server (nginx's
//! `fastcgi_pass`) can hand requests to the PHP workers. Each request's CGI parameters and
//! body become an exchange of the request core (the same middleware, context, pool relay,
//! error answers, log and metrics as an HTTP client's request), and its answer goes back
//! through an [`FcgiWriter`]: CGI `Status:` and headers, then the body, in STDOUT records.
//! One request at a time per connection (nginx multiplexes nothing); `FCGI_KEEP_CONN`
//! is honoured.

use super::answer::{AnswerWriter, ConnectionLine};
use super::exchange::{self, Arrival, Buffers, HeadBuilder};
use super::head::Head;
use super::wire;
use super::HttpShared;
use crate::aio::{Backend, Stream};
use crate::plugins::client_io::{write_all_within, WriteEnd};
use crate::runtime::ShardContext;
use ringrunner_protocol::fcgi;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 * 1024;
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

/// Reads more bytes within `read_header_timeout`; false at the end.
async fn read_more(
    stream: &Stream,
    input: &mut Vec<u8>,
    shared: &HttpShared,
) -> std::io::Result<bool> {
    let read = stream.read_appending(input, READ_CHUNK);
    let count = tokio::time::timeout(shared.read_header_timeout, read)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
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
        if !read_more(stream, input, shared)
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

/// The request's CGI parameters as the exchange's head (in `buf`), the client address and
/// whether the front server took it over TLS. The worker sees the front server's headers
/// only, and a `Content-Length` where there is a body (as HTTP sends it).
fn exchange_head(
    params: &[fcgi::Param<'_>],
    body_len: usize,
    buf: &mut Vec<u8>,
    head: &mut Head,
) -> (SocketAddr, bool) {
    let method = param(params, "REQUEST_METHOD")
        .filter(|m| !m.is_empty() && m.iter().all(u8::is_ascii_alphabetic))
        .unwrap_or(b"GET");
    let mut builder = HeadBuilder::new(buf, head, method, &request_target(params));
    let host = param(params, "HTTP_HOST")
        .or(param(params, "SERVER_NAME"))
        .filter(|h| one_line(h))
        .unwrap_or(b"localhost");
    builder.field(b"Host", host);
    if let Some(content_type) =
        param(params, "CONTENT_TYPE").filter(|v| !v.is_empty() && one_line(v))
    {
        builder.field(b"Content-Type", content_type);
    }
    push_headers(params, &mut builder);
    if body_len > 0 {
        builder.field(b"Content-Length", body_len.to_string().as_bytes());
    }
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
    (peer, https)
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

/// The `HTTP_*` parameters as header fields (`HTTP_X_FOO` is `X-Foo`), but for those the
/// request line and framing own.
fn push_headers(params: &[fcgi::Param<'_>], builder: &mut HeadBuilder<'_>) {
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
        builder.field_with(|out| {
            for (index, byte) in header.iter().enumerate() {
                out.push(match byte {
                    b'_' => b'-',
                    b if index == 0 || header[index - 1] == b'_' => b.to_ascii_uppercase(),
                    b => b.to_ascii_lowercase(),
                });
            }
            let value_start = out.len();
            out.extend_from_slice(value);
            value_start
        });
    }
}

/// Serves `request` through the request core and sends the answer back as STDOUT records,
/// then END_REQUEST.
async fn respond(
    stream: &Stream,
    request: FcgiRequest,
    shared: &Arc<HttpShared>,
    shard: &Rc<ShardContext>,
) -> Result<(), String> {
    let started = Instant::now();
    let params = fcgi::parse_params(&request.params).map_err(|e| e.to_string())?;
    let mut buffers = Buffers::default();
    buffers.body = request.stdin;
    let (peer, https) = exchange_head(
        &params,
        buffers.body.len(),
        &mut buffers.buf,
        &mut buffers.head,
    );
    let mut writer = FcgiWriter::new(
        stream,
        request.id,
        shard.backend(),
        shared.config.write_timeout,
    );
    let arrival = Arrival {
        peer,
        started,
        https,
        http2: false,
    };
    exchange::serve_whole(&mut buffers, arrival, (shared, shard), &mut writer).await;
    writer.end().await
}

/// An answer written to a FastCGI front server ([`AnswerWriter`]): a CGI head (`Status:`
/// and the header lines), the body, all in STDOUT records, then END_REQUEST. Interim (1xx)
/// heads and trailers have no CGI form and are left out.
struct FcgiWriter<'a> {
    stream: &'a Stream,
    id: u16,
    backend: Backend,
    write_timeout: std::time::Duration,
    /// The records being written (reused).
    records: Vec<u8>,
    /// The head being built is an interim one (dropped).
    interim: bool,
    /// END_REQUEST went out, or the connection failed.
    ended: bool,
    failed: bool,
}

impl<'a> FcgiWriter<'a> {
    fn new(
        stream: &'a Stream,
        id: u16,
        backend: Backend,
        write_timeout: std::time::Duration,
    ) -> Self {
        Self {
            stream,
            id,
            backend,
            write_timeout,
            records: Vec::new(),
            interim: false,
            ended: false,
            failed: false,
        }
    }

    /// Ends the request if the answer did not (an answer cut short); Err when the front
    /// server's connection failed (it is closed).
    async fn end(mut self) -> Result<(), String> {
        if !self.ended && !self.failed {
            let _ = self.send(&mut Vec::new(), true).await;
        }
        if self.failed {
            return Err("the front server did not take the answer".into());
        }
        Ok(())
    }
}

impl AnswerWriter for FcgiWriter<'_> {
    fn minor_version(&self) -> u8 {
        1
    }

    fn backend(&self) -> Backend {
        self.backend
    }

    fn open_head(&mut self, out: &mut Vec<u8>, status: u16) {
        out.clear();
        self.interim = status < 200;
        out.extend_from_slice(b"Status: ");
        wire::push_decimal(out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(wire::reason(status).as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    fn close_head(&mut self, out: &mut Vec<u8>, _streamed: bool, _connection: ConnectionLine) {
        if std::mem::take(&mut self.interim) {
            out.clear();
            return;
        }
        out.extend_from_slice(b"\r\n");
    }

    fn push_chunk(&mut self, out: &mut Vec<u8>, body: &[u8]) {
        out.extend_from_slice(body);
    }

    fn end_chunks(&mut self, _out: &mut Vec<u8>, _trailer_lines: &[u8]) {}

    async fn send(&mut self, out: &mut Vec<u8>, last: bool) -> Result<u64, WriteEnd> {
        if self.ended || self.failed {
            return Err(WriteEnd::Closed);
        }
        let total = out.len() as u64;
        let mut records = std::mem::take(&mut self.records);
        records.clear();
        fcgi::write_stdout(&mut records, self.id, out);
        out.clear();
        if last {
            fcgi::write_records(&mut records, fcgi::STDOUT, self.id, b"");
            fcgi::write_end_request(&mut records, self.id, 0, fcgi::REQUEST_COMPLETE);
            self.ended = true;
        }
        if records.is_empty() {
            return Ok(0);
        }
        let (written, returned) = write_all_within(self.stream, records, self.write_timeout).await;
        if let Some(returned) = returned {
            self.records = returned;
        }
        self.failed = written.is_err();
        written.map(|()| total)
    }
}
