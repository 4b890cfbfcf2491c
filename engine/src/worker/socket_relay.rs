//! `tcp://` and `unix://` relays (spec relay-protocol §7.3, §8.2): the pool listens, each
//! worker connects, and every accepted connection runs the pid handshake at once and is filed
//! under the pid the worker reports; the spawner of that pid picks it up. A connection whose
//! handshake fails is closed and the accept loop goes on (rr's stops; the spec says not to
//! copy that). Connections are rare (one per worker start), so accepting and handshaking run
//! on one plain thread per listener and one per handshake; the frames then go over io_uring
//! like a pipe's.

use ringrunner_protocol::payload::{encode_pid_request, parse_pid_reply};
use ringrunner_protocol::FrameDecoder;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// `server.relay`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RelayAddress {
    /// The worker's stdin and stdout.
    #[default]
    Pipes,
    /// `tcp://host:port` (an empty host listens on every interface, as Go's `:port`).
    Tcp(String),
    /// `unix://path`.
    Unix(PathBuf),
}

impl RelayAddress {
    /// Parses rr's DSN.
    ///
    /// # Errors
    /// rr's text for anything but `pipes`, `tcp://host:port`, `unix://path`.
    pub fn parse(dsn: &str) -> Result<Self, String> {
        let invalid = || "invalid DSN (tcp://:6001, unix://file.sock)".to_owned();
        if dsn.is_empty() || dsn == "pipes" {
            return Ok(Self::Pipes);
        }
        if let Some(address) = dsn.strip_prefix("tcp://") {
            let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
            port.parse::<u16>().map_err(|_| invalid())?;
            let host = if host.is_empty() { "0.0.0.0" } else { host };
            return Ok(Self::Tcp(format!("{host}:{port}")));
        }
        if let Some(path) = dsn.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        Err(invalid())
    }
}

/// What waits under a pid: a connection nobody asked for yet, or a spawner.
#[derive(Debug)]
enum Filed {
    Connection(OwnedFd, Instant),
    Spawner(oneshot::Sender<OwnedFd>),
}

/// How long an unclaimed connection is kept (its spawner gave up, or nobody spawned it).
const UNCLAIMED_KEEP: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Registry {
    filed: Mutex<HashMap<u32, Filed>>,
    server_pid: u32,
    handshake_timeout: Duration,
    max_payload_bytes: u32,
}

/// A listening relay and the connections filed by pid.
#[derive(Debug)]
pub struct SocketRelay {
    registry: Arc<Registry>,
    listener: OwnedFd,
    unix_path: Option<PathBuf>,
    accept_thread: Option<std::thread::JoinHandle<()>>,
    /// Where it listens, for logs and tests.
    pub local_address: String,
}

impl SocketRelay {
    /// Listens on `address` (not `Pipes`) and starts accepting.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn listen(
        address: &RelayAddress,
        handshake_timeout: Duration,
        max_payload_bytes: u32,
    ) -> io::Result<Self> {
        let registry = Arc::new(Registry {
            filed: Mutex::new(HashMap::new()),
            server_pid: std::process::id(),
            handshake_timeout,
            max_payload_bytes,
        });
        let (listener, local_address, unix_path, accept_thread) = match address {
            RelayAddress::Pipes => {
                return Err(io::Error::other("pipes have no listener"));
            }
            RelayAddress::Tcp(address) => {
                let listener = TcpListener::bind(address)?;
                let local = format!("tcp://{}", listener.local_addr()?);
                let fd = OwnedFd::from(listener.try_clone()?);
                let registry = Arc::clone(&registry);
                let thread = std::thread::Builder::new()
                    .name("rr-relay-accept".into())
                    .spawn(move || accept_tcp(&listener, &registry))?;
                (fd, local, None, thread)
            }
            RelayAddress::Unix(path) => {
                remove_stale_socket(path);
                let listener = UnixListener::bind(path)?;
                let fd = OwnedFd::from(listener.try_clone()?);
                let registry = Arc::clone(&registry);
                let thread = std::thread::Builder::new()
                    .name("rr-relay-accept".into())
                    .spawn(move || accept_unix(&listener, &registry))?;
                (
                    fd,
                    format!("unix://{}", path.display()),
                    Some(path.clone()),
                    thread,
                )
            }
        };
        tracing::debug!(target: "server", address = %local_address, "relay listening");
        Ok(Self {
            registry,
            listener,
            unix_path,
            accept_thread: Some(accept_thread),
            local_address,
        })
    }

    /// The connection of worker `pid`, once it has connected and passed the handshake;
    /// `None` when `deadline` passes or `gone` completes first (the process exited).
    pub async fn connection_of(
        &self,
        pid: u32,
        deadline: tokio::time::Instant,
        gone: impl std::future::Future<Output = ()>,
    ) -> Option<OwnedFd> {
        let receiver = {
            let mut filed = self.registry.lock();
            if let Some(Filed::Connection(fd, _)) = filed.remove(&pid) {
                return Some(fd);
            }
            let (sender, receiver) = oneshot::channel();
            filed.insert(pid, Filed::Spawner(sender));
            receiver
        };
        let outcome = tokio::select! {
            fd = receiver => fd.ok(),
            () = tokio::time::sleep_until(deadline) => None,
            () = gone => None,
        };
        if outcome.is_none() {
            let mut filed = self.registry.lock();
            if matches!(filed.get(&pid), Some(Filed::Spawner(_))) {
                filed.remove(&pid);
            }
        }
        outcome
    }
}

impl Drop for SocketRelay {
    fn drop(&mut self) {
        // Wakes the blocked accept (EINVAL on a shut-down listener), so the thread ends.
        let _ = rustix::net::shutdown(self.listener.as_fd(), rustix::net::Shutdown::Both);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Filed>> {
        self.filed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives a handshaken connection to its spawner, or keeps it for one.
    fn file(&self, pid: u32, fd: OwnedFd) {
        let mut filed = self.lock();
        filed.retain(|_, entry| {
            !matches!(entry, Filed::Connection(_, since) if since.elapsed() > UNCLAIMED_KEEP)
        });
        match filed.remove(&pid) {
            Some(Filed::Spawner(sender)) => {
                if let Err(fd) = sender.send(fd) {
                    // The spawner gave up a moment ago; keep it briefly for nobody.
                    filed.insert(pid, Filed::Connection(fd, Instant::now()));
                }
            }
            Some(Filed::Connection(old, _)) => {
                tracing::warn!(target: "server", pid, "a second relay connection for one pid; the first is closed");
                drop(old);
                filed.insert(pid, Filed::Connection(fd, Instant::now()));
            }
            None => {
                filed.insert(pid, Filed::Connection(fd, Instant::now()));
            }
        }
    }
}

fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket());
    if is_socket && UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

fn accept_tcp(listener: &TcpListener, registry: &Arc<Registry>) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                spawn_handshake(stream, peer.to_string(), registry);
            }
            Err(error) if accept_should_stop(&error) => return,
            Err(error) => accept_failed(&error),
        }
    }
}

fn accept_unix(listener: &UnixListener, registry: &Arc<Registry>) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => spawn_handshake(stream, "unix socket".into(), registry),
            Err(error) if accept_should_stop(&error) => return,
            Err(error) => accept_failed(&error),
        }
    }
}

/// EINVAL: the listener was shut down (the pool is going away).
fn accept_should_stop(error: &io::Error) -> bool {
    error.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
}

fn accept_failed(error: &io::Error) {
    tracing::error!(target: "server", %error, "relay accept failed");
    // EMFILE and friends: give the process a moment to release descriptors.
    std::thread::park_timeout(Duration::from_millis(10));
}

/// A stream the handshake can use with timeouts.
trait RelayStream: Read + Write + Into<OwnedFd> + Send + 'static {
    fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl RelayStream for TcpStream {
    fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)?;
        self.set_write_timeout(timeout)
    }
}

impl RelayStream for UnixStream {
    fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)?;
        self.set_write_timeout(timeout)
    }
}

fn spawn_handshake<S: RelayStream>(stream: S, peer: String, registry: &Arc<Registry>) {
    let registry = Arc::clone(registry);
    let spawned = std::thread::Builder::new()
        .name("rr-relay-handshake".into())
        .spawn(move || match handshake(stream, &registry) {
            Ok((pid, fd)) => registry.file(pid, fd),
            Err(reason) => {
                tracing::warn!(target: "server", %peer, %reason, "relay connection failed its handshake; closed");
            }
        });
    if let Err(error) = spawned {
        tracing::error!(target: "server", %error, "cannot start a relay handshake");
    }
}

/// Sends `{"pid":<server pid>}` and reads the worker's pid (spec relay-protocol §3.1).
fn handshake<S: RelayStream>(mut stream: S, registry: &Registry) -> Result<(u32, OwnedFd), String> {
    stream
        .set_timeouts(Some(
            registry.handshake_timeout.max(Duration::from_millis(1)),
        ))
        .map_err(|e| e.to_string())?;
    let mut request = Vec::with_capacity(32);
    encode_pid_request(registry.server_pid, &mut request);
    stream.write_all(&request).map_err(|e| e.to_string())?;
    let mut decoder = FrameDecoder::new(registry.max_payload_bytes);
    let mut buf = [0u8; 512];
    let pid = loop {
        if let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
            break parse_pid_reply(&frame).map_err(|e| e.to_string())?;
        }
        let read = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("closed before the handshake reply".into());
        }
        decoder.feed(&buf[..read]);
    };
    stream.set_timeouts(None).map_err(|e| e.to_string())?;
    Ok((pid, stream.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns_parse_as_rr_reads_them() {
        assert_eq!(RelayAddress::parse("pipes"), Ok(RelayAddress::Pipes));
        assert_eq!(RelayAddress::parse(""), Ok(RelayAddress::Pipes));
        assert_eq!(
            RelayAddress::parse("tcp://127.0.0.1:7000"),
            Ok(RelayAddress::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!(
            RelayAddress::parse("tcp://:7000"),
            Ok(RelayAddress::Tcp("0.0.0.0:7000".into()))
        );
        assert_eq!(
            RelayAddress::parse("unix:///run/rr.sock"),
            Ok(RelayAddress::Unix("/run/rr.sock".into()))
        );
        for bad in [
            "tcp://nohost",
            "tcp://h:port",
            "unix://",
            "udp://x:1",
            "pipe",
        ] {
            assert_eq!(
                RelayAddress::parse(bad),
                Err("invalid DSN (tcp://:6001, unix://file.sock)".into()),
                "{bad}"
            );
        }
    }
}
