//! A socket or pipe on a shard: the client connections, the workers' relays and their
//! stderr, the control plane's connections.

use super::{epoll, Backend};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_uring::buf::{BoundedBuf, BoundedBufMut};

/// A socket or pipe whose reads and writes are lent owned buffers.
pub struct Stream {
    inner: Inner,
}

enum Inner {
    /// On the shard's ring (a tokio-uring file: on a socket or pipe its reads and writes at
    /// offset 0 are a socket's plain reads and writes).
    Uring(tokio_uring::fs::File),
    /// Registered with the shard's epoll, non-blocking.
    Epoll(AsyncFd<OwnedFd>),
    /// TLS over one of the above.
    Tls(Box<super::TlsStream>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// Takes `fd` onto this shard's `backend`. Must run on a shard. For io_uring the
    /// descriptor should be blocking (an accepted socket or a fresh pipe is); for epoll it
    /// is made non-blocking here (which its `dup`s share).
    ///
    /// # Errors
    /// When the descriptor cannot be registered with epoll.
    pub fn new(fd: OwnedFd, backend: Backend) -> io::Result<Self> {
        let inner = match backend {
            Backend::Uring => Inner::Uring(tokio_uring::fs::File::from_std(fd.into())),
            Backend::Epoll => {
                rustix::io::ioctl_fionbio(&fd, true)?;
                let interest = Interest::READABLE | Interest::WRITABLE;
                // SAFETY: the AsyncFd takes the descriptor by value and closes it only when
                // dropped, so the registered descriptor stays the one `as_raw_fd` returns.
                let registered = unsafe { AsyncFd::register_with_interest(fd, interest) };
                Inner::Epoll(registered.map_err(io::Error::from)?)
            }
        };
        Ok(Self { inner })
    }

    /// This stream with a server-side TLS session over it: reads give plaintext, writes
    /// take it.
    ///
    /// # Errors
    /// rustls could not make a session from `config`.
    pub fn into_tls(self, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        Ok(Self {
            inner: Inner::Tls(Box::new(super::TlsStream::new(self, config)?)),
        })
    }

    /// True when it carries TLS.
    #[must_use]
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// On TLS, completes the handshake and gives the protocol ALPN agreed on; None on a
    /// plain stream.
    ///
    /// # Errors
    /// The client closed or failed the handshake.
    pub async fn handshake(&self) -> io::Result<Option<Vec<u8>>> {
        match &self.inner {
            Inner::Tls(tls) => Box::pin(tls.handshake()).await,
            _ => Ok(None),
        }
    }

    /// The backend this stream is on.
    #[must_use]
    pub fn backend(&self) -> Backend {
        match &self.inner {
            Inner::Uring(_) => Backend::Uring,
            Inner::Epoll(_) => Backend::Epoll,
            Inner::Tls(tls) => tls.plain().backend(),
        }
    }

    /// Reads into `buf`'s bounded range from its start; gives the count (0 at EOF) and
    /// `buf`, its initialised length grown by the count.
    pub async fn read<T: BoundedBufMut>(&self, buf: T) -> (io::Result<usize>, T) {
        match &self.inner {
            Inner::Uring(file) => file.read_at(buf, 0).await,
            Inner::Epoll(fd) => epoll::read(fd, buf).await,
            Inner::Tls(tls) => Box::pin(tls.read(buf)).await,
        }
    }

    /// Reads more bytes onto the end of `input` (first making room for `chunk` when less
    /// than half of it is spare); gives the count, 0 at the end. Dropped before it
    /// completes, it leaves `input` empty: the read in flight holds the buffer.
    ///
    /// # Errors
    /// The read failed.
    pub async fn read_appending(&self, input: &mut Vec<u8>, chunk: usize) -> io::Result<usize> {
        if input.capacity() - input.len() < chunk / 2 {
            input.reserve(chunk);
        }
        let buf = std::mem::take(input);
        let filled = buf.len();
        let (result, slice) = self.read(buf.slice(filled..)).await;
        *input = slice.into_inner();
        result
    }

    /// Writes `buf`'s initialised bytes, possibly not all of them; gives the count and
    /// `buf`. Dropped before it completes, on io_uring the ring keeps the buffer until the
    /// write ends (closing the descriptor ends it).
    pub async fn write<T: BoundedBuf>(&self, buf: T) -> (io::Result<usize>, T) {
        match &self.inner {
            Inner::Uring(file) => file.write_at(buf, 0).submit().await,
            Inner::Epoll(fd) => epoll::write(fd, buf).await,
            Inner::Tls(tls) => Box::pin(tls.write(buf)).await,
        }
    }

    /// Writes all of `buf`; gives it back.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let len = buf.len();
        self.write_range(buf, 0..len).await
    }

    /// Writes the bytes `range` of `buf` (a body lent without a copy); gives `buf` back.
    /// Every write goes at offset 0: sockets and pipes have no position, and io_uring
    /// refuses any other offset on them with ESPIPE.
    pub async fn write_range(
        &self,
        mut buf: Vec<u8>,
        range: std::ops::Range<usize>,
    ) -> (io::Result<()>, Vec<u8>) {
        let mut written = range.start;
        while written < range.end {
            let (result, slice) = self.write(buf.slice(written..range.end)).await;
            buf = slice.into_inner();
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => written += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return (Err(error), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Shuts a socket's `how` side(s): the peer sees the end, and a read the caller gave up
    /// on completes.
    ///
    /// # Errors
    /// Not a connected socket.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        let how = match how {
            std::net::Shutdown::Read => rustix::net::Shutdown::Read,
            std::net::Shutdown::Write => rustix::net::Shutdown::Write,
            std::net::Shutdown::Both => rustix::net::Shutdown::Both,
        };
        Ok(rustix::net::shutdown(self.as_fd(), how)?)
    }

    /// Shuts both directions of a socket, ignoring one the peer already closed.
    pub fn shut_down(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }

    /// Sets TCP_NODELAY (answers go out at once, not after the peer's ACK).
    ///
    /// # Errors
    /// Not a TCP socket.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        Ok(rustix::net::sockopt::set_tcp_nodelay(self.as_fd(), on)?)
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.inner {
            // SAFETY: the file owns this descriptor and closes it only when dropped, so it
            // stays open for as long as `self` is borrowed.
            Inner::Uring(file) => unsafe { BorrowedFd::borrow_raw(file.as_raw_fd()) },
            Inner::Epoll(fd) => fd.get_ref().as_fd(),
            Inner::Tls(tls) => tls.plain().as_fd(),
        }
    }
}
