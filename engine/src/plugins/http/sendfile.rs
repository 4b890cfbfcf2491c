//! The `sendfile` middleware (rr's `send` plugin, spec devops § sendfile): a worker answer
//! that names a file in `X-Sendfile` is answered with that file, streamed by the server in
//! bounded chunks after the worker is back in the pool; the header is dropped and the
//! worker's body is ignored. As rr's plugin: a path with `..` is refused with 403, a file that
//! is not there gets 404 `not found`, one that cannot be read 500 with the error text, and the
//! file goes out as `application/octet-stream` with the worker's other headers.
//! *[beyond]* rr streams it chunked; here it carries its `Content-Length`.

use super::answer::{AnswerWriter, ConnectionLine};
use super::static_files::read_behind;
use super::wire;
use crate::aio::File;
use crate::config::go_io_error;
use std::path::{Component, Path, PathBuf};

/// The worker's header that names the file.
pub const HEADER: &[u8] = b"x-sendfile";

/// Bytes of the file read and written at a time (rr's plugin: 10 MiB buffers).
const CHUNK_BYTES: usize = 256 * 1024;

/// Where a response stands with the middleware.
#[derive(Debug, Default)]
pub enum Mode {
    /// `sendfile` is not in the middleware.
    #[default]
    Off,
    /// On: the worker's head is looked at.
    Watching,
    /// The worker named a file: its answer is replaced once the worker is back.
    Replace(SendFile),
}

/// A worker answer to be replaced by a file: its path and the worker's other header lines.
#[derive(Debug, Default)]
pub struct SendFile {
    /// As the worker wrote it.
    pub path: String,
    /// The worker's header lines (each ending in CRLF) but `X-Sendfile` and the framing
    /// and type headers the file's answer sets itself.
    pub header_lines: Vec<u8>,
}

/// True for the worker headers the file's answer writes itself.
#[must_use]
pub fn replaced_by_the_file(name: &[u8]) -> bool {
    [
        HEADER,
        b"content-type",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
    ]
    .iter()
    .any(|known| name.eq_ignore_ascii_case(known))
}

/// What the connection needs to know to write the answer.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// HEAD: the head only.
    pub is_head: bool,
    /// `Connection: close` goes on the answer.
    pub close: bool,
    /// Lines of the middleware chain (CORS, headers) before the worker's.
    pub middleware_head: &'a [u8],
}

/// How the answer went: its status and the bytes written; `None` bytes when the client went
/// away or stopped reading (the connection closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The status answered.
    pub status: u16,
    /// Bytes written; None when a write failed.
    pub written: Option<u64>,
}

/// The path as the file is opened: `..` anywhere refuses it (rr cleans the path and
/// refuses what still climbs).
fn allowed_path(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    if path.components().any(|part| part == Component::ParentDir) {
        return None;
    }
    Some(path.to_path_buf())
}

/// Answers with the file `send` names, through `writer`.
pub(crate) async fn answer<W: AnswerWriter>(
    writer: &mut W,
    send: &SendFile,
    how: Answer<'_>,
    out: &mut Vec<u8>,
) -> Sent {
    let Some(path) = allowed_path(&send.path) else {
        tracing::warn!(target: "http", path = %send.path, "X-Sendfile path with '..' refused");
        return plain(writer, send, how, out, 403, b"").await;
    };
    let opened = File::open(&path, writer.backend()).await;
    let file = match opened {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(target: "http", path = %path.display(), "X-Sendfile file not found");
            return plain(writer, send, how, out, 404, b"not found\n").await;
        }
        Err(error) => {
            let text = format!("open {}: {}\n", path.display(), go_io_error(&error));
            tracing::error!(target: "http", path = %path.display(), %error, "X-Sendfile file cannot be opened");
            return plain(writer, send, how, out, 500, text.as_bytes()).await;
        }
    };
    let sent = stream_file(writer, send, how, out, &file, &path).await;
    let _ = file.close().await;
    sent
}

async fn stream_file<W: AnswerWriter>(
    writer: &mut W,
    send: &SendFile,
    how: Answer<'_>,
    out: &mut Vec<u8>,
    file: &File,
    path: &Path,
) -> Sent {
    let size = match file.facts().await {
        Ok(facts) if !facts.is_dir => facts.size,
        Ok(_) => {
            let text = format!("read {}: is a directory\n", path.display());
            return plain(writer, send, how, out, 500, text.as_bytes()).await;
        }
        Err(error) => {
            let text = format!("stat {}: {}\n", path.display(), go_io_error(&error));
            return plain(writer, send, how, out, 500, text.as_bytes()).await;
        }
    };
    head(
        writer,
        out,
        send,
        how,
        (200, b"application/octet-stream"),
        size,
    );
    let mut written = 0u64;
    let mut position = 0u64;
    while !how.is_head && position < size {
        let want = usize::try_from(size - position)
            .unwrap_or(usize::MAX)
            .min(CHUNK_BYTES);
        let (read, buf) = read_behind(file, std::mem::take(out), want, position).await;
        *out = buf;
        let Some(read) = read else {
            // The file shrank or failed mid-way: the length is out, so only a close tells.
            tracing::warn!(target: "http", path = %path.display(), "X-Sendfile file shrank or failed while being sent");
            return Sent {
                status: 200,
                written: None,
            };
        };
        position += read as u64;
        let Some(bytes) = write(writer, out, position == size).await else {
            return Sent {
                status: 200,
                written: None,
            };
        };
        written += bytes;
    }
    if !out.is_empty() {
        let Some(bytes) = write(writer, out, true).await else {
            return Sent {
                status: 200,
                written: None,
            };
        };
        written += bytes;
    }
    Sent {
        status: 200,
        written: Some(written),
    }
}

/// One of rr's plain answers (403, 404, 500) with the worker's other headers.
async fn plain<W: AnswerWriter>(
    writer: &mut W,
    send: &SendFile,
    how: Answer<'_>,
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
) -> Sent {
    let content_type: &[u8] = if body.is_empty() {
        b""
    } else {
        b"text/plain; charset=utf-8"
    };
    head(
        writer,
        out,
        send,
        how,
        (status, content_type),
        body.len() as u64,
    );
    if !how.is_head {
        out.extend_from_slice(body);
    }
    let written = write(writer, out, true).await;
    Sent { status, written }
}

/// The answer's head into `out`.
fn head<W: AnswerWriter>(
    writer: &mut W,
    out: &mut Vec<u8>,
    send: &SendFile,
    how: Answer<'_>,
    (status, content_type): (u16, &[u8]),
    length: u64,
) {
    writer.open_head(out, status);
    out.extend_from_slice(how.middleware_head);
    out.extend_from_slice(&send.header_lines);
    if !content_type.is_empty() {
        wire::header(out, b"Content-Type", content_type);
    }
    if status >= 400 && !content_type.is_empty() {
        wire::header(out, b"X-Content-Type-Options", b"nosniff");
    }
    wire::date_header(out, crate::clock::unix_seconds());
    let mut digits = Vec::with_capacity(20);
    wire::push_decimal(&mut digits, length);
    wire::header(out, b"Content-Length", &digits);
    let connection = ConnectionLine::of(how.close, writer.minor_version());
    writer.close_head(out, false, connection);
}

/// Sends and empties `out` (`last`: the answer ends with it); the bytes written, None when
/// the client is gone or stalled.
async fn write<W: AnswerWriter>(writer: &mut W, out: &mut Vec<u8>, last: bool) -> Option<u64> {
    writer.send(out, last).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_climb_are_refused() {
        assert!(allowed_path("/srv/files/a.bin").is_some());
        assert!(allowed_path("files/./a.bin").is_some());
        assert!(allowed_path("/srv/../etc/passwd").is_none());
        assert!(allowed_path("../a").is_none());
        assert!(allowed_path("/srv/a..b").is_some());
    }

    #[test]
    fn the_file_writes_its_own_framing_and_type() {
        for name in [
            &b"X-Sendfile"[..],
            b"content-length",
            b"Content-Type",
            b"Transfer-Encoding",
        ] {
            assert!(replaced_by_the_file(name));
        }
        assert!(!replaced_by_the_file(b"Content-Disposition"));
    }
}
