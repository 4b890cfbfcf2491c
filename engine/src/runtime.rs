//! Shards: N threads, each a single-threaded io_uring loop (tokio-uring). Work reaches a
//! shard as a message; tasks on a shard are `!Send` and never move. Wake-ups across shards go
//! through tokio's sync primitives, which are runtime-agnostic.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::sync::Mutex;
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

enum ShardJob {
    Run(Box<dyn FnOnce() + Send>),
    Stop,
}

thread_local! {
    static CURRENT_SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The shard the calling thread runs, if it is a shard thread.
#[must_use]
pub fn current_shard() -> Option<usize> {
    CURRENT_SHARD.with(Cell::get)
}

/// The shard threads and the queues that feed them.
#[derive(Debug)]
pub struct Shards {
    queues: Vec<mpsc::UnboundedSender<ShardJob>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Submission queue entries per shard ring.
const RING_ENTRIES: u32 = 1024;

impl Shards {
    /// Starts `count` shard threads (at least one).
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn start(count: usize) -> io::Result<Self> {
        let count = count.max(1);
        let mut queues = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let (sender, mut receiver) = mpsc::unbounded_channel::<ShardJob>();
            let thread = std::thread::Builder::new()
                .name(format!("rr-shard-{index}"))
                .spawn(move || {
                    CURRENT_SHARD.with(|shard| shard.set(Some(index)));
                    // COOP_TASKRUN: a completion does not interrupt this thread with an IPI;
                    // it is picked up at the next ring entry, which the loop makes every
                    // turn. SINGLE_ISSUER: only this thread submits. Kernels before 5.19 /
                    // 6.0 refuse them: then a plain ring (probed on a tiny one).
                    let mut ring = tokio_uring::uring_builder();
                    ring.setup_coop_taskrun().setup_single_issuer();
                    if ring.build(8).is_err() {
                        ring = tokio_uring::uring_builder();
                    }
                    tokio_uring::builder()
                        .entries(RING_ENTRIES)
                        .uring_builder(&ring)
                        .start(async move {
                            while let Some(ShardJob::Run(job)) = receiver.recv().await {
                                job();
                            }
                        });
                })?;
            queues.push(sender);
            threads.push(thread);
        }
        Ok(Self {
            queues,
            threads: Mutex::new(threads),
        })
    }

    /// Number of shards.
    #[must_use]
    pub fn count(&self) -> usize {
        self.queues.len()
    }

    /// Runs the future made by `make` as a task on shard `shard % count`. Returns false when
    /// the shards are shut down.
    pub fn spawn_on<F, Fut>(&self, shard: usize, make: F) -> bool
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let job = ShardJob::Run(Box::new(move || {
            tokio_uring::spawn(make());
        }));
        self.queues[shard % self.queues.len()].send(job).is_ok()
    }

    /// Runs the future made by `make` on shard `shard % count` and hands back its output.
    pub fn run_on<F, Fut, T>(&self, shard: usize, make: F) -> oneshot::Receiver<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        self.spawn_on(shard, move || async move {
            let _ = sender.send(make().await);
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
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        assert!(
            current_shard().is_none(),
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
        if current_shard().is_some() {
            return;
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}
