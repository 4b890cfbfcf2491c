//! TLS on a client socket (rustls, server side): a [`Stream`] whose reads give plaintext
//! and whose writes take it. The handshake runs inside the first reads (the client speaks
//! first); records are read and written through the plain stream on the shard's backend,
//! so a TLS connection costs no thread and no other loop.

use super::{epoll, Stream};
use rustls::ServerConnection;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::sync::Arc;
use tokio_uring::buf::{BoundedBuf, BoundedBufMut};

/// Ciphertext read per system call at most.
const RECORD_READ: usize = 17 * 1024;
/// Plaintext taken out of rustls per step.
const PLAIN_CHUNK: usize = 16 * 1024;

/// The session and its reused buffers (taken out while the plain stream has them, so no
/// borrow spans an await).
struct Session {
    connection: ServerConnection,
    ciphertext_in: Vec<u8>,
    /// Bytes of `ciphertext_in` the session took.
    fed: usize,
    ciphertext_out: Vec<u8>,
    plaintext: Vec<u8>,
}

impl Session {
    /// Gives the session the ciphertext not yet fed, record by record, and stops while it
    /// holds plaintext (rustls refuses more past its plaintext limit): the rest waits for
    /// the next read, which takes no system call while some is left.
    fn feed(&mut self) -> io::Result<()> {
        let mut first = true;
        while self.fed < self.ciphertext_in.len() && (first || self.connection.wants_read()) {
            first = false;
            let mut records = &self.ciphertext_in[self.fed..];
            self.fed += self.connection.read_tls(&mut records)?;
            self.connection
                .process_new_packets()
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        }
        Ok(())
    }
}

/// A server-side TLS session over a plain stream.
pub struct TlsStream {
    plain: Stream,
    session: RefCell<Session>,
    /// Held while ciphertext is written: a read (handshake, alerts) and a write may flush
    /// at once (HTTP/2 reads and writes concurrently), and records must leave in order.
    write_gate: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("plain", &self.plain)
            .finish_non_exhaustive()
    }
}

impl TlsStream {
    /// A session on `plain` with `config`; the handshake happens on the first reads.
    ///
    /// # Errors
    /// rustls could not make a session from `config`.
    pub fn new(plain: Stream, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let connection = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Self {
            plain,
            session: RefCell::new(Session {
                connection,
                ciphertext_in: Vec::new(),
                fed: 0,
                ciphertext_out: Vec::new(),
                plaintext: Vec::new(),
            }),
            write_gate: tokio::sync::Mutex::new(()),
        })
    }

    /// Completes the handshake (a server's first flight answers the client's); then the
    /// protocol the client and we agreed through ALPN, if any.
    ///
    /// # Errors
    /// The client closed, or sent something that is not a TLS handshake.
    pub async fn handshake(&self) -> io::Result<Option<Vec<u8>>> {
        while self.session.borrow().connection.is_handshaking() {
            self.flush().await?;
            match self.read_records().await {
                Ok(true) => {}
                Ok(false) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Err(error) => {
                    let _ = self.flush().await;
                    return Err(error);
                }
            }
        }
        // The server's last handshake messages (TLS 1.3 tickets) go out now.
        self.flush().await?;
        Ok(self
            .session
            .borrow()
            .connection
            .alpn_protocol()
            .map(<[u8]>::to_vec))
    }

    /// The plain stream beneath.
    pub fn plain(&self) -> &Stream {
        &self.plain
    }

    /// Reads plaintext into `buf`; 0 at the end (the peer's close_notify or its close).
    pub async fn read<T: BoundedBufMut>(&self, mut buf: T) -> (io::Result<usize>, T) {
        loop {
            match self.take_plaintext(&mut buf) {
                Ok(Some(count)) => return (Ok(count), buf),
                Ok(None) => {}
                Err(error) => return (Err(error), buf),
            }
            // Handshake messages (and alerts) the session wants out go first.
            if let Err(error) = self.flush().await {
                return (Err(error), buf);
            }
            match self.read_records().await {
                Ok(true) => {}
                Ok(false) => return (Ok(0), buf),
                Err(error) => {
                    // The alert rustls queued for the broken record, best effort.
                    let _ = self.flush().await;
                    return (Err(error), buf);
                }
            }
        }
    }

    /// Plaintext rustls holds, copied into `buf`; None when it holds none yet.
    fn take_plaintext<T: BoundedBufMut>(&self, buf: &mut T) -> io::Result<Option<usize>> {
        let mut session = self.session.borrow_mut();
        let Session {
            connection,
            plaintext,
            ..
        } = &mut *session;
        let want = buf.bytes_total().min(PLAIN_CHUNK);
        plaintext.resize(want, 0);
        match connection.reader().read(plaintext) {
            Ok(count) => Ok(Some(epoll::fill_from(buf, &plaintext[..count]))),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
            // The peer closed without close_notify: an end like any other for HTTP.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(0)),
            Err(error) => Err(error),
        }
    }

    /// Hands the session ciphertext: what an earlier read left over, else a new read's;
    /// false at the peer's close.
    async fn read_records(&self) -> io::Result<bool> {
        {
            let mut session = self.session.borrow_mut();
            if session.fed < session.ciphertext_in.len() {
                session.feed()?;
                return Ok(true);
            }
        }
        let mut incoming = std::mem::take(&mut self.session.borrow_mut().ciphertext_in);
        incoming.clear();
        incoming.reserve(RECORD_READ);
        let (result, incoming) = self.plain.read(incoming).await;
        let mut session = self.session.borrow_mut();
        session.ciphertext_in = incoming;
        session.fed = 0;
        if result? == 0 {
            return Ok(false);
        }
        session.feed()?;
        Ok(true)
    }

    /// Writes what the session has queued (handshake, alerts, records).
    async fn flush(&self) -> io::Result<()> {
        // Most reads have nothing to send: no gate to take.
        if !self.session.borrow().connection.wants_write() {
            return Ok(());
        }
        let _writing = self.write_gate.lock().await;
        loop {
            let mut outgoing = std::mem::take(&mut self.session.borrow_mut().ciphertext_out);
            outgoing.clear();
            {
                let mut session = self.session.borrow_mut();
                while session.connection.wants_write() {
                    session.connection.write_tls(&mut outgoing)?;
                }
            }
            if outgoing.is_empty() {
                self.session.borrow_mut().ciphertext_out = outgoing;
                return Ok(());
            }
            let (result, outgoing) = self.plain.write_all(outgoing).await;
            self.session.borrow_mut().ciphertext_out = outgoing;
            result?;
        }
    }

    /// Encrypts `buf`'s bytes (as many as the session takes) and writes them out.
    pub async fn write<T: BoundedBuf>(&self, buf: T) -> (io::Result<usize>, T) {
        let taken = {
            let mut session = self.session.borrow_mut();
            session.connection.writer().write(epoll::initialised(&buf))
        };
        let taken = match taken {
            Ok(taken) => taken,
            Err(error) => return (Err(error), buf),
        };
        match self.flush().await {
            Ok(()) => (Ok(taken), buf),
            Err(error) => (Err(error), buf),
        }
    }
}
