//! Test harness: shards plus a pool of real PHP workers, driven from the test thread.

use ringrunner::aio::Backend;
use ringrunner::pool::{ExecError, Pool, PoolConfig, Request};
use ringrunner::runtime::Shards;
use ringrunner::worker::process::WorkerCommand;
use ringrunner_protocol::Flags;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A pool config running `php php/workers/<script>` with small timeouts for tests.
#[must_use]
pub fn php_pool_config(script: &str, workers: usize) -> PoolConfig {
    let command = WorkerCommand {
        argv: vec![
            crate::php_binary(),
            crate::php_dir()
                .join("workers")
                .join(script)
                .display()
                .to_string(),
        ],
        ..WorkerCommand::default()
    };
    let mut config = PoolConfig::new("test", command);
    config.num_workers = workers;
    if let Some(dsn) = test_relay() {
        config.relay = ringrunner::worker::socket_relay::RelayAddress::parse(&dsn)
            .expect("RINGRUNNER_TEST_RELAY is a relay DSN");
        config.relay_dsn = dsn;
    }
    config.allocate_timeout = Duration::from_secs(10);
    config.destroy_timeout = Duration::from_secs(10);
    config.reset_timeout = Duration::from_secs(10);
    config
}

/// The relay the pool tests run over: `RINGRUNNER_TEST_RELAY=tcp` (a free port on
/// 127.0.0.1) or `unix` (a fresh socket path), pipes otherwise. `scripts/test` runs the pool
/// suite once per relay.
#[must_use]
pub fn test_relay() -> Option<String> {
    match std::env::var("RINGRUNNER_TEST_RELAY").ok()?.as_str() {
        "tcp" => Some("tcp://127.0.0.1:0".into()),
        "unix" => {
            // The pool removes its socket file when dropped; no folder to clean up.
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("rr-test-{}-{n}.sock", std::process::id()));
            Some(format!("unix://{}", path.display()))
        }
        _ => None,
    }
}

/// Shards and a started pool; destroys the pool and stops the shards when dropped.
#[derive(Debug)]
pub struct PoolHarness {
    /// The shard threads.
    pub shards: Arc<Shards>,
    /// The pool under test.
    pub pool: Pool,
}

impl PoolHarness {
    /// Starts two shards and the pool.
    ///
    /// # Errors
    /// The pool's boot error.
    pub fn start(config: PoolConfig) -> Result<Self, ringrunner::pool::SpawnError> {
        let shards = Arc::new(
            Shards::start(2, Backend::from_env().expect("RINGRUNNER_IO")).expect("shards start"),
        );
        let for_pool = Arc::clone(&shards);
        let pool = shards.block_on(0, move |_| Pool::start(config, for_pool));
        match pool {
            Ok(pool) => Ok(Self { shards, pool }),
            Err(error) => {
                shards.shutdown();
                Err(error)
            }
        }
    }

    /// Runs one request with body `body` on shard `shard`; returns the reply body.
    ///
    /// # Errors
    /// The pool's [`ExecError`].
    pub fn exec_on(&self, shard: usize, body: &str) -> Result<String, ExecError> {
        self.exec_in_background(shard, body)
            .blocking_recv()
            .expect("shards are running")
    }

    /// Starts one request on shard `shard` without waiting for it.
    pub fn exec_in_background(
        &self,
        shard: usize,
        body: &str,
    ) -> oneshot::Receiver<Result<String, ExecError>> {
        let pool = self.pool.clone();
        let body = body.to_owned();
        self.shards.run_on(shard, move |shard| async move {
            let mut response = Vec::new();
            let meta = pool
                .exec(
                    &shard,
                    Request {
                        codec: Flags::EMPTY,
                        context: b"",
                        body: body.as_bytes(),
                        lent: None,
                    },
                    &mut response,
                )
                .await?;
            Ok(String::from_utf8_lossy(&response[meta.context_len..]).into_owned())
        })
    }

    /// Runs one request on shard 0.
    ///
    /// # Errors
    /// The pool's [`ExecError`].
    pub fn exec(&self, body: &str) -> Result<String, ExecError> {
        self.exec_on(0, body)
    }

    /// Pids of the workers in state `ready`.
    #[must_use]
    pub fn ready_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .pool
            .workers()
            .iter()
            .filter(|w| w.state == ringrunner::pool::WorkerState::Ready)
            .map(|w| w.pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Polls `condition` (a worker count, a state) until it holds or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, mut condition: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if condition(self) {
                return true;
            }
            std::thread::yield_now();
            std::thread::park_timeout(Duration::from_millis(2));
        }
        condition(self)
    }
}

impl Drop for PoolHarness {
    fn drop(&mut self) {
        let pool = self.pool.clone();
        self.shards
            .block_on(0, move |_| async move { pool.destroy().await });
        self.shards.shutdown();
    }
}

/// Runs `rounds` requests on a pool of `config` (give it `max_jobs = 1`: one worker
/// replacement per request) and asserts that afterwards the process holds as many
/// descriptors as before and has no zombie child. Call it from a test binary of its own:
/// /proc/self/fd counts every thread's descriptors.
///
/// # Panics
/// When a request fails, a descriptor leaked or a child was left unreaped.
pub fn assert_replacements_leak_nothing(config: PoolConfig, rounds: usize) {
    const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
    let open_fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let workers = config.num_workers;
    let harness = PoolHarness::start(config).unwrap();
    // Warm every shard's caches and buffers.
    for shard in 0..4 {
        harness.exec_on(shard, "echo:warm").unwrap();
    }
    assert!(harness.wait_until(EVENT_TIMEOUT, |h| h.ready_pids().len() == workers));
    let before = open_fds();
    for round in 0..rounds {
        assert_eq!(harness.exec_on(round, "echo:r").unwrap(), "r");
    }
    assert!(
        harness.wait_until(EVENT_TIMEOUT, |h| h.ready_pids().len() == workers
            && open_fds() == before),
        "fds before {before}, after {}",
        open_fds()
    );
    let zombies = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| {
                let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
                fields.first() == Some(&"Z")
                    && fields.get(1) == Some(&std::process::id().to_string().as_str())
            })
        });
    assert_eq!(zombies.count(), 0);
}
