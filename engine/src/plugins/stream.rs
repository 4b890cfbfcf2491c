//! A listener on `tcp://` or `unix://` served from one shard, and the streams it accepts:
//! what the control plane (rpc) and a tcp server on a unix socket share. Accepting waits on
//! the shard's reactor; the accepted streams do their I/O on the shard's ring.

use super::client_io::WriteStream;
use super::Lifecycle;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio_uring::buf::Slice;
use tokio_uring::net::{TcpStream, UnixStream};
use tokio_uring::UnsubmittedWrite;

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// A TCP socket.
    Tcp(std::net::TcpListener),
    /// A unix socket, and its file (removed when the listener goes).
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(listener) => listener.as_fd(),
            Self::Unix(listener, _) => listener.as_fd(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Listener {
    /// Binds `host:port`; gives the listener and its bound address.
    ///
    /// # Errors
    /// An address that does not resolve or bind, in Go's words.
    pub fn bind_tcp(host_port: &str) -> Result<(Self, std::net::SocketAddr), String> {
        let resolved = super::listener::resolve(host_port)
            .map_err(|error| format!("address {host_port}: {error}"))?;
        let listener = std::net::TcpListener::bind(resolved).map_err(|error| {
            format!(
                "listen tcp {resolved}: {}",
                super::listener::bind_error_text(&error)
            )
        })?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        Ok((Self::Tcp(listener), bound))
    }

    /// Binds the unix socket `path`; a stale socket file nobody answers on is replaced.
    ///
    /// # Errors
    /// A path that cannot be bound (in use, no permission).
    pub fn bind_unix(path: &Path) -> Result<Self, String> {
        if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(|error| {
            format!(
                "listen unix {}: {}",
                path.display(),
                super::listener::bind_error_text(&error)
            )
        })?;
        Ok(Self::Unix(listener, path.to_owned()))
    }

    fn accept(&self) -> std::io::Result<(Stream, Option<std::net::SocketAddr>)> {
        // Accepted sockets are blocking (O_NONBLOCK is not inherited): io_uring wants no more.
        Ok(match self {
            Self::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                stream.set_nonblocking(false)?;
                (Stream::Tcp(TcpStream::from_std(stream)), Some(peer))
            }
            Self::Unix(listener, _) => {
                let (stream, _) = listener.accept()?;
                stream.set_nonblocking(false)?;
                (Stream::Unix(UnixStream::from_std(stream)), None)
            }
        })
    }

    fn set_nonblocking(&self) -> std::io::Result<()> {
        match self {
            Self::Tcp(listener) => listener.set_nonblocking(true),
            Self::Unix(listener, _) => listener.set_nonblocking(true),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An accepted connection.
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A unix socket.
    Unix(UnixStream),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp(_) => "Stream::Tcp",
            Self::Unix(_) => "Stream::Unix",
        })
    }
}

impl Stream {
    /// Reads into `buf` from its start (up to its capacity); gives the count and `buf`.
    pub async fn read(&self, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
        match self {
            Self::Tcp(stream) => stream.read(buf).await,
            Self::Unix(stream) => stream.read(buf).await,
        }
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, buf: Vec<u8>) -> (std::io::Result<()>, Vec<u8>) {
        match self {
            Self::Tcp(stream) => stream.write_all(buf).await,
            Self::Unix(stream) => stream.write_all(buf).await,
        }
    }

    /// Shuts both directions (also completes a read a timeout abandoned).
    pub fn shutdown(&self) {
        let _ = match self {
            Self::Tcp(stream) => stream.shutdown(std::net::Shutdown::Both),
            Self::Unix(stream) => stream.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl WriteStream for Stream {
    fn write_slice(&self, buf: Slice<Vec<u8>>) -> UnsubmittedWrite<Slice<Vec<u8>>> {
        match self {
            Self::Tcp(stream) => stream.write(buf),
            Self::Unix(stream) => stream.write(buf),
        }
    }
}

/// Accepts on `listener` until shutdown begins, handing each stream (and a TCP peer's
/// address) to `on_accept`. Runs as a task on one shard; `name` (the plugin) is logged with
/// an accept error.
pub async fn accept_loop(
    listener: Listener,
    lifecycle: Arc<Lifecycle>,
    name: &'static str,
    mut on_accept: impl FnMut(Stream, Option<std::net::SocketAddr>),
) {
    if let Err(error) = listener.set_nonblocking() {
        tracing::error!(%error, plugin = name, "listener cannot be polled");
        return;
    }
    // SAFETY: the AsyncFd takes the listener by value; its socket stays open until the
    // AsyncFd drops it and `as_raw_fd` always returns that same descriptor, which is what
    // registration requires.
    let registered =
        unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) };
    let listener = match registered.map_err(std::io::Error::from) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, plugin = name, "listener cannot be polled");
            return;
        }
    };
    loop {
        let stopping = lifecycle.stop.notified();
        if lifecycle.is_stopping() {
            return;
        }
        tokio::select! {
            ready = listener.readable() => {
                let Ok(mut ready) = ready else { return };
                match ready.get_inner().accept() {
                    Ok((stream, peer)) => on_accept(stream, peer),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        ready.clear_ready();
                    }
                    Err(error) => {
                        // EMFILE and friends: log, back off a little, go on.
                        tracing::error!(%error, plugin = name, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            () = stopping => return,
        }
    }
}
