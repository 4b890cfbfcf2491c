//! A driver of our own, as the shards would need it: the raw ring with one `io_uring_enter`
//! per turn that submits and waits (no `epoll_wait`), under a small executor of local tasks,
//! running the same task code as the tokio-uring driver (an owned buffer per read, one op
//! per read and per write, a task per connection, a `Notify` to wait for an idle worker).
//! What the raw loop saves that a real driver keeps (tasks, wakers, op slots) is paid here,
//! so its A/B against tokio-uring is the gain a driver of our own would actually give.
//!
//! With `Park::Epoll` the same executor parks as tokio's loop does under tokio-uring: the
//! ring's descriptor in an epoll set, an `io_uring_enter` that only submits, then an
//! `epoll_wait` that blocks (and no DEFER_TASKRUN, which needs the waiting enter); unlike
//! tokio, it skips the `epoll_wait` when completions are already waiting.
//! [`serve_on_tokio`] runs the same ring and ops under tokio's loop and `LocalSet`: what a
//! driver of our own gives while tokio stays the executor.
//!
//! Left out, as the tokio-uring driver here has none either: timers and wake-ups from other
//! threads (an eventfd read kept armed in the ring would carry those).

use super::workers::{Worker, MESSAGE_BYTES};
use super::{answers, count_requests, AsRawFd, FromRawFd, IdleList, OwnedFd};
use io_uring::{opcode, squeue, types, IoUring};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Tasks woken since the executor last looked (a waker must be `Send`; from this thread
/// only here, so the lock is never contended).
#[derive(Default)]
struct ReadyQueue(Mutex<Vec<usize>>);

struct TaskWaker {
    task: usize,
    ready: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut queue = self.ready.0.lock().unwrap_or_else(PoisonError::into_inner);
        queue.push(self.task);
    }
}

/// An operation in the ring: waiting (with the task to wake), done (its result), or given
/// up by a dropped future (its buffer kept until the kernel is done with it).
enum OpSlot {
    Free,
    Waiting(Option<Waker>),
    Done(i32),
    Abandoned { _buffer: Vec<u8> },
}

/// The ring, the operations in it and the tasks: the shard context every op is given.
struct Driver {
    ring: RefCell<IoUring>,
    ops: RefCell<Vec<OpSlot>>,
    free_ops: RefCell<Vec<usize>>,
    tasks: RefCell<Vec<Option<Task>>>,
    wakers: RefCell<Vec<Waker>>,
    free_tasks: RefCell<Vec<usize>>,
    ready: Arc<ReadyQueue>,
    /// Entries were pushed since the last submit (read by tokio's park hook).
    unsubmitted: Arc<AtomicBool>,
}

/// Where the loop waits for completions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Park {
    /// In the `io_uring_enter` that submits (DEFER_TASKRUN).
    Enter,
    /// In `epoll_wait` on the ring's descriptor, after an enter that only submits.
    Epoll,
}

impl Driver {
    fn new(park: Park) -> io::Result<Rc<Self>> {
        let mut builder = IoUring::builder();
        builder.setup_coop_taskrun().setup_single_issuer();
        if park == Park::Enter {
            builder.setup_defer_taskrun();
        }
        let ring = builder.build(1024)?;
        Ok(Rc::new(Self {
            ring: RefCell::new(ring),
            ops: RefCell::default(),
            free_ops: RefCell::default(),
            tasks: RefCell::default(),
            wakers: RefCell::default(),
            free_tasks: RefCell::default(),
            ready: Arc::default(),
            unsubmitted: Arc::default(),
        }))
    }

    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        let task: Task = Box::pin(task);
        let mut tasks = self.tasks.borrow_mut();
        let id = if let Some(id) = self.free_tasks.borrow_mut().pop() {
            tasks[id] = Some(task);
            id
        } else {
            tasks.push(Some(task));
            self.wakers
                .borrow_mut()
                .push(Waker::from(Arc::new(TaskWaker {
                    task: tasks.len() - 1,
                    ready: Arc::clone(&self.ready),
                })));
            tasks.len() - 1
        };
        self.ready
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id);
    }

    /// Puts `entry` in the ring with a fresh op slot as its user_data.
    fn submit(&self, entry: squeue::Entry, waker: &Waker) -> usize {
        let mut ops = self.ops.borrow_mut();
        let slot = self.free_ops.borrow_mut().pop().unwrap_or_else(|| {
            ops.push(OpSlot::Free);
            ops.len() - 1
        });
        ops[slot] = OpSlot::Waiting(Some(waker.clone()));
        let entry = entry.user_data(slot as u64);
        let mut ring = self.ring.borrow_mut();
        // SAFETY: the op's buffer is owned by its future, or by the slot once the future
        // is dropped, until the completion has been reaped.
        while unsafe { ring.submission().push(&entry) }.is_err() {
            ring.submit().expect("submit");
        }
        self.unsubmitted.store(true, Ordering::Relaxed);
        slot
    }

    /// Polls every woken task, then submits and waits in one enter and wakes the tasks
    /// whose operations completed.
    fn run(&self, park: Park) -> io::Result<()> {
        let epoll = match park {
            Park::Enter => None,
            Park::Epoll => Some(self.epoll_on_ring()?),
        };
        let mut events = Vec::with_capacity(1);
        let mut batch = Vec::new();
        loop {
            std::mem::swap(
                &mut batch,
                &mut *self.ready.0.lock().unwrap_or_else(PoisonError::into_inner),
            );
            for id in batch.drain(..) {
                self.poll_task(id);
            }
            let woken = !self
                .ready
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty();
            let mut ring = self.ring.borrow_mut();
            // A task woken meanwhile runs before any wait.
            let want = if woken || epoll.is_some() { 0 } else { 1 };
            // Interrupted: io_uring's task work runs as a signal-like notification.
            if let Err(error) = ring.submit_and_wait(want) {
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
            if let (Some(epoll), false) = (&epoll, woken) {
                if ring.completion().is_empty() {
                    events.clear();
                    let spare = rustix::buffer::spare_capacity(&mut events);
                    match rustix::event::epoll::wait(epoll, spare, None) {
                        Ok(_) | Err(rustix::io::Errno::INTR) => {}
                        Err(error) => return Err(error.into()),
                    }
                }
            }
            drop(ring);
            self.reap();
        }
    }

    /// An epoll set watching the ring's descriptor (readable when completions wait).
    fn epoll_on_ring(&self) -> io::Result<OwnedFd> {
        let epoll = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC)?;
        rustix::event::epoll::add(
            &epoll,
            // SAFETY: the ring owns this descriptor and outlives the loop.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(self.ring.borrow().as_raw_fd()) },
            rustix::event::epoll::EventData::new_u64(0),
            rustix::event::epoll::EventFlags::IN,
        )?;
        Ok(epoll)
    }

    /// Wakes the tasks whose operations completed.
    fn reap(&self) {
        let mut ring = self.ring.borrow_mut();
        let mut ops = self.ops.borrow_mut();
        for cqe in ring.completion() {
            let slot = cqe.user_data() as usize;
            match std::mem::replace(&mut ops[slot], OpSlot::Done(cqe.result())) {
                OpSlot::Waiting(waker) => waker.into_iter().for_each(Waker::wake),
                _ => {
                    ops[slot] = OpSlot::Free;
                    self.free_ops.borrow_mut().push(slot);
                }
            }
        }
    }

    fn poll_task(&self, id: usize) {
        let Some(mut task) = self.tasks.borrow_mut().get_mut(id).and_then(Option::take) else {
            return;
        };
        let waker = self.wakers.borrow()[id].clone();
        if task
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
        {
            self.tasks.borrow_mut()[id] = Some(task);
        } else {
            self.free_tasks.borrow_mut().push(id);
        }
    }
}

/// One operation's future: submitted on first poll, ready with the result and the buffer.
struct Op {
    driver: Rc<Driver>,
    entry: Option<squeue::Entry>,
    slot: Option<usize>,
    buffer: Option<Vec<u8>>,
}

impl Op {
    fn new(driver: &Rc<Driver>, entry: squeue::Entry, buffer: Vec<u8>) -> Self {
        Self {
            driver: Rc::clone(driver),
            entry: Some(entry),
            slot: None,
            buffer: Some(buffer),
        }
    }
}

impl Future for Op {
    type Output = (i32, Vec<u8>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(entry) = self.entry.take() {
            self.slot = Some(self.driver.submit(entry, cx.waker()));
            return Poll::Pending;
        }
        let slot = self.slot.expect("a submitted op");
        let mut ops = self.driver.ops.borrow_mut();
        match &mut ops[slot] {
            OpSlot::Done(result) => {
                let result = *result;
                ops[slot] = OpSlot::Free;
                self.driver.free_ops.borrow_mut().push(slot);
                drop(ops);
                self.slot = None;
                Poll::Ready((result, self.buffer.take().unwrap_or_default()))
            }
            OpSlot::Waiting(waker) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            OpSlot::Free | OpSlot::Abandoned { .. } => unreachable!("an op slot reused early"),
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        let Some(slot) = self.slot else { return };
        let mut ops = self.driver.ops.borrow_mut();
        if let OpSlot::Done(_) = ops[slot] {
            ops[slot] = OpSlot::Free;
            self.driver.free_ops.borrow_mut().push(slot);
        } else {
            ops[slot] = OpSlot::Abandoned {
                _buffer: self.buffer.take().unwrap_or_default(),
            };
        }
    }
}

fn read(driver: &Rc<Driver>, fd: RawFd, mut buffer: Vec<u8>) -> Op {
    let spare = buffer.capacity() - buffer.len();
    let entry = opcode::Read::new(
        types::Fd(fd),
        buffer.spare_capacity_mut().as_mut_ptr().cast(),
        spare as u32,
    )
    .offset(u64::MAX)
    .build();
    Op::new(driver, entry, buffer)
}

fn write(driver: &Rc<Driver>, fd: RawFd, buffer: Vec<u8>, from: usize) -> Op {
    let entry = opcode::Write::new(
        types::Fd(fd),
        buffer[from..].as_ptr(),
        (buffer.len() - from) as u32,
    )
    .offset(u64::MAX)
    .build();
    Op::new(driver, entry, buffer)
}

async fn write_all(driver: &Rc<Driver>, fd: RawFd, mut buffer: Vec<u8>) -> (bool, Vec<u8>) {
    let mut written = 0;
    while written < buffer.len() {
        let (result, back) = write(driver, fd, buffer, written).await;
        buffer = back;
        if result <= 0 {
            return (false, buffer);
        }
        written += result as usize;
    }
    (true, buffer)
}

/// Reads exactly `buffer.capacity()` bytes.
async fn read_exact(driver: &Rc<Driver>, fd: RawFd, mut buffer: Vec<u8>) -> (bool, Vec<u8>) {
    buffer.clear();
    while buffer.len() < buffer.capacity() {
        let (result, mut back) = read(driver, fd, buffer).await;
        if result <= 0 {
            return (false, back);
        }
        // SAFETY: the kernel wrote `result` bytes into the spare capacity.
        unsafe { back.set_len(back.len() + result as usize) };
        buffer = back;
    }
    (true, buffer)
}

/// An idle worker: its index and its message buffer.
type Pool = IdleList<(usize, Vec<u8>)>;

async fn relay_through(driver: &Rc<Driver>, pool: &Pool, workers: &[Worker]) -> bool {
    let (index, message) = pool.take().await;
    let worker = &workers[index];
    let (written, message) = write_all(driver, worker.input.as_raw_fd(), message).await;
    let (read, message) = read_exact(driver, worker.output.as_raw_fd(), message).await;
    pool.give_back((index, message));
    written && read
}

async fn serve_connection(
    driver: Rc<Driver>,
    socket: OwnedFd,
    pool: Rc<Pool>,
    workers: Rc<Vec<Worker>>,
) {
    let fd = socket.as_raw_fd();
    let mut matched = 0;
    let mut buffer = Vec::with_capacity(16 * 1024);
    loop {
        buffer.clear();
        let (result, mut back) = read(&driver, fd, buffer).await;
        if result <= 0 {
            return;
        }
        // SAFETY: the kernel wrote `result` bytes into the spare capacity.
        unsafe { back.set_len(result as usize) };
        buffer = back;
        let count = count_requests(&mut matched, &buffer);
        if !workers.is_empty() {
            for _ in 0..count {
                if !relay_through(&driver, &pool, &workers).await {
                    return;
                }
            }
        }
        if count > 0 && !write_all(&driver, fd, answers(count)).await.0 {
            return;
        }
    }
}

/// Accepts connections and starts a task (by `spawn`) serving each.
async fn accept_loop(
    driver: Rc<Driver>,
    listen_fd: RawFd,
    workers: Vec<Worker>,
    spawn: impl Fn(Task),
) {
    let pool = Rc::new(Pool::default());
    for index in 0..workers.len() {
        pool.give_back((index, vec![b'm'; MESSAGE_BYTES]));
    }
    let workers = Rc::new(workers);
    let acceptor = driver;
    loop {
        let entry = opcode::Accept::new(
            types::Fd(listen_fd),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .build();
        let (result, _) = Op::new(&acceptor, entry, Vec::new()).await;
        if result < 0 {
            continue;
        }
        // SAFETY: a successful accept's result is a new descriptor nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(result) };
        spawn(Box::pin(serve_connection(
            Rc::clone(&acceptor),
            socket,
            Rc::clone(&pool),
            Rc::clone(&workers),
        )));
    }
}

/// Serves until the process is killed, on this executor.
pub fn serve(listener: &TcpListener, park: Park, workers: Vec<Worker>) -> io::Result<()> {
    let driver = Driver::new(park)?;
    let spawner = Rc::clone(&driver);
    driver.spawn(accept_loop(
        Rc::clone(&driver),
        listener.as_raw_fd(),
        workers,
        move |task| spawner.spawn(task),
    ));
    driver.run(park)
}

/// The ring's descriptor as tokio's reactor watches it.
struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Serves until the process is killed, with this driver's ring under tokio's current-thread
/// loop and `LocalSet` (as tokio-uring is): entries submitted in the park hook, the ring's
/// descriptor watched by tokio's epoll, completions reaped by a task when it is readable.
pub fn serve_on_tokio(listener: &TcpListener, workers: Vec<Worker>) -> io::Result<()> {
    let driver = Driver::new(Park::Epoll)?;
    let ring_fd = driver.ring.borrow().as_raw_fd();
    let unsubmitted = Arc::clone(&driver.unsubmitted);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .on_thread_park(move || {
            if unsubmitted.swap(false, Ordering::Relaxed) {
                // SAFETY: the ring outlives the runtime (both live until the process is
                // killed); entering only submits what this thread pushed.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(ring_fd) };
                // SAFETY: no EXT_ARG: plain counts only.
                let _ = unsafe {
                    rustix::io_uring::io_uring_enter(
                        fd,
                        1024,
                        0,
                        rustix::io_uring::IoringEnterFlags::empty(),
                    )
                };
            }
        })
        .build()?;
    let listen_fd = listener.as_raw_fd();
    tokio::task::LocalSet::new().block_on(&runtime, async move {
        // SAFETY: the ring's descriptor stays open (and the same) while registered.
        let ring = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                RingFd(ring_fd),
                tokio::io::Interest::READABLE,
            )
        }
        .map_err(io::Error::from)?;
        let reaper = Rc::clone(&driver);
        tokio::task::spawn_local(async move {
            loop {
                let Ok(mut ready) = ring.readable().await else {
                    return;
                };
                ready.clear_ready();
                reaper.reap();
            }
        });
        accept_loop(driver, listen_fd, workers, |task| {
            tokio::task::spawn_local(task);
        })
        .await;
        Ok(())
    })
}
