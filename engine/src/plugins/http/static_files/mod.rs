//! The `static` middleware (spec http-extras §2): files under `http.static.dir` answered on
//! the shard without a PHP hop, with rr's decision procedure and ETags and Go's
//! `ServeContent` behaviour (conditional requests, byte ranges, HEAD). Files are opened,
//! stat'ed and read through the shard's io_uring ring, in chunks of a reused buffer: a large
//! file costs one chunk of memory, and one open file per request in flight.

pub mod rules;

use super::answer::{AnswerWriter, ConnectionLine};
use super::gzip;
use super::head::Head;
use super::wire;
use crate::aio::File;
use crate::plugins::client_io::WriteEnd;
use rules::{ByteRange, Conditions, Decision, MimeTypes, Precondition, RangeAsk};
use std::path::PathBuf;

/// Bytes read from a file per chunk.
const CHUNK_BYTES: usize = 256 * 1024;

/// `http.static`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticConfig {
    /// `dir`: the root.
    pub dir: PathBuf,
    /// `forbid`: extensions never served (lower case, with the dot).
    pub forbid: Vec<String>,
    /// `allow`: when not empty, the only extensions served.
    pub allow: Vec<String>,
    /// `calculate_etag`.
    pub calculate_etag: bool,
    /// `weak`: the name-based ETag.
    pub weak: bool,
    /// `response`: headers set on every static answer.
    pub response: Vec<(String, String)>,
}

/// The middleware, ready to serve.
#[derive(Debug)]
pub struct StaticFiles {
    config: StaticConfig,
    types: MimeTypes,
}

/// What the middleware did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not a static file: relay it to the worker.
    Pass,
    /// Answered; `keep_open` says whether the connection goes on.
    Answered {
        /// The connection may serve the next request.
        keep_open: bool,
    },
}

/// What the answer needs to know of the file.
#[derive(Debug, Clone, Copy)]
struct FileFacts<'a> {
    file: &'a File,
    size: u64,
    content_type: &'a str,
    is_head: bool,
}

/// What one request needs of its connection.
pub struct StaticRequest<'a> {
    /// The read buffer holding the head.
    pub buf: &'a [u8],
    /// The parsed head.
    pub head: &'a Head,
    /// The connection may stay open after this answer.
    pub keep_alive: bool,
    /// Header lines of the middleware outside this one (`headers` listed after `static`).
    pub middleware_head: &'a [u8],
    /// `gzip` wraps this middleware and the client accepts gzip (not HEAD).
    pub compress: bool,
}

impl std::fmt::Debug for StaticRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticRequest")
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl StaticFiles {
    /// The middleware over `config`, with the system's MIME types (`/etc/mime.types`).
    #[must_use]
    pub fn new(config: StaticConfig) -> Self {
        let types = std::fs::read_to_string("/etc/mime.types")
            .map(|text| MimeTypes::from_mime_types(&text))
            .unwrap_or_default();
        Self { config, types }
    }

    /// Answers `request` when it names a static file; `scratch` is the connection's reused
    /// buffer for headers and file chunks.
    pub(crate) async fn serve<W: AnswerWriter>(
        &self,
        request: &StaticRequest<'_>,
        writer: &mut W,
        scratch: &mut Vec<u8>,
    ) -> Outcome {
        let target = &request.buf[request.head.target.clone()];
        let Some(path) = rules::decoded_path(target) else {
            return Outcome::Pass;
        };
        let relative = match rules::decide(&path, &self.config.forbid, &self.config.allow) {
            Decision::Pass => return Outcome::Pass,
            Decision::Forbidden => {
                return self.answer(request, writer, scratch, 403, &[], b"").await;
            }
            Decision::Try(relative) => relative,
        };
        let full = self.config.dir.join(&relative);
        let Ok(file) = File::open(&full, writer.backend()).await else {
            tracing::debug!(target: "http", path = %full.display(), "no static file, passed on");
            return Outcome::Pass;
        };
        let Ok(facts) = file.facts().await else {
            let _ = file.close().await;
            return Outcome::Pass;
        };
        if facts.is_dir {
            tracing::warn!(target: "http", path = %full.display(), "path to dir provided, not serving dir");
            let _ = file.close().await;
            return Outcome::Pass;
        }
        let served = self
            .serve_file(
                request,
                writer,
                scratch,
                &file,
                &relative,
                facts.size,
                facts.modified_unix,
            )
            .await;
        let _ = file.close().await;
        served
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve_file<W: AnswerWriter>(
        &self,
        request: &StaticRequest<'_>,
        writer: &mut W,
        scratch: &mut Vec<u8>,
        file: &File,
        relative: &std::path::Path,
        size: u64,
        mtime: i64,
    ) -> Outcome {
        let mtime = u64::try_from(mtime).unwrap_or(0);
        let name = relative
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let etag = if !self.config.calculate_etag {
            None
        } else if self.config.weak {
            Some(rules::weak_etag(&name))
        } else {
            match content_crc(file, size, scratch).await {
                Some(crc) => rules::strong_etag(size, crc),
                None => return Outcome::Pass,
            }
        };
        let (head, buf) = (request.head, request.buf);
        let text = |name: &'static str| {
            head.value(buf, name)
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        let method = &buf[head.method.clone()];
        let is_head = method == b"HEAD";
        let get_or_head = is_head || method == b"GET";
        let conditions = Conditions {
            if_match: text("if-match"),
            if_unmodified_since: text("if-unmodified-since"),
            if_none_match: text("if-none-match"),
            if_modified_since: text("if-modified-since"),
        };
        let last_modified = (mtime > 0).then(|| wire::imf_fixdate(mtime));
        match rules::precondition(&conditions, etag.as_deref(), mtime, get_or_head) {
            Precondition::Serve => {}
            Precondition::NotModified => {
                let mut headers: Vec<(&str, &str)> = Vec::new();
                if let Some(etag) = &etag {
                    headers.push(("Etag", etag));
                } else if let Some(modified) = &last_modified {
                    headers.push(("Last-Modified", modified));
                }
                return self
                    .answer(request, writer, scratch, 304, &headers, b"")
                    .await;
            }
            Precondition::Failed => {
                return self.answer(request, writer, scratch, 412, &[], b"").await
            }
        }
        let content_type = match self.types.by_name(&name) {
            Some(known) => known.to_owned(),
            None => {
                scratch.clear();
                let (_, head) = read_behind(file, std::mem::take(scratch), 512, 0).await;
                *scratch = head;
                rules::sniff(scratch).to_owned()
            }
        };
        let if_range_ok = text("if-range").is_none_or(|validator| {
            etag.as_deref() == Some(validator.trim())
                || last_modified.as_deref() == Some(validator.trim())
        });
        let ranges = match text("range").filter(|_| if_range_ok) {
            None => RangeAsk::Whole,
            Some(header) => rules::parse_range(header, size),
        };
        let mut validators: Vec<(&str, &str)> = vec![("Accept-Ranges", "bytes")];
        if let Some(modified) = &last_modified {
            validators.push(("Last-Modified", modified));
        }
        if let Some(etag) = &etag {
            validators.push(("Etag", etag));
        }
        let facts = FileFacts {
            file,
            size,
            content_type: &content_type,
            is_head,
        };
        self.send(request, writer, scratch, ranges, validators, &facts)
            .await
    }

    /// Answers with the whole file, one range (206), several (206 multipart) or 416.
    async fn send<W: AnswerWriter>(
        &self,
        request: &StaticRequest<'_>,
        writer: &mut W,
        scratch: &mut Vec<u8>,
        ranges: RangeAsk,
        mut headers: Vec<(&str, &str)>,
        facts: &FileFacts<'_>,
    ) -> Outcome {
        let FileFacts {
            file,
            size,
            content_type,
            is_head,
        } = *facts;
        let size_text = size.to_string();
        match ranges {
            RangeAsk::Unsatisfiable => {
                let content_range = format!("bytes */{size}");
                let headers = [
                    ("Content-Range", content_range.as_str()),
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("X-Content-Type-Options", "nosniff"),
                ];
                self.answer(
                    request,
                    writer,
                    scratch,
                    416,
                    &headers,
                    b"invalid range: failed to overlap\n",
                )
                .await
            }
            RangeAsk::Whole
                if request.compress
                    && (gzip::MIN_SIZE..=gzip::STATIC_MAX).contains(&size)
                    && gzip::type_compressible(content_type) =>
            {
                let Some(content) = read_whole(file, size).await else {
                    return Outcome::Answered { keep_open: false };
                };
                let packed = gzip::compress(&content);
                headers.retain(|(name, _)| *name != "Accept-Ranges");
                headers.push(("Content-Type", content_type));
                headers.push(("Content-Encoding", "gzip"));
                self.answer(request, writer, scratch, 200, &headers, &packed)
                    .await
            }
            RangeAsk::Whole => {
                headers.push(("Content-Type", content_type));
                headers.push(("Content-Length", &size_text));
                let whole = [ByteRange {
                    start: 0,
                    end: size.saturating_sub(1),
                }];
                let body = if is_head || size == 0 {
                    &[][..]
                } else {
                    &whole[..]
                };
                self.stream_parts(request, writer, scratch, 200, &headers, file, body, None)
                    .await
            }
            RangeAsk::Partial(parts) if parts.len() == 1 => {
                let part = parts[0];
                let content_range = format!("bytes {}-{}/{size}", part.start, part.end);
                let length = part.len().to_string();
                headers.push(("Content-Type", content_type));
                headers.push(("Content-Range", &content_range));
                headers.push(("Content-Length", &length));
                let body = if is_head { &[][..] } else { &parts[..] };
                self.stream_parts(request, writer, scratch, 206, &headers, file, body, None)
                    .await
            }
            RangeAsk::Partial(parts) => {
                let boundary = format!("{:016x}", crate::clock::unix_now().as_nanos() as u64);
                let prefixes: Vec<String> = parts
                    .iter()
                    .enumerate()
                    .map(|(index, part)| {
                        format!(
                            "{}--{boundary}\r\nContent-Range: bytes {}-{}/{size}\r\nContent-Type: {content_type}\r\n\r\n",
                            if index == 0 { "" } else { "\r\n" },
                            part.start,
                            part.end
                        )
                    })
                    .collect();
                let closing = format!("\r\n--{boundary}--\r\n");
                let length: u64 = prefixes.iter().map(|p| p.len() as u64).sum::<u64>()
                    + parts.iter().map(ByteRange::len).sum::<u64>()
                    + closing.len() as u64;
                let kind = format!("multipart/byteranges; boundary={boundary}");
                let length = length.to_string();
                headers.push(("Content-Type", &kind));
                headers.push(("Content-Length", &length));
                let body = if is_head { &[][..] } else { &parts[..] };
                let framing = (!is_head).then_some((prefixes.as_slice(), closing.as_str()));
                self.stream_parts(request, writer, scratch, 206, &headers, file, body, framing)
                    .await
            }
        }
    }

    /// Writes a head (with the configured `response` headers) and a small body.
    async fn answer<W: AnswerWriter>(
        &self,
        request: &StaticRequest<'_>,
        writer: &mut W,
        scratch: &mut Vec<u8>,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Outcome {
        let length = wire::status_has_body(status).then_some(body.len());
        self.write_head(request, writer, scratch, (status, headers), length);
        scratch.extend_from_slice(body);
        let written = writer.send(scratch, true).await;
        finish(request, written)
    }

    fn write_head<W: AnswerWriter>(
        &self,
        request: &StaticRequest<'_>,
        writer: &mut W,
        out: &mut Vec<u8>,
        (status, headers): (u16, &[(&str, &str)]),
        content_length: Option<usize>,
    ) {
        writer.open_head(out, status);
        out.extend_from_slice(request.middleware_head);
        for (name, value) in headers {
            wire::header(out, name.as_bytes(), value.as_bytes());
        }
        for (name, value) in &self.config.response {
            wire::canonical_header(out, name.as_bytes(), value.as_bytes());
        }
        if let Some(length) = content_length {
            wire::header(out, b"Content-Length", length.to_string().as_bytes());
        }
        wire::date_header(out, crate::clock::unix_seconds());
        let connection = if request.keep_alive {
            ConnectionLine::Kept
        } else {
            ConnectionLine::Close
        };
        writer.close_head(out, false, connection);
    }

    /// Writes the head, then each range of `file` (with multipart framing when given), in
    /// chunks of the reused buffer.
    #[allow(clippy::too_many_arguments)]
    async fn stream_parts<W: AnswerWriter>(
        &self,
        request: &StaticRequest<'_>,
        writer: &mut W,
        scratch: &mut Vec<u8>,
        status: u16,
        headers: &[(&str, &str)],
        file: &File,
        parts: &[ByteRange],
        framing: Option<(&[String], &str)>,
    ) -> Outcome {
        self.write_head(request, writer, scratch, (status, headers), None);
        for (index, part) in parts.iter().enumerate() {
            if let Some((prefixes, _)) = framing {
                scratch.extend_from_slice(prefixes[index].as_bytes());
            }
            let mut position = part.start;
            while position <= part.end {
                let want = usize::try_from(part.end - position + 1)
                    .unwrap_or(usize::MAX)
                    .min(CHUNK_BYTES);
                // The chunk is read behind what is already buffered (the head, a prefix).
                let (read, buf) = read_behind(file, std::mem::take(scratch), want, position).await;
                *scratch = buf;
                let Some(read) = read else {
                    tracing::warn!(target: "http", "static file shrank or failed while being sent");
                    return Outcome::Answered { keep_open: false };
                };
                position += read as u64;
                // The last range's last chunk ends the answer unless a closing follows.
                let last = framing.is_none() && index + 1 == parts.len() && position > part.end;
                let written = writer.send(scratch, last).await;
                if written.is_err() || last {
                    return finish(request, written);
                }
            }
        }
        if let Some((_, closing)) = framing {
            scratch.extend_from_slice(closing.as_bytes());
        }
        let written = writer.send(scratch, true).await;
        finish(request, written)
    }
}

/// Says whether the connection goes on after the answer's last write.
fn finish(request: &StaticRequest<'_>, written: Result<u64, WriteEnd>) -> Outcome {
    if let Err(WriteEnd::Stalled) = written {
        tracing::warn!(target: "http", "client stopped reading a static file, connection closed");
    }
    Outcome::Answered {
        keep_open: written.is_ok() && request.keep_alive,
    }
}

/// The whole file (for compression), read through the ring.
async fn read_whole(file: &File, size: u64) -> Option<Vec<u8>> {
    let size = usize::try_from(size).ok()?;
    let mut content = Vec::with_capacity(size);
    while content.len() < size {
        let want = size - content.len();
        let (read, buf) = read_behind(file, content, want, (size - want) as u64).await;
        content = buf;
        read?;
    }
    Some(content)
}

/// rr's strong ETag checksum of the whole file, read in chunks.
async fn content_crc(file: &File, size: u64, scratch: &mut Vec<u8>) -> Option<u32> {
    let mut crc = 0;
    let mut position = 0;
    while position < size {
        scratch.clear();
        let (read, buf) = read_behind(file, std::mem::take(scratch), CHUNK_BYTES, position).await;
        *scratch = buf;
        let read = read?;
        crc = rules::etag_crc(crc, scratch);
        position += read as u64;
    }
    scratch.clear();
    Some(crc)
}

/// Reads up to `want` bytes of `file` at `position` into `buf`, behind the bytes it already
/// holds: the count (None at EOF or on an error) and the buffer, its length grown by it.
pub(super) async fn read_behind(
    file: &File,
    mut buf: Vec<u8>,
    want: usize,
    position: u64,
) -> (Option<usize>, Vec<u8>) {
    use tokio_uring::buf::BoundedBuf;
    let filled = buf.len();
    buf.reserve(want);
    let (read, slice) = file
        .read_at(buf.slice(filled..filled + want), position)
        .await;
    let mut buf = slice.into_inner();
    let read = read.ok().filter(|n| *n > 0);
    buf.truncate(filled + read.unwrap_or(0));
    (read, buf)
}

/// Warns at start when `dir` holds `.php` files that the config would serve as source
/// (Octane's `public/index.php` with no `forbid` list).
pub fn warn_about_php_sources(config: &StaticConfig) {
    let forbidden = config.forbid.iter().any(|ext| ext == ".php")
        || (!config.allow.is_empty() && !config.allow.iter().any(|ext| ext == ".php"));
    if forbidden {
        return;
    }
    let has_php = std::fs::read_dir(&config.dir).is_ok_and(|entries| {
        entries.flatten().take(10_000).any(|entry| {
            entry
                .path()
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("php"))
        })
    });
    if has_php {
        tracing::warn!(target: "http", dir = %config.dir.display(),
            "http.static serves .php files in its dir as source text: add \".php\" to http.static.forbid");
    }
}
