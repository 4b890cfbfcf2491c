//! The relay's one thread: it accepts worker connections and runs every pid handshake at
//! once, nonblocking, over poll(2) (spec relay-protocol §3.1). A flood of connections that
//! never become workers is bounded three ways: at most [`HANDSHAKES_PENDING_MAX`] handshakes
//! are in progress (a newcomer past it closes the oldest), each must finish within the
//! handshake deadline (the pool's `allocate_timeout`), and a reply may announce at most
//! [`PID_REPLY_PAYLOAD_BYTES_MAX`] bytes. No thread per connection.
//!
//! Worst-case work per input byte: one copy into the connection's decoder and a
//! constant-size header check; a connection never buffers more than a header (60 bytes)
//! and [`PID_REPLY_PAYLOAD_BYTES_MAX`]. Per wake the loop scans at most
//! [`HANDSHAKES_PENDING_MAX`] + 2 descriptors.

use super::Registry;
use crate::accept_backoff::AcceptBackoff;
use ringrunner_protocol::payload::{encode_pid_request, parse_pid_reply};
use ringrunner_protocol::FrameDecoder;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Handshakes in progress at most; a connection accepted past it closes the oldest, so a
/// flood cannot hold descriptors or memory beyond this, and a real worker that connects
/// during one still gets in (a flood must outpace its handshake to keep it out).
pub(super) const HANDSHAKES_PENDING_MAX: usize = 64;

/// The most a handshake reply's payload may announce: `{"pid":4294967295}` is 18 bytes,
/// the rest is room for a client that pads its JSON. A frame announcing more is refused
/// before anything is allocated for it.
pub(super) const PID_REPLY_PAYLOAD_BYTES_MAX: u32 = 64;

/// Connections accepted per wake at most, so handshakes in progress are not starved by a
/// listener that always has more.
const ACCEPTS_PER_WAKE_MAX: usize = HANDSHAKES_PENDING_MAX;

/// What the relay listens on.
#[derive(Debug)]
pub(super) enum Listening {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listening {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(listener) => listener.as_fd(),
            Self::Unix(listener) => listener.as_fd(),
        }
    }

    /// The next connection, nonblocking, with a name for logs; `WouldBlock` when none waits.
    fn accept(&self) -> io::Result<(OwnedFd, String)> {
        match self {
            Self::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                stream.set_nonblocking(true)?;
                let _ = stream.set_nodelay(true);
                Ok((stream.into(), peer.to_string()))
            }
            Self::Unix(listener) => {
                let (stream, _) = listener.accept()?;
                stream.set_nonblocking(true)?;
                Ok((stream.into(), "unix socket".into()))
            }
        }
    }
}

/// One connection between accept and its pid.
struct Handshake {
    fd: OwnedFd,
    peer: String,
    deadline: Instant,
    /// The server's `{"pid":…}` frame and how much of it is written.
    request: Vec<u8>,
    request_written: usize,
    decoder: FrameDecoder,
}

/// Where a handshake stands after its descriptor was ready.
enum Progress {
    Pending,
    Done(u32),
    Failed(String),
}

impl Handshake {
    fn new(fd: OwnedFd, peer: String, registry: &Registry) -> Self {
        let mut request = Vec::with_capacity(32);
        encode_pid_request(registry.server_pid, &mut request);
        Self {
            fd,
            peer,
            deadline: Instant::now() + registry.handshake_timeout.max(Duration::from_millis(1)),
            request,
            request_written: 0,
            decoder: FrameDecoder::with_capacity(PID_REPLY_PAYLOAD_BYTES_MAX, 128),
        }
    }

    /// What to wait for: room for the request until it is out, then the reply.
    fn interest(&self) -> PollFlags {
        if self.request_written < self.request.len() {
            PollFlags::OUT
        } else {
            PollFlags::IN
        }
    }

    /// Writes what it can of the request, then reads what the peer sent.
    fn advance(&mut self) -> Progress {
        while self.request_written < self.request.len() {
            match rustix::io::write(&self.fd, &self.request[self.request_written..]) {
                Ok(written) => self.request_written += written,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Progress::Pending,
                Err(error) => return Progress::Failed(error.to_string()),
            }
        }
        let mut buf = [0u8; 128];
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    return match parse_pid_reply(&frame) {
                        Ok(pid) => Progress::Done(pid),
                        Err(error) => Progress::Failed(error.to_string()),
                    }
                }
                Ok(None) => {}
                Err(error) => return Progress::Failed(error.to_string()),
            }
            if self.decoder.is_collecting_stray_output() {
                return Progress::Failed("not a goridge frame".into());
            }
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(0) => return Progress::Failed("closed before the handshake reply".into()),
                Ok(read) => self.decoder.feed(&buf[..read]),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Progress::Pending,
                Err(error) => return Progress::Failed(error.to_string()),
            }
        }
    }
}

/// Accepts and handshakes until `stop` becomes readable.
pub(super) fn run(listening: &Listening, stop: &OwnedFd, registry: &Arc<Registry>) {
    let mut pending: VecDeque<Handshake> = VecDeque::with_capacity(HANDSHAKES_PENDING_MAX);
    let mut ready = Vec::with_capacity(HANDSHAKES_PENDING_MAX);
    let mut backoff = AcceptBackoff::default();
    loop {
        drop_expired(&mut pending);
        let timeout = pending
            .iter()
            .map(|handshake| handshake.deadline)
            .min()
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let (stop_woke, listener_woke) = wait(listening, stop, &pending, timeout, &mut ready);
        if stop_woke {
            return;
        }
        advance_ready(&mut pending, &ready, registry);
        if listener_woke {
            accept_waiting(listening, &mut pending, registry, &mut backoff);
        }
    }
}

/// Polls the stop descriptor, the listener and every handshake; fills `ready` with the
/// indexes of the handshakes that can go on.
fn wait(
    listening: &Listening,
    stop: &OwnedFd,
    pending: &VecDeque<Handshake>,
    timeout: Option<Duration>,
    ready: &mut Vec<usize>,
) -> (bool, bool) {
    let mut fds = Vec::with_capacity(pending.len() + 2);
    fds.push(PollFd::new(stop, PollFlags::IN));
    fds.push(PollFd::from_borrowed_fd(listening.as_fd(), PollFlags::IN));
    for handshake in pending {
        fds.push(PollFd::new(&handshake.fd, handshake.interest()));
    }
    // Rounded up a millisecond, so a deadline is past when poll returns.
    let timeout = timeout.map(|left| left + Duration::from_millis(1));
    let timespec = timeout.and_then(|left| Timespec::try_from(left).ok());
    ready.clear();
    match poll(&mut fds, timespec.as_ref()) {
        Ok(_) => {}
        Err(Errno::INTR) => return (false, false),
        Err(error) => {
            tracing::error!(target: "server", %error, "relay poll failed");
            std::thread::park_timeout(Duration::from_millis(10));
            return (false, false);
        }
    }
    ready.extend(
        fds.iter()
            .skip(2)
            .enumerate()
            .filter(|(_, fd)| !fd.revents().is_empty())
            .map(|(index, _)| index),
    );
    (!fds[0].revents().is_empty(), !fds[1].revents().is_empty())
}

/// Closes the handshakes whose deadline has passed.
fn drop_expired(pending: &mut VecDeque<Handshake>) {
    let now = Instant::now();
    pending.retain(|handshake| {
        let alive = handshake.deadline > now;
        if !alive {
            tracing::warn!(target: "server", peer = %handshake.peer,
                "relay connection did not finish its handshake within allocate_timeout; closed");
        }
        alive
    });
}

/// Moves the ready handshakes on; a finished one is filed under its pid.
fn advance_ready(pending: &mut VecDeque<Handshake>, ready: &[usize], registry: &Registry) {
    // From the back, so removing one does not move the indexes still to visit.
    for &index in ready.iter().rev() {
        let progress = pending[index].advance();
        if matches!(progress, Progress::Pending) {
            continue;
        }
        let Some(handshake) = pending.remove(index) else {
            continue;
        };
        match progress {
            Progress::Done(pid) => match blocking(handshake.fd) {
                Ok(fd) => registry.file(pid, fd),
                Err(error) => {
                    tracing::warn!(target: "server", peer = %handshake.peer, %error,
                        "relay connection cannot be made blocking; closed");
                }
            },
            Progress::Failed(reason) => {
                tracing::warn!(target: "server", peer = %handshake.peer, %reason,
                    "relay connection failed its handshake; closed");
            }
            Progress::Pending => {}
        }
    }
}

/// The relay's reads and writes go through io_uring or blocking calls, as a pipe's.
fn blocking(fd: OwnedFd) -> io::Result<OwnedFd> {
    rustix::io::ioctl_fionbio(&fd, false)?;
    Ok(fd)
}

/// Accepts what waits (a bounded number), each a new handshake; past the cap the oldest
/// handshake is closed for it.
fn accept_waiting(
    listening: &Listening,
    pending: &mut VecDeque<Handshake>,
    registry: &Registry,
    backoff: &mut AcceptBackoff,
) {
    for _ in 0..ACCEPTS_PER_WAKE_MAX {
        let (fd, peer) = match listening.accept() {
            Ok(accepted) => accepted,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                // EMFILE and friends: give the process a moment to release descriptors.
                let retry_in = backoff.failed();
                tracing::error!(target: "server", %error, ?retry_in, "relay accept failed");
                std::thread::park_timeout(retry_in);
                return;
            }
        };
        backoff.succeeded();
        if pending.len() >= HANDSHAKES_PENDING_MAX {
            if let Some(oldest) = pending.pop_front() {
                tracing::warn!(target: "server", peer = %oldest.peer, limit = HANDSHAKES_PENDING_MAX,
                    "too many relay connections in their handshake; the oldest is closed");
            }
        }
        // Writable at once: the next poll sends the request.
        pending.push_back(Handshake::new(fd, peer, registry));
    }
}
