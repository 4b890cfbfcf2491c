//! Listeners on `tcp://` or `unix://` and the loop that accepts on them: what every plugin
//! that takes connections shares (http and tcp on one socket per shard, rpc and status on
//! one shard). Accepting waits for readiness on the shard's reactor under both I/O
//! backends; each accepted connection becomes an [`aio::Stream`] on the shard's backend.

use super::Lifecycle;
use crate::accept_backoff::AcceptBackoff;
use crate::aio::{self, Backend};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;

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

    /// One `accept`: the connection (blocking, as `accept4` makes it) and a TCP peer.
    fn accept(&self) -> std::io::Result<(OwnedFd, Option<SocketAddr>)> {
        Ok(match self {
            Self::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                (stream.into(), Some(peer))
            }
            Self::Unix(listener, _) => (listener.accept()?.0.into(), None),
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

/// A listener registered with a shard's reactor, handing out streams on its backend.
#[derive(Debug)]
pub struct Accepting {
    listener: AsyncFd<Listener>,
    backend: Backend,
}

impl Accepting {
    /// Registers `listener` with this shard's reactor. Must run on a shard.
    ///
    /// # Errors
    /// When the socket cannot be made non-blocking or registered.
    pub fn new(listener: Listener, backend: Backend) -> std::io::Result<Self> {
        listener.set_nonblocking()?;
        // SAFETY: the AsyncFd takes the listener by value; its socket stays open until the
        // AsyncFd drops it and `as_raw_fd` always returns that same descriptor, which is
        // what registration requires.
        let listener =
            unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) }
                .map_err(std::io::Error::from)?;
        Ok(Self { listener, backend })
    }

    /// The next connection, on the shard's backend, and a TCP peer's address.
    ///
    /// # Errors
    /// As `accept(2)` (EMFILE and friends), or the backend refusing the socket.
    pub async fn accept(&self) -> std::io::Result<(aio::Stream, Option<SocketAddr>)> {
        loop {
            let mut ready = self.listener.readable().await?;
            if let Ok(accepted) = ready.try_io(|listener| listener.get_ref().accept()) {
                let (fd, peer) = accepted?;
                return Ok((aio::Stream::new(fd, self.backend)?, peer));
            }
        }
    }
}

/// Accepts on `listener` until shutdown begins, handing each stream (and a TCP peer's
/// address) to `on_accept`. Runs as a task on one shard; `name` (the plugin) is logged with
/// an accept error, after which the loop backs off ([`AcceptBackoff`]) and goes on (clients
/// retry).
pub async fn accept_loop(
    listener: Listener,
    backend: Backend,
    lifecycle: Arc<Lifecycle>,
    name: &'static str,
    mut on_accept: impl FnMut(aio::Stream, Option<SocketAddr>),
) {
    let listener = match Accepting::new(listener, backend) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, plugin = name, "listener cannot be polled");
            return;
        }
    };
    let mut backoff = AcceptBackoff::default();
    loop {
        let stopping = lifecycle.stop.notified();
        if lifecycle.is_stopping() {
            return;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.succeeded();
                    on_accept(stream, peer);
                }
                Err(error) => {
                    let retry_in = backoff.failed();
                    tracing::error!(%error, plugin = name, ?retry_in, "accept failed");
                    tokio::time::sleep(retry_in).await;
                }
            },
            () = stopping => return,
        }
    }
}
