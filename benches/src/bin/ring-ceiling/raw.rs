//! The raw ring loop.

use super::workers::{Worker, MESSAGE_BYTES};
use super::{answers, count_requests, AsRawFd, FromRawFd, HashMap, OwnedFd};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::alloc::{alloc_zeroed, Layout};
use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;

const BUFFER_GROUP: u16 = 0;
const BUFFERS: u16 = 512;
const BUFFER_BYTES: usize = 4096;
/// user_data: the operation in the low byte, the descriptor above it.
const ACCEPT: u64 = 1;
const RECV: u64 = 2;
const SEND: u64 = 3;
const WORKER_WRITE: u64 = 4;
const WORKER_READ: u64 = 5;

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
        let memory_layout =
            Layout::from_size_align(BUFFERS as usize * BUFFER_BYTES, 4096).expect("a valid layout");
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

/// A connection: its socket, its requests waiting for a worker, the worker serving one
/// of them, the answers ready and the one being sent, and whether it has ended (it is
/// dropped once nothing of its is in flight: the kernel reads `sending` until the send
/// completes, and a worker's reply is read before the worker goes back).
struct Connection {
    socket: OwnedFd,
    matched: usize,
    pending: usize,
    waiting: bool,
    worker: Option<usize>,
    queued: usize,
    sending: Option<Vec<u8>>,
    ended: bool,
}

impl Connection {
    fn is_done(&self) -> bool {
        self.ended && self.sending.is_none() && self.worker.is_none()
    }
}

/// The worker hop: the processes, their message buffers, the idle ones and the
/// connections waiting for one.
struct Hop {
    workers: Vec<Worker>,
    /// One message buffer per worker; the Vec is never resized, so they do not move.
    messages: Vec<[u8; MESSAGE_BYTES]>,
    idle: Vec<usize>,
    waiting: VecDeque<u64>,
}

fn push(ring: &mut IoUring, entry: &squeue::Entry) {
    // SAFETY: every entry's buffers (the buffer ring, a connection's `sending` Vec, a
    // worker's message box) stay alive and unmoved until the operation's completion has
    // been reaped.
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

/// Gives the connection's next request to an idle worker (its message written to the
/// worker's stdin), or queues the connection for the next worker to come back.
fn relay_next(connection: &mut Connection, id: u64, hop: &mut Hop, ring: &mut IoUring) {
    if connection.worker.is_some() || connection.pending == 0 || connection.ended {
        return;
    }
    let Some(worker) = hop.idle.pop() else {
        if !connection.waiting {
            connection.waiting = true;
            hop.waiting.push_back(id);
        }
        return;
    };
    connection.pending -= 1;
    connection.worker = Some(worker);
    let message = &hop.messages[worker];
    let entry = opcode::Write::new(
        types::Fd(hop.workers[worker].input.as_raw_fd()),
        message.as_ptr(),
        MESSAGE_BYTES as u32,
    )
    .build()
    .user_data(tag(id, WORKER_WRITE));
    push(ring, &entry);
}

/// Serves until the process is killed: answers every request at once, or (with `hop`)
/// after a message's round trip through a worker.
pub fn serve(listener: &TcpListener, multishot: bool, workers: Vec<Worker>) -> io::Result<()> {
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
    let mut hop = (!workers.is_empty()).then(|| Hop {
        messages: vec![[b'm'; MESSAGE_BYTES]; workers.len()],
        idle: (0..workers.len()).collect(),
        workers,
        waiting: VecDeque::new(),
    });
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
            if user_data & 0xff == ACCEPT {
                if result >= 0 {
                    // SAFETY: a successful accept's result is a new descriptor that
                    // nothing else owns.
                    let socket = unsafe { OwnedFd::from_raw_fd(result) };
                    let connection = Connection {
                        socket,
                        matched: 0,
                        pending: 0,
                        waiting: false,
                        worker: None,
                        queued: 0,
                        sending: None,
                        ended: false,
                    };
                    push(&mut ring, &recv(&connection, next_id, multishot));
                    connections.insert(next_id, connection);
                    next_id += 1;
                }
                if !cqueue::more(flags) {
                    push(&mut ring, &accept);
                }
                continue;
            }
            let Some(connection) = connections.get_mut(&id) else {
                continue;
            };
            match user_data & 0xff {
                RECV => {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        let len = usize::try_from(result).unwrap_or(0);
                        let read = count_requests(&mut connection.matched, buffers.bytes(bid, len));
                        buffers.give_back(bid);
                        match hop {
                            Some(_) => connection.pending += read,
                            None => connection.queued += read,
                        }
                    }
                    if result <= 0 && result != -ENOBUFS {
                        connection.ended = true;
                    } else if !cqueue::more(flags) {
                        push(&mut ring, &recv(connection, id, multishot));
                    }
                    if let Some(hop) = &mut hop {
                        relay_next(connection, id, hop, &mut ring);
                    }
                }
                WORKER_WRITE => {
                    let (Some(hop), Some(worker)) = (&mut hop, connection.worker) else {
                        continue;
                    };
                    assert_eq!(result, MESSAGE_BYTES as i32, "a worker's stdin failed");
                    let entry = opcode::Read::new(
                        types::Fd(hop.workers[worker].output.as_raw_fd()),
                        hop.messages[worker].as_mut_ptr(),
                        MESSAGE_BYTES as u32,
                    )
                    .build()
                    .user_data(tag(id, WORKER_READ));
                    push(&mut ring, &entry);
                }
                WORKER_READ => {
                    let (Some(hop), Some(worker)) = (&mut hop, connection.worker.take()) else {
                        continue;
                    };
                    assert_eq!(result, MESSAGE_BYTES as i32, "a worker's stdout failed");
                    connection.queued += 1;
                    // The worker goes back; connections that waited for one come first,
                    // this one's next request after them.
                    hop.idle.push(worker);
                    if connection.pending > 0 && !connection.ended && !connection.waiting {
                        connection.waiting = true;
                        hop.waiting.push_back(id);
                    }
                    while !hop.idle.is_empty() {
                        let Some(next) = hop.waiting.pop_front() else {
                            break;
                        };
                        if let Some(waiter) = connections.get_mut(&next) {
                            waiter.waiting = false;
                            relay_next(waiter, next, hop, &mut ring);
                        }
                    }
                }
                SEND => {
                    let sent = connection.sending.take().unwrap_or_default();
                    if usize::try_from(result).ok() != Some(sent.len()) {
                        connection.ended = true;
                    }
                }
                _ => {}
            }
            let Some(connection) = connections.get_mut(&id) else {
                continue;
            };
            if connection.sending.is_none() && connection.queued > 0 && !connection.ended {
                send(connection, id, &mut ring);
            }
            if connection.is_done() {
                connections.remove(&id);
            }
        }
    }
}

/// ENOBUFS: the buffer ring ran dry; the multishot recv ended and is re-armed.
const ENOBUFS: i32 = 105;
