//! Shards: N threads, each a single-threaded loop: tokio's current-thread runtime and
//! `LocalSet`, driving an io_uring ring (tokio-uring) or tokio's epoll reactor (see
//! [`crate::aio`]). Work reaches a shard as a message; tasks on a shard are `!Send` and never
//! move. Wake-ups across shards go through tokio's sync primitives, which are
//! runtime-agnostic. What belongs to one shard (its index, its I/O backend, its relay
//! handles, its frame buffers) is its [`ShardContext`], handed to every task started there:
//! no thread-local state.

use crate::aio::Backend;
use crate::worker::relay::{RelayCache, SendBuffers};
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// What a task started on a shard gets: the shard's own state.
#[derive(Debug)]
pub struct ShardContext {
    index: usize,
    backend: Backend,
    relays: RelayCache,
    send_buffers: SendBuffers,
    /// A second collect of freed pages is scheduled (see `memory`).
    late_collect_pending: std::cell::Cell<bool>,
}

impl ShardContext {
    /// A context for shard `index` doing its I/O on `backend` (the shard loop makes one).
    #[must_use]
    pub fn new(index: usize, backend: Backend) -> Self {
        Self {
            index,
            backend,
            relays: RelayCache::default(),
            send_buffers: SendBuffers::default(),
            late_collect_pending: std::cell::Cell::new(false),
        }
    }

    /// Whether this shard has a second collect of freed pages scheduled.
    #[must_use]
    pub fn late_collect_pending(&self) -> &std::cell::Cell<bool> {
        &self.late_collect_pending
    }

    /// This shard's index.
    #[must_use]
    pub fn index(&self) -> usize {
        self.index
    }

    /// How this shard does its I/O.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This shard's handles to worker relays.
    #[must_use]
    pub fn relays(&self) -> &RelayCache {
        &self.relays
    }

    /// This shard's reusable frame buffers.
    #[must_use]
    pub fn send_buffers(&self) -> &SendBuffers {
        &self.send_buffers
    }
}

/// A job for a shard: called there with the shard's context.
type ShardFn = Box<dyn FnOnce(&Rc<ShardContext>) + Send>;

enum ShardJob {
    Run(ShardFn),
    Stop,
}

/// Shard threads are named `rr-shard-<index>`.
const THREAD_PREFIX: &str = "rr-shard-";

/// True on a shard thread (told by its name: the runtime keeps no thread-local state).
fn on_shard_thread() -> bool {
    std::thread::current()
        .name()
        .is_some_and(|name| name.starts_with(THREAD_PREFIX))
}

/// The shard threads and the queues that feed them.
#[derive(Debug)]
pub struct Shards {
    queues: Vec<mpsc::UnboundedSender<ShardJob>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_pool_id: AtomicU64,
}

/// Submission queue entries per shard ring.
const RING_ENTRIES: u32 = 1024;

impl Shards {
    /// Starts `count` shard threads (at least one) on `backend`, and waits until each has
    /// its loop.
    ///
    /// # Errors
    /// When a thread cannot be started or its loop cannot be set up (the ring refused:
    /// memory lock limit, a seccomp profile); the shards already started are stopped.
    pub fn start(count: usize, backend: Backend) -> io::Result<Self> {
        let count = count.max(1);
        let mut queues = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        let (started_sender, started) = std::sync::mpsc::channel();
        for index in 0..count {
            let (sender, receiver) = mpsc::unbounded_channel::<ShardJob>();
            let started_sender = started_sender.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{THREAD_PREFIX}{index}"))
                .spawn(move || run_shard(index, backend, receiver, &started_sender));
            queues.push(sender);
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    Self::from_parts(queues, threads).shutdown();
                    return Err(error);
                }
            }
        }
        drop(started_sender);
        let shards = Self::from_parts(queues, threads);
        for _ in 0..count {
            let outcome = started
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("a shard thread ended at start")));
            if let Err(error) = outcome {
                shards.shutdown();
                return Err(error);
            }
        }
        Ok(shards)
    }

    fn from_parts(
        queues: Vec<mpsc::UnboundedSender<ShardJob>>,
        threads: Vec<JoinHandle<()>>,
    ) -> Self {
        Self {
            queues,
            threads: Mutex::new(threads),
            next_pool_id: AtomicU64::new(1),
        }
    }

    /// Number of shards.
    #[must_use]
    pub fn count(&self) -> usize {
        self.queues.len()
    }

    /// A number no other pool on these shards has (keys of the shards' relay caches).
    pub fn next_pool_id(&self) -> u64 {
        self.next_pool_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs the future made by `make` (given the shard's context) as a task on shard
    /// `shard % count`. Returns false when the shards are shut down.
    pub fn spawn_on<F, Fut>(&self, shard: usize, make: F) -> bool
    where
        F: FnOnce(Rc<ShardContext>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let job = ShardJob::Run(Box::new(move |context: &Rc<ShardContext>| {
            tokio::task::spawn_local(make(Rc::clone(context)));
        }));
        self.queues[shard % self.queues.len()].send(job).is_ok()
    }

    /// Runs the future made by `make` on shard `shard % count` and hands back its output.
    pub fn run_on<F, Fut, T>(&self, shard: usize, make: F) -> oneshot::Receiver<T>
    where
        F: FnOnce(Rc<ShardContext>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        self.spawn_on(shard, move |context| async move {
            let _ = sender.send(make(context).await);
        });
        receiver
    }

    /// Blocks the calling (non-shard) thread on a future run on shard `shard`.
    ///
    /// # Panics
    /// When called from a shard thread (it would block that shard's loop) or when the shards
    /// are shut down.
    pub fn block_on<F, Fut, T>(&self, shard: usize, make: F) -> T
    where
        F: FnOnce(Rc<ShardContext>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        assert!(
            !on_shard_thread(),
            "block_on from a shard thread would stall its loop"
        );
        self.run_on(shard, make)
            .blocking_recv()
            .expect("shards are running")
    }

    /// Stops every shard loop (tasks still running are dropped) and joins the threads.
    /// From a shard thread it only asks the loops to stop.
    pub fn shutdown(&self) {
        for queue in &self.queues {
            let _ = queue.send(ShardJob::Stop);
        }
        if on_shard_thread() {
            return;
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// A shard thread: sets up its loop on `backend`, says so on `started`, then runs the jobs
/// it is sent until told to stop.
fn run_shard(
    index: usize,
    backend: Backend,
    mut jobs: mpsc::UnboundedReceiver<ShardJob>,
    started: &std::sync::mpsc::Sender<io::Result<()>>,
) {
    let context = Rc::new(ShardContext::new(index, backend));
    let run_jobs = async move {
        while let Some(ShardJob::Run(job)) = jobs.recv().await {
            job(&context);
        }
    };
    let failed = |what: &str, error: io::Error| {
        let text = format!("shard {index}: {what} setup: {error}");
        let _ = started.send(Err(io::Error::new(error.kind(), text)));
    };
    match backend {
        Backend::Uring => {
            // COOP_TASKRUN: a completion does not interrupt this thread with an IPI; it is
            // picked up at the next ring entry, which the loop makes every turn.
            // SINGLE_ISSUER: only this thread submits. Kernels before 5.19 / 6.0 refuse
            // them: then a plain ring (probed on a tiny one).
            let mut ring = tokio_uring::uring_builder();
            ring.setup_coop_taskrun().setup_single_issuer();
            if ring.build(8).is_err() {
                ring = tokio_uring::uring_builder();
            }
            let mut builder = tokio_uring::builder();
            builder.entries(RING_ENTRIES).uring_builder(&ring);
            match tokio_uring::Runtime::new(&builder) {
                Ok(runtime) => {
                    let _ = started.send(Ok(()));
                    runtime.block_on(run_jobs);
                }
                Err(error) => failed("io_uring", error),
            }
        }
        Backend::Epoll => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => {
                    let _ = started.send(Ok(()));
                    tokio::task::LocalSet::new().block_on(&runtime, run_jobs);
                }
                Err(error) => failed("epoll", error),
            }
        }
    }
}
