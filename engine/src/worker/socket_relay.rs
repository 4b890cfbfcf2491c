//! `tcp://` and `unix://` relays (spec relay-protocol §7.3, §8.2): the pool listens, each
//! worker connects, and every accepted connection runs the pid handshake at once and is filed
//! under the pid the worker reports; the spawner of that pid picks it up. A connection whose
//! handshake fails is closed and the accept loop goes on (rr's stops; the spec says not to
//! copy that). Accepting and every handshake run on one thread per listener (the
//! `handshakes` module bounds the connections that never become workers); the frames then
//! go over io_uring like a pipe's. Connections filed for a pid nobody asked for are kept at
//! most 64 at a time and 60 s each (`UNCLAIMED_CONNECTIONS_MAX`, `UNCLAIMED_KEEP`).

mod handshakes;

use handshakes::Listening;
use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
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

/// Unclaimed connections kept at most; past it the oldest is closed. A spawner asks for its
/// worker's connection right after the spawn, long before PHP connects, so a real worker's
/// connection is claimed at once and only strangers (or workers whose spawner gave up) wait.
const UNCLAIMED_CONNECTIONS_MAX: usize = 64;

#[derive(Debug)]
struct Registry {
    filed: Mutex<HashMap<u32, Filed>>,
    server_pid: u32,
    /// The whole handshake of one connection must end within this (`allocate_timeout`).
    handshake_timeout: Duration,
}

/// A listening relay and the connections filed by pid.
#[derive(Debug)]
pub struct SocketRelay {
    registry: Arc<Registry>,
    /// An eventfd the accept thread polls: written once to stop it.
    stop: OwnedFd,
    unix_path: Option<PathBuf>,
    accept_thread: Option<std::thread::JoinHandle<()>>,
    /// Where it listens, for logs and tests.
    pub local_address: String,
}

impl SocketRelay {
    /// Listens on `address` (not `Pipes`) and starts accepting. Every handshake must end
    /// within `handshake_timeout`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn listen(address: &RelayAddress, handshake_timeout: Duration) -> io::Result<Self> {
        let registry = Arc::new(Registry {
            filed: Mutex::new(HashMap::new()),
            server_pid: std::process::id(),
            handshake_timeout,
        });
        let (listening, local_address, unix_path) = match address {
            RelayAddress::Pipes => {
                return Err(io::Error::other("pipes have no listener"));
            }
            RelayAddress::Tcp(address) => {
                let listener = TcpListener::bind(address)?;
                let local = format!("tcp://{}", listener.local_addr()?);
                listener.set_nonblocking(true)?;
                (Listening::Tcp(listener), local, None)
            }
            RelayAddress::Unix(path) => {
                remove_stale_socket(path);
                let listener = UnixListener::bind(path)?;
                listener.set_nonblocking(true)?;
                (
                    Listening::Unix(listener),
                    format!("unix://{}", path.display()),
                    Some(path.clone()),
                )
            }
        };
        let stop = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        let thread_stop = stop.try_clone()?;
        let thread_registry = Arc::clone(&registry);
        let accept_thread = std::thread::Builder::new()
            .name("rr-relay-accept".into())
            .spawn(move || handshakes::run(&listening, &thread_stop, &thread_registry))?;
        tracing::debug!(target: "server", address = %local_address, "relay listening");
        Ok(Self {
            registry,
            stop,
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
        // Wakes the accept thread's poll, so the thread ends (and closes the listener).
        let _ = rustix::io::write(&self.stop, &1u64.to_ne_bytes());
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
        close_oldest_unclaimed_past_cap(&mut filed, pid);
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

/// Makes room for one more unclaimed connection (not `pid`'s, which replaces its own).
fn close_oldest_unclaimed_past_cap(filed: &mut HashMap<u32, Filed>, pid: u32) {
    let unclaimed = |entry: &Filed| match entry {
        Filed::Connection(_, since) => Some(*since),
        Filed::Spawner(_) => None,
    };
    let count = filed
        .values()
        .filter(|entry| unclaimed(entry).is_some())
        .count();
    if count < UNCLAIMED_CONNECTIONS_MAX || matches!(filed.get(&pid), Some(Filed::Connection(..))) {
        return;
    }
    let oldest = filed
        .iter()
        .filter_map(|(pid, entry)| Some((unclaimed(entry)?, *pid)))
        .min()
        .map(|(_, pid)| pid);
    if let Some(oldest) = oldest {
        filed.remove(&oldest);
        tracing::warn!(target: "server", pid = oldest, limit = UNCLAIMED_CONNECTIONS_MAX,
            "too many relay connections that no worker start claimed; the oldest is closed");
    }
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

    #[test]
    fn unclaimed_connections_are_capped_oldest_first() {
        let registry = Registry {
            filed: Mutex::new(HashMap::new()),
            server_pid: 1,
            handshake_timeout: Duration::from_secs(1),
        };
        let mut peers = Vec::new();
        for pid in 1..=(UNCLAIMED_CONNECTIONS_MAX as u32 + 10) {
            let (ours, theirs) = UnixStream::pair().unwrap();
            peers.push(theirs);
            registry.file(pid, ours.into());
        }
        let filed = registry.lock();
        assert_eq!(filed.len(), UNCLAIMED_CONNECTIONS_MAX);
        assert!(!filed.contains_key(&1), "the oldest stays");
        assert!(filed.contains_key(&(UNCLAIMED_CONNECTIONS_MAX as u32 + 10)));
    }
}
