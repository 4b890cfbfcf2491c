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
//! - `executor`: a driver of our own as the shards would need it: the raw ring's one enter
//!   per turn under a small executor of tasks, running the tokio-uring driver's task code.
//! - `executor-epoll`: the same, parked as tokio-uring is (epoll_wait on the ring's
//!   descriptor after an enter that only submits).
//! - `own-ring-on-tokio`: the same ring and ops under tokio's loop and `LocalSet` as
//!   tokio-uring runs (submitted in the park hook): our driver with tokio as the executor.
//! - `epoll`: tokio's current-thread loop with readiness and plain `read`/`write`.
//!
//! With WORKERS, every request also makes a round trip through one of that many
//! `native-echo-worker --ping-pong 64` processes over their pipes before it is answered (a
//! worker taken from an idle list, its message written, its reply read), as rr relays a
//! request to a PHP worker: the ceiling's shape, for every driver but epoll.
//!
//! Usage: `ring-ceiling DRIVER PORT [WORKERS]` (prints `listening` once the port is bound).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

/// The answer to every request: what nginx `return 200 "hello\n"` sends, less its Server
/// and Date lines (the same bytes for every driver; the work compared is the driver's).
const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n";

mod executor;
mod raw;
mod workers;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(driver), Some(port)) = (args.first(), args.get(1)) else {
        eprintln!("usage: ring-ceiling tokio-uring|raw|raw-oneshot|executor|executor-epoll|own-ring-on-tokio|epoll PORT [WORKERS]");
        std::process::exit(2);
    };
    let worker_count: usize = args
        .get(2)
        .map_or(0, |n| n.parse().expect("a worker count"));
    let workers = workers::spawn(worker_count)?;
    let listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>().expect("a port")))?;
    println!("listening");
    match driver.as_str() {
        "tokio-uring" => tokio_uring_driver(listener, workers),
        "raw" => raw::serve(&listener, true, workers),
        "raw-oneshot" => raw::serve(&listener, false, workers),
        "executor" => executor::serve(&listener, executor::Park::Enter, workers),
        "executor-epoll" => executor::serve(&listener, executor::Park::Epoll, workers),
        "own-ring-on-tokio" => executor::serve_on_tokio(&listener, workers),
        "epoll" if workers.is_empty() => epoll_driver(listener),
        other => {
            eprintln!("unknown driver {other} (epoll takes no workers)");
            std::process::exit(2);
        }
    }
}

/// Requests completed by the bytes read so far: each ends with an empty line. `matched`
/// is how much of that ending the bytes before these ended with, so that one split across
/// reads is found (no allocation: every driver pays the same few instructions per byte).
fn count_requests(matched: &mut usize, bytes: &[u8]) -> usize {
    const END: &[u8; 4] = b"\r\n\r\n";
    let mut count = 0;
    for &byte in bytes {
        *matched = if byte == END[*matched] {
            *matched + 1
        } else {
            usize::from(byte == b'\r')
        };
        if *matched == END.len() {
            count += 1;
            *matched = 0;
        }
    }
    count
}

/// The answers for `count` pipelined requests, as one write.
fn answers(count: usize) -> Vec<u8> {
    ANSWER.repeat(count)
}

/// Idle workers (whatever a driver holds of one) and the wake-up for a task waiting for
/// one: the pool's shape, shared by the task-based drivers.
struct IdleList<T> {
    idle: RefCell<Vec<T>>,
    returned: tokio::sync::Notify,
}

impl<T> Default for IdleList<T> {
    fn default() -> Self {
        Self {
            idle: RefCell::default(),
            returned: tokio::sync::Notify::new(),
        }
    }
}

impl<T> IdleList<T> {
    async fn take(&self) -> T {
        loop {
            if let Some(worker) = self.idle.borrow_mut().pop() {
                return worker;
            }
            self.returned.notified().await;
        }
    }

    fn give_back(&self, worker: T) {
        self.idle.borrow_mut().push(worker);
        self.returned.notify_one();
    }
}

/// A worker's pipes as the shards hold them (tokio-uring files), and its message buffer.
struct UringWorker {
    input: tokio_uring::fs::File,
    output: tokio_uring::fs::File,
    message: Vec<u8>,
    _process: workers::Worker,
}

/// One request's round trip through a worker: its message written, the reply read.
async fn relay_through(pool: &IdleList<UringWorker>) -> io::Result<()> {
    let mut worker = pool.take().await;
    let (written, message) = worker.input.write_all_at(worker.message, 0).await;
    let (read, message) = worker.output.read_exact_at(message, 0).await;
    worker.message = message;
    pool.give_back(worker);
    written.and(read)
}

fn tokio_uring_driver(listener: TcpListener, workers: Vec<workers::Worker>) -> io::Result<()> {
    let mut ring = tokio_uring::uring_builder();
    ring.setup_coop_taskrun().setup_single_issuer();
    let mut builder = tokio_uring::builder();
    builder.entries(1024).uring_builder(&ring);
    tokio_uring::Runtime::new(&builder)?.block_on(async move {
        let hop = !workers.is_empty();
        let pool = Rc::new(IdleList::default());
        for worker in workers {
            let input =
                tokio_uring::fs::File::from_std(std::fs::File::from(worker.input.try_clone()?));
            let output =
                tokio_uring::fs::File::from_std(std::fs::File::from(worker.output.try_clone()?));
            pool.give_back(UringWorker {
                input,
                output,
                message: vec![b'm'; workers::MESSAGE_BYTES],
                _process: worker,
            });
        }
        let listener = tokio_uring::net::TcpListener::from_std(listener);
        loop {
            let (stream, _) = listener.accept().await?;
            let pool = Rc::clone(&pool);
            tokio_uring::spawn(async move {
                let mut matched = 0;
                let mut buf = Vec::with_capacity(16 * 1024);
                loop {
                    buf.clear();
                    let (read, back) = stream.read(buf).await;
                    buf = back;
                    match read {
                        Ok(n) if n > 0 => {}
                        _ => return,
                    }
                    let count = count_requests(&mut matched, &buf);
                    if hop {
                        for _ in 0..count {
                            if relay_through(&pool).await.is_err() {
                                return;
                            }
                        }
                    }
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
                let mut matched = 0;
                let mut buf = vec![0; 16 * 1024];
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(n) if n > 0 => n,
                        _ => return,
                    };
                    let count = count_requests(&mut matched, &buf[..n]);
                    if count > 0 && stream.write_all(&answers(count)).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::count_requests;

    #[test]
    fn requests_are_counted_across_reads() {
        let stream = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\r\n\r\n";
        for split in 0..=stream.len() {
            let mut matched = 0;
            let (first, second) = stream.split_at(split);
            let count = count_requests(&mut matched, first) + count_requests(&mut matched, second);
            assert_eq!(count, 2, "split at {split}");
        }
    }
}
