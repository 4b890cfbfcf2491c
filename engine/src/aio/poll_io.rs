//! A shard [`Stream`] behind tokio's poll-based `AsyncRead` and `AsyncWrite`, for a
//! protocol crate written against them (h2). The owned-buffer operations underneath stay
//! the shard's own (io_uring or epoll): one read and one write in flight at most, each a
//! boxed future holding its buffer, polled by the crate's poll calls.
//!
//! Writes are taken behind: a write is accepted into a queue and reported done while the
//! previous one is still in flight, up to [`QUEUE_HIGH_WATER`] bytes; `poll_flush` waits
//! for all of it. Each write to the socket is bounded by the write timeout, so a peer that
//! stops reading ends the connection instead of holding it.

use super::Stream;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 32 * 1024;
/// Bytes queued behind an in-flight write before writes wait.
const QUEUE_HIGH_WATER: usize = 256 * 1024;

type ReadOp = Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>)>>>;
type WriteOp = Pin<Box<dyn Future<Output = (io::Result<()>, Vec<u8>)>>>;

/// A stream read and written through poll calls.
pub struct PollStream {
    stream: Rc<Stream>,
    /// Bytes read and not yet handed out, from `taken` on.
    input: Vec<u8>,
    taken: usize,
    reading: Option<ReadOp>,
    /// Bytes accepted and not yet given to a write.
    queued: Vec<u8>,
    writing: Option<WriteOp>,
    /// The buffer the last write gave back, reused for the next.
    spare: Vec<u8>,
    write_timeout: Duration,
}

impl std::fmt::Debug for PollStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollStream")
            .field("stream", &self.stream)
            .field("queued", &self.queued.len())
            .finish_non_exhaustive()
    }
}

impl PollStream {
    /// `stream` read and written by poll calls; `seed` holds bytes already read off it,
    /// handed out first; each write is bounded by `write_timeout`.
    #[must_use]
    pub fn new(stream: Rc<Stream>, seed: Vec<u8>, write_timeout: Duration) -> Self {
        Self {
            stream,
            input: seed,
            taken: 0,
            reading: None,
            queued: Vec::new(),
            writing: None,
            spare: Vec::new(),
            write_timeout,
        }
    }

    /// Polls the write in flight; when it is done and bytes are queued, starts the next.
    /// Ok with a write still in flight means the waker is registered.
    fn drive_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if let Some(op) = self.writing.as_mut() {
                let Poll::Ready((result, buf)) = op.as_mut().poll(cx) else {
                    return Ok(());
                };
                self.writing = None;
                self.spare = buf;
                result?;
            }
            if self.queued.is_empty() {
                return Ok(());
            }
            self.spare.clear();
            let buf = std::mem::replace(&mut self.queued, std::mem::take(&mut self.spare));
            let stream = Rc::clone(&self.stream);
            let limit = self.write_timeout;
            self.writing = Some(Box::pin(async move {
                match tokio::time::timeout(limit, stream.write_all(buf)).await {
                    Ok(done) => done,
                    Err(_) => (Err(io::ErrorKind::TimedOut.into()), Vec::new()),
                }
            }));
        }
    }
}

impl AsyncRead for PollStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken == this.input.len() {
            let op = this.reading.get_or_insert_with(|| {
                let mut buf = std::mem::take(&mut this.input);
                buf.clear();
                this.taken = 0;
                buf.reserve(READ_CHUNK);
                let stream = Rc::clone(&this.stream);
                Box::pin(async move { stream.read(buf).await })
            });
            let Poll::Ready((result, buf)) = op.as_mut().poll(cx) else {
                return Poll::Pending;
            };
            this.reading = None;
            this.input = buf;
            this.taken = 0;
            if let Err(error) = result {
                return Poll::Ready(Err(error));
            }
            // Ok(0) leaves `input` empty: `out` stays unfilled, the end of the stream.
        }
        let available = &this.input[this.taken..];
        let count = available.len().min(out.remaining());
        out.put_slice(&available[..count]);
        this.taken += count;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for PollStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.drive_write(cx)?;
        if this.queued.len() >= QUEUE_HIGH_WATER {
            return Poll::Pending;
        }
        this.queued.extend_from_slice(buf);
        // Starts it now when nothing is in flight (the waker is the same either way).
        this.drive_write(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.drive_write(cx)?;
        if this.writing.is_some() {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.drive_write(cx)?;
        if this.writing.is_some() {
            return Poll::Pending;
        }
        let _ = this.stream.shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}
