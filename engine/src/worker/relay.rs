//! Frame I/O on a worker's relay, on the calling shard's I/O backend.
//!
//! A pool is shared by every shard but I/O handles belong to one shard (its ring or its
//! reactor), so each shard
//! keeps its own handles to a worker's relay: `dup`s of the descriptors the slot owns, made
//! the first time the shard uses that worker and cached by (pool, slot, generation). The hot
//! path is a cache lookup; the cost of a `dup` is paid once per worker per shard.

use crate::aio::{Backend, Stream};
use ringrunner_protocol::{Frame, FrameDecoder, FrameError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::BorrowedFd;
use tokio_uring::buf::BoundedBuf;

/// Bytes asked of the kernel per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a relay exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A read or write failed.
    #[error("relay I/O error: {0}")]
    Io(#[from] io::Error),
    /// The worker closed its end (it exited).
    #[error("relay closed by the worker")]
    Closed,
    /// The worker sent bytes that are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// One shard's handles to one worker's relay.
#[derive(Debug)]
pub struct RelayIo {
    write: Stream,
    read: Stream,
    decoder: FrameDecoder,
}

impl RelayIo {
    /// Handles on this shard (doing I/O on `backend`) for the given descriptors (duplicated:
    /// the caller keeps its own).
    ///
    /// # Errors
    /// When `dup` fails (descriptor limit) or epoll refuses the descriptor.
    pub fn from_fds(
        write: BorrowedFd<'_>,
        read: BorrowedFd<'_>,
        max_payload_bytes: u32,
        backend: Backend,
    ) -> io::Result<Self> {
        Ok(Self {
            write: Stream::new(write.try_clone_to_owned()?, backend)?,
            read: Stream::new(read.try_clone_to_owned()?, backend)?,
            decoder: FrameDecoder::new(max_payload_bytes),
        })
    }

    /// Writes all of `buf` (a socket takes a large frame in several short writes); hands
    /// the buffer back for reuse.
    pub async fn send(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.write.write_all(buf).await
    }

    /// Writes the bytes `range` of `buf`, the last of a request, and meanwhile reads the
    /// start of the reply into the decoder: the worker answers once the request is whole, so
    /// the read just waits for it, and the caller is woken once for both instead of once
    /// per operation. A write error ends it at once (the read is dropped: no reply comes to
    /// a request that did not get through); a read error with the write done is the
    /// reply's. Without a read when a frame is already buffered.
    pub async fn send_range_then_read(
        &mut self,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
    ) -> (Result<(), RelayError>, Vec<u8>) {
        match self.decoder.has_frame() {
            Ok(false) => {}
            Ok(true) | Err(_) => {
                let (sent, buf) = self.write.write_range(buf, range).await;
                return (sent.map_err(RelayError::from), buf);
            }
        }
        let Self {
            write,
            read,
            decoder,
        } = self;
        let write = write.write_range(buf, range);
        let read = read_more(read, decoder);
        tokio::pin!(write, read);
        let mut read_result = None;
        let (sent, buf) = loop {
            tokio::select! {
                biased;
                written = &mut write => break written,
                result = &mut read, if read_result.is_none() => read_result = Some(result),
            }
        };
        if let Err(error) = sent {
            // The request did not get through: no reply is coming, and its read (which a
            // process that inherited the worker's stdout could keep open) is not waited for.
            return (Err(error.into()), buf);
        }
        let read = match read_result {
            Some(result) => result,
            None => read.await,
        };
        (read, buf)
    }

    /// Reads until one frame is complete and lends it: the caller reads it in place (no
    /// copy) and may await with it, the relay being its own until the frame is dropped.
    ///
    /// # Errors
    /// As [`RelayIo::receive`].
    pub async fn next_frame(&mut self) -> Result<Frame<'_>, RelayError> {
        while !self.decoder.has_frame()? {
            self.read_more().await?;
        }
        Ok(self
            .decoder
            .next_frame()?
            .expect("has_frame said a frame is buffered"))
    }

    /// One read into the decoder's buffer; `Closed` (or the decoder's error) at EOF.
    async fn read_more(&mut self) -> Result<(), RelayError> {
        read_more(&self.read, &mut self.decoder).await
    }

    /// Reads until one frame is complete and gives it to `on_frame`.
    ///
    /// # Errors
    /// I/O errors, EOF (`Closed`, or the decoder's error for a cut frame or a "Could not
    /// open input file" text), and bad frames.
    pub async fn receive<T>(
        &mut self,
        on_frame: impl FnOnce(&Frame<'_>) -> T,
    ) -> Result<T, RelayError> {
        let frame = self.next_frame().await?;
        Ok(on_frame(&frame))
    }

    /// Lets go of the last frame's bytes (and of a large frame's room): called when an
    /// exchange is over, so an idle relay holds no reply.
    pub fn release_frame(&mut self) {
        self.decoder.release_frame();
    }

    /// Reads to EOF, for a worker that began with PHP's "Could not open input file" text.
    pub async fn drain_stray_output(&mut self) -> Option<FrameError> {
        while self.decoder.is_collecting_stray_output() {
            match self.read_more().await {
                Ok(()) => {}
                // EOF: read_more has asked the decoder for its verdict.
                Err(RelayError::Frame(error)) => return Some(error),
                Err(RelayError::Closed) => return None,
                Err(RelayError::Io(_)) => return self.decoder.finish().err(),
            }
        }
        None
    }

    /// True while the decoder keeps stray output until EOF.
    #[must_use]
    pub fn is_collecting_stray_output(&self) -> bool {
        self.decoder.is_collecting_stray_output()
    }
}

/// One read from `read` into `decoder`'s buffer; `Closed` (or the decoder's error) at EOF.
async fn read_more(read: &Stream, decoder: &mut FrameDecoder) -> Result<(), RelayError> {
    let buf = decoder.take_read_buffer(READ_CHUNK_BYTES);
    let filled = buf.len();
    let (result, slice) = read.read(buf.slice(filled..)).await;
    decoder.restore_read_buffer(slice.into_inner());
    if result? == 0 {
        decoder.finish()?;
        return Err(RelayError::Closed);
    }
    Ok(())
}

/// Key of a cached relay: (pool id, slot index).
type RelayKey = (u64, u32);

/// One shard's relay handles, with the worker generation they were made for (held in the
/// shard's context: I/O handles belong to that shard's ring or reactor).
#[derive(Debug, Default)]
pub struct RelayCache {
    relays: RefCell<HashMap<RelayKey, (u64, RelayIo)>>,
}

impl RelayCache {
    /// Takes the handles for (pool, slot) at `generation`, if cached. The exec that owns the
    /// slot holds them while it runs and puts them back after.
    pub fn take(&self, pool: u64, slot: u32, generation: u64) -> Option<RelayIo> {
        let mut relays = self.relays.borrow_mut();
        match relays.remove(&(pool, slot)) {
            Some((cached, relay)) if cached == generation => Some(relay),
            _ => None,
        }
    }

    /// Puts handles back.
    pub fn put(&self, pool: u64, slot: u32, generation: u64, relay: RelayIo) {
        self.relays
            .borrow_mut()
            .insert((pool, slot), (generation, relay));
    }

    /// Drops the handles for (pool, slot) if they belong to `generation` or older.
    pub fn forget(&self, pool: u64, slot: u32, generation: u64) {
        let mut relays = self.relays.borrow_mut();
        if relays
            .get(&(pool, slot))
            .is_some_and(|(cached, _)| *cached <= generation)
        {
            relays.remove(&(pool, slot));
        }
    }
}

/// One shard's reusable frame buffers: the hot path allocates nothing in steady state.
#[derive(Debug, Default)]
pub struct SendBuffers {
    buffers: RefCell<Vec<Vec<u8>>>,
}

impl SendBuffers {
    /// Buffers up to this size are kept for reuse.
    const KEEP_BYTES: usize = 1 << 20;
    /// At most this many are kept.
    const KEEP_BUFFERS: usize = 64;

    /// An empty buffer, reused when one is kept.
    pub fn take(&self) -> Vec<u8> {
        self.buffers.borrow_mut().pop().unwrap_or_default()
    }

    /// Keeps `buffer` for the next frame unless it grew large.
    pub fn give_back(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() <= Self::KEEP_BYTES {
            buffer.clear();
            let mut buffers = self.buffers.borrow_mut();
            if buffers.len() < Self::KEEP_BUFFERS {
                buffers.push(buffer);
            }
        }
    }
}
