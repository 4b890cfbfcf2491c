//! What the I/O driver costs per request (issue 18): one thread answering every HTTP request
//! on its connections with a fixed `200`, driven three ways, so that `benches/load/ring-ab`
//! can set their CPU per request side by side with nginx `return 200` on one worker.
//!
//! - `tokio-uring`: as the shards drive sockets: an owned buffer per read, one read and one
//!   write op per request, tokio's loop parked in `epoll_wait` on the ring's descriptor.
//! - `raw`: the smallest ring loop the `io-uring` crate allows: multishot accept, multishot
//!   recv into a provided buffer ring, one send per batch of requests, and submitting and
//!   waiting in one `io_uring_enter` per turn.
//! - `raw-oneshot`: the same loop with a recv armed again after every completion (what a
//!   driver without multishot does), to tell the loop's saving from multishot's.
//! - `epoll`: tokio's current-thread loop with readiness and plain `read`/`write`.
//!
//! Usage: `ring-ceiling DRIVER PORT` (prints `listening` once the port is bound).

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The answer to every request: what nginx `return 200 "hello\n"` sends, less its Server
/// and Date lines (the same bytes for every driver; the work compared is the driver's).
const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n";

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(driver), Some(port)) = (args.next(), args.next()) else {
        eprintln!("usage: ring-ceiling tokio-uring|raw|raw-oneshot|epoll PORT");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>().expect("a port")))?;
    println!("listening");
    match driver.as_str() {
        "tokio-uring" => tokio_uring_driver(listener),
        "raw" => raw::serve(&listener, true),
        "raw-oneshot" => raw::serve(&listener, false),
        "epoll" => epoll_driver(listener),
        other => {
            eprintln!("unknown driver {other}");
            std::process::exit(2);
        }
    }
}

/// Requests completed by the bytes read so far: each ends with an empty line. `carry` keeps
/// the last three bytes so that a terminator split across reads is found.
fn count_requests(carry: &mut [u8; 3], bytes: &[u8]) -> usize {
    let mut window = carry.to_vec();
    window.extend_from_slice(bytes);
    let count = window.windows(4).filter(|w| *w == b"\r\n\r\n").count();
    let tail = window.len().saturating_sub(3);
    carry.fill(0);
    carry[3 - (window.len() - tail)..].copy_from_slice(&window[tail..]);
    count
}

/// The answers for `count` pipelined requests, as one write.
fn answers(count: usize) -> Vec<u8> {
    ANSWER.repeat(count)
}

fn tokio_uring_driver(listener: TcpListener) -> io::Result<()> {
    let mut ring = tokio_uring::uring_builder();
    ring.setup_coop_taskrun().setup_single_issuer();
    let mut builder = tokio_uring::builder();
    builder.entries(1024).uring_builder(&ring);
    tokio_uring::Runtime::new(&builder)?.block_on(async move {
        let listener = tokio_uring::net::TcpListener::from_std(listener);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio_uring::spawn(async move {
                let mut carry = [0; 3];
                let mut buf = Vec::with_capacity(16 * 1024);
                loop {
                    buf.clear();
                    let (read, back) = stream.read(buf).await;
                    buf = back;
                    match read {
                        Ok(n) if n > 0 => {}
                        _ => return,
                    }
                    let count = count_requests(&mut carry, &buf);
                    if count > 0 && stream.write_all(answers(count)).await.0.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

fn epoll_driver(listener: TcpListener) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    tokio::task::LocalSet::new().block_on(&runtime, async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (mut stream, _) = listener.accept().await?;
            tokio::task::spawn_local(async move {
                let mut carry = [0; 3];
                let mut buf = vec![0; 16 * 1024];
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(n) if n > 0 => n,
                        _ => return,
                    };
                    let count = count_requests(&mut carry, &buf[..n]);
                    if count > 0 && stream.write_all(&answers(count)).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

/// The raw ring loop.
mod raw {
    use super::{answers, count_requests, AsRawFd, FromRawFd, HashMap, OwnedFd};
    use io_uring::{cqueue, opcode, squeue, types, IoUring};
    use std::alloc::{alloc_zeroed, Layout};
    use std::io;
    use std::net::TcpListener;

    const BUFFER_GROUP: u16 = 0;
    const BUFFERS: u16 = 512;
    const BUFFER_BYTES: usize = 4096;
    /// user_data: the operation in the low byte, the descriptor above it.
    const ACCEPT: u64 = 1;
    const RECV: u64 = 2;
    const SEND: u64 = 3;

    /// A provided buffer ring: `BUFFERS` entries pointing into one block of memory, both
    /// owned here for the life of the process (the kernel writes into them).
    struct BufferRing {
        entries: *mut types::BufRingEntry,
        memory: *mut u8,
        tail: u16,
    }

    impl BufferRing {
        fn register(ring: &IoUring) -> io::Result<Self> {
            let entries_layout =
                Layout::from_size_align(BUFFERS as usize * 16, 4096).expect("a valid layout");
            let memory_layout = Layout::from_size_align(BUFFERS as usize * BUFFER_BYTES, 4096)
                .expect("a valid layout");
            // SAFETY: both layouts have a non-zero size; the blocks are never freed (the
            // process ends with the loop), so the kernel's pointers into them stay valid.
            let (entries, memory) = unsafe {
                (
                    alloc_zeroed(entries_layout).cast::<types::BufRingEntry>(),
                    alloc_zeroed(memory_layout),
                )
            };
            assert!(!entries.is_null() && !memory.is_null(), "out of memory");
            // SAFETY: `entries` is page-aligned, holds BUFFERS entries and lives forever.
            unsafe {
                ring.submitter()
                    .register_buf_ring(entries as u64, BUFFERS, BUFFER_GROUP)?;
            }
            let mut buffers = Self {
                entries,
                memory,
                tail: 0,
            };
            for bid in 0..BUFFERS {
                buffers.give_back(bid);
            }
            Ok(buffers)
        }

        /// The bytes the kernel put in buffer `bid`.
        fn bytes(&self, bid: u16, len: usize) -> &[u8] {
            // SAFETY: `bid` < BUFFERS names a BUFFER_BYTES slice of `memory`, which the
            // kernel filled with `len` ≤ BUFFER_BYTES bytes and no longer writes (the
            // buffer left the ring with this completion until it is given back).
            unsafe { std::slice::from_raw_parts(self.memory.add(bid as usize * BUFFER_BYTES), len) }
        }

        /// Returns buffer `bid` to the kernel.
        fn give_back(&mut self, bid: u16) {
            let index = (self.tail & (BUFFERS - 1)) as usize;
            // SAFETY: `index` < BUFFERS lies inside the entries block; the kernel does not
            // read an entry past the published tail, which is stored after it (release).
            unsafe {
                let entry = &mut *self.entries.add(index);
                entry.set_addr(self.memory.add(bid as usize * BUFFER_BYTES) as u64);
                entry.set_len(BUFFER_BYTES as u32);
                entry.set_bid(bid);
                self.tail = self.tail.wrapping_add(1);
                let tail = types::BufRingEntry::tail(self.entries).cast_mut();
                std::sync::atomic::AtomicU16::from_ptr(tail)
                    .store(self.tail, std::sync::atomic::Ordering::Release);
            }
        }
    }

    /// A connection: its socket, the answers queued while a send is in flight, and whether
    /// it has ended (it is dropped once no send of its is in flight: the kernel reads the
    /// `sending` bytes until the send completes).
    struct Connection {
        socket: OwnedFd,
        carry: [u8; 3],
        sending: Option<Vec<u8>>,
        queued: usize,
        ended: bool,
    }

    fn push(ring: &mut IoUring, entry: &squeue::Entry) {
        // SAFETY: every entry's buffers (the buffer ring, a connection's `sending` Vec) stay
        // alive and unmoved until the operation's completion has been reaped.
        while unsafe { ring.submission().push(entry) }.is_err() {
            ring.submit().expect("submit");
        }
    }

    /// user_data for `operation` on connection `id` (ids are never reused, unlike
    /// descriptors, so a late completion cannot reach a newer connection).
    fn tag(id: u64, operation: u64) -> u64 {
        id << 8 | operation
    }

    /// A recv into the buffer ring: multishot (armed once, a completion per arrival) or
    /// one-shot (armed again after each completion, as tokio-uring's reads are).
    fn recv(connection: &Connection, id: u64, multishot: bool) -> squeue::Entry {
        let fd = types::Fd(connection.socket.as_raw_fd());
        let entry = if multishot {
            opcode::RecvMulti::new(fd, BUFFER_GROUP).build()
        } else {
            opcode::Recv::new(fd, std::ptr::null_mut(), BUFFER_BYTES as u32)
                .buf_group(BUFFER_GROUP)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
        };
        entry.user_data(tag(id, RECV))
    }

    fn send(connection: &mut Connection, id: u64, ring: &mut IoUring) {
        let bytes = answers(std::mem::take(&mut connection.queued));
        let entry = opcode::Send::new(
            types::Fd(connection.socket.as_raw_fd()),
            bytes.as_ptr(),
            bytes.len() as u32,
        )
        .build()
        .user_data(tag(id, SEND));
        connection.sending = Some(bytes);
        push(ring, &entry);
    }

    pub fn serve(listener: &TcpListener, multishot: bool) -> io::Result<()> {
        let mut ring: IoUring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(1024)?;
        let mut buffers = BufferRing::register(&ring)?;
        let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .build()
            .user_data(ACCEPT);
        push(&mut ring, &accept);
        let mut connections: HashMap<u64, Connection> = HashMap::new();
        let mut next_id = 1;
        let mut completions = Vec::with_capacity(256);
        loop {
            ring.submit_and_wait(1)?;
            completions.extend(
                ring.completion()
                    .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
            );
            for (user_data, result, flags) in completions.drain(..) {
                let id = user_data >> 8;
                match user_data & 0xff {
                    ACCEPT => {
                        if result >= 0 {
                            // SAFETY: a successful accept's result is a new descriptor
                            // that nothing else owns.
                            let socket = unsafe { OwnedFd::from_raw_fd(result) };
                            let connection = Connection {
                                socket,
                                carry: [0; 3],
                                sending: None,
                                queued: 0,
                                ended: false,
                            };
                            push(&mut ring, &recv(&connection, next_id, multishot));
                            connections.insert(next_id, connection);
                            next_id += 1;
                        }
                        if !cqueue::more(flags) {
                            push(&mut ring, &accept);
                        }
                    }
                    RECV => {
                        let Some(connection) = connections.get_mut(&id) else {
                            continue;
                        };
                        if let Some(bid) = cqueue::buffer_select(flags) {
                            let len = usize::try_from(result).unwrap_or(0);
                            connection.queued +=
                                count_requests(&mut connection.carry, buffers.bytes(bid, len));
                            buffers.give_back(bid);
                        }
                        if result <= 0 && result != -ENOBUFS {
                            connection.ended = true;
                        } else if !cqueue::more(flags) {
                            push(&mut ring, &recv(connection, id, multishot));
                        }
                        if connection.sending.is_none()
                            && connection.queued > 0
                            && !connection.ended
                        {
                            send(connection, id, &mut ring);
                        }
                    }
                    SEND => {
                        let Some(connection) = connections.get_mut(&id) else {
                            continue;
                        };
                        let sent = connection.sending.take().unwrap_or_default();
                        if usize::try_from(result).ok() != Some(sent.len()) {
                            connection.ended = true;
                        } else if connection.queued > 0 && !connection.ended {
                            send(connection, id, &mut ring);
                        }
                    }
                    _ => {}
                }
                if connections
                    .get(&id)
                    .is_some_and(|c| c.ended && c.sending.is_none())
                {
                    connections.remove(&id);
                }
            }
        }
    }

    /// ENOBUFS: the buffer ring ran dry; the multishot recv ended and is re-armed.
    const ENOBUFS: i32 = 105;
}
