//! The `redis` driver on one Redis node (spec kv §1.2, §3), with the `redis` crate's
//! blocking client on a thread of the storage's own: calls are sent to it and awaited, so
//! no shard waits on Redis. One command per key, as rr sends them. A connection that fails
//! is dropped and made again at the next call, so a Redis that restarts costs the calls
//! made while it is down (each an error naming the cause) and no more. During an outage
//! calls do not pile up: at most [`QUEUED_CALLS_MAX`] wait for the thread (the next are
//! refused at once), each has a deadline (`dial_timeout + write_timeout + read_timeout`)
//! after which its caller gets an error, and the thread sends nothing for a call whose
//! caller has gone or whose deadline has passed.

use super::rfc3339::{self, UnixNanos};
use super::{Item, Timeout};
use crate::config::values::Reader;
use crate::config::ConfigError;
use redis::{ConnectionLike, IntoConnectionInfo, RedisConnectionInfo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The most calls one redis storage holds waiting for its connection (one connection runs
/// one call at a time). A call past it is answered at once with an error: while Redis is
/// slow or away, callers learn it without waiting behind calls that will time out.
pub const QUEUED_CALLS_MAX: usize = 64;

/// `kv.<name>.config` for the `redis` driver (the keys a single node uses).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    host: String,
    port: u16,
    username: String,
    password: String,
    db: i64,
    dial_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
}

impl RedisConfig {
    /// Reads the options at `path`.
    ///
    /// # Errors
    /// A value of the wrong type, an address that is not `host:port`, a cluster (two or
    /// more addresses) or a sentinel setup, which ringrunner does not support yet.
    pub fn read(reader: &Reader<'_>, path: &str) -> Result<Self, ConfigError> {
        let key = |name: &str| format!("{path}.{name}");
        let error = |name: &str, message: String| ConfigError {
            path: key(name),
            line: reader.node(&key(name)).map_or(0, |n| n.line),
            message,
        };
        let addrs = reader
            .strings(&key("addrs"))?
            .unwrap_or_else(|| vec!["127.0.0.1:6379".into()]);
        if addrs.len() > 1 {
            return Err(error("addrs", format!("{} addresses make a Redis cluster, which ringrunner does not support yet (one node only)", addrs.len())));
        }
        if reader
            .string(&key("master_name"))?
            .is_some_and(|name| !name.is_empty())
        {
            return Err(error(
                "master_name",
                "Redis sentinel is not supported by ringrunner yet (one node only)".into(),
            ));
        }
        let address = addrs
            .first()
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:6379".into());
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| {
                Some((
                    host.trim_matches(|c| c == '[' || c == ']').to_owned(),
                    port.parse().ok()?,
                ))
            })
            .ok_or_else(|| error("addrs", format!("{address:?} is not host:port")))?;
        let db = reader.unsigned(&key("db"))?.unwrap_or(0);
        let read_timeout = reader
            .duration(&key("read_timeout"))?
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(3));
        // The pool, retry and TLS keys rr reads: known, not used by a single connection.
        for ignored in [
            "sentinel_password",
            "route_by_latency",
            "route_randomly",
            "max_retries",
            "min_retry_backoff",
            "max_retry_backoff",
            "pool_size",
            "min_idle_conns",
            "max_conn_age",
            "pool_timeout",
            "idle_timeout",
            "idle_check_freq",
            "read_only",
        ] {
            let _ = reader.has(&key(ignored));
        }
        if reader.has(&key("tls")) {
            return Err(error(
                "tls",
                "Redis over TLS is not supported by ringrunner yet".into(),
            ));
        }
        Ok(Self {
            host,
            port,
            username: reader.string(&key("username"))?.unwrap_or_default(),
            password: reader.string(&key("password"))?.unwrap_or_default(),
            db: i64::try_from(db)
                .map_err(|_| error("db", format!("{db} is not a database index")))?,
            dial_timeout: reader
                .duration(&key("dial_timeout"))?
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(5)),
            read_timeout,
            write_timeout: reader
                .duration(&key("write_timeout"))?
                .filter(|d| !d.is_zero())
                .unwrap_or(read_timeout),
        })
    }
}

/// A call run on the storage's thread.
type Job = Box<dyn FnOnce(&mut Link) + Send>;

/// The storage's thread's side: the client and its connection, when it has one.
struct Link {
    client: redis::Client,
    config: RedisConfig,
    connection: Option<redis::Connection>,
    /// The deadline of the call being run: no command is sent past it, and no socket wait
    /// outlasts it.
    deadline: Instant,
}

impl Link {
    /// Runs `command` on the connection, connecting first when there is none. A failed
    /// connection is dropped; when it was an old one (Redis restarted since, or closed it
    /// while idle) the command is run once more on a new one, as go-redis retries: the
    /// caller sees why Redis cannot be reached, not a stale socket's end of file. Every
    /// command sent is idempotent (EXISTS, SET, GET, EXPIRE, TTL, DEL, FLUSHDB).
    fn with<T>(
        &mut self,
        mut command: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let reused = self
            .connection
            .as_ref()
            .is_some_and(ConnectionLike::is_open);
        match self.try_once(&mut command) {
            Err(error) if reused && self.connection.is_none() => {
                tracing::debug!(target: "kv", %error, "redis connection lost, connecting again");
                self.try_once(&mut command)
            }
            other => other,
        }
    }

    fn try_once<T>(
        &mut self,
        command: &mut impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        // Checked before each command is sent: the caller has had its error already.
        let left = self
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| DEADLINE_PASSED.to_owned())?;
        if self
            .connection
            .as_ref()
            .is_none_or(|connection| !connection.is_open())
        {
            let connection = self
                .client
                .get_connection_with_timeout(self.config.dial_timeout.min(left))
                .map_err(|error| error.to_string())?;
            self.connection = Some(connection);
        }
        let connection = self.connection.as_mut().expect("connected above");
        let timeouts = connection
            .set_read_timeout(Some(self.config.read_timeout.min(left)))
            .and_then(|()| connection.set_write_timeout(Some(self.config.write_timeout.min(left))));
        if let Err(error) = timeouts {
            self.connection = None;
            return Err(error.to_string());
        }
        command(connection).map_err(|error| {
            if error.is_io_error()
                || error.is_connection_dropped()
                || error.is_timeout()
                || error.is_unrecoverable_error()
            {
                self.connection = None;
            }
            error.to_string()
        })
    }
}

/// What a call whose deadline passed before its command was sent says.
const DEADLINE_PASSED: &str = "the call's deadline passed before Redis was reached";

/// `SET key value`, with `PX` for an expiry `at` after `now`: the milliseconds left,
/// rounded down, and at least 1 (go-redis's `formatMs`: a deadline under a millisecond away
/// must still expire, not be stored for ever). A past deadline is stored without expiry, as
/// rr's go-redis does with a negative duration (and the memory driver with its warning).
fn set_command(item: &Item, timeout: Timeout, now: UnixNanos) -> redis::Cmd {
    let mut command = redis::cmd("SET");
    command.arg(&item.key).arg(&item.value);
    if let Timeout::At(at) = timeout {
        let left_ns = at - now;
        if left_ns > 0 {
            let left_ms = (left_ns / 1_000_000).max(1);
            command
                .arg("PX")
                .arg(i64::try_from(left_ms).unwrap_or(i64::MAX));
        }
    }
    command
}

/// A redis storage: the sender of its thread's queue.
#[derive(Debug)]
pub struct RedisStorage {
    name: String,
    jobs: SyncSender<Job>,
    /// A call's deadline: `dial_timeout + write_timeout + read_timeout`, the longest one
    /// attempt may take.
    call_timeout: Duration,
    /// The queue was full at the last call (logged once per episode, not per call).
    saturated: AtomicBool,
}

impl RedisStorage {
    /// Starts the storage's thread; it connects at the first call.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(name: &str, config: RedisConfig) -> Result<Self, String> {
        let info = (config.host.clone(), config.port)
            .into_connection_info()
            .map_err(|error| error.to_string())?;
        let mut redis = RedisConnectionInfo::default().set_db(config.db);
        if !config.username.is_empty() {
            redis = redis.set_username(&config.username);
        }
        if !config.password.is_empty() {
            redis = redis.set_password(&config.password);
        }
        let client = redis::Client::open(info.set_redis_settings(redis))
            .map_err(|error| error.to_string())?;
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(QUEUED_CALLS_MAX);
        let call_timeout = config.dial_timeout + config.write_timeout + config.read_timeout;
        let mut link = Link {
            client,
            config,
            connection: None,
            deadline: Instant::now(),
        };
        std::thread::Builder::new()
            .name(format!("rr-kv-{name}"))
            .spawn(move || {
                for job in queue {
                    job(&mut link);
                }
            })
            .map_err(|error| format!("cannot start its thread: {error}"))?;
        Ok(Self {
            name: name.to_owned(),
            jobs,
            call_timeout,
            saturated: AtomicBool::new(false),
        })
    }

    /// Runs `call` on the storage's thread and waits for its answer, until the call's
    /// deadline. A full queue is an error at once; a call whose caller has gone (its RPC
    /// connection closed) or whose deadline has passed is skipped by the thread.
    async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&mut Link) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let deadline = Instant::now() + self.call_timeout;
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |link| {
            if answer.is_closed() || Instant::now() >= deadline {
                return;
            }
            link.deadline = deadline;
            let _ = answer.send(call(link));
        });
        match self.jobs.try_send(job) {
            Ok(()) => self.saturated.store(false, Ordering::Relaxed),
            Err(TrySendError::Full(_)) => {
                if !self.saturated.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "kv", storage = %self.name, queued_max = QUEUED_CALLS_MAX,
                        "redis is not keeping up: calls are refused until the queue drains");
                }
                return Err(format!(
                    "{QUEUED_CALLS_MAX} calls are already waiting for redis"
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err("the redis storage has stopped".to_owned())
            }
        }
        match tokio::time::timeout_at(deadline.into(), answered).await {
            Ok(answer) => answer.unwrap_or_else(|_| Err(DEADLINE_PASSED.into())),
            Err(_) => Err(format!(
                "redis did not answer within {} ms",
                self.call_timeout.as_millis()
            )),
        }
    }

    /// The keys that exist (`EXISTS` each).
    pub async fn has(&self, keys: Vec<String>) -> Result<Vec<String>, String> {
        self.run(move |link| {
            let mut present = Vec::new();
            for key in keys {
                if link.with(|c| redis::cmd("EXISTS").arg(&key).query::<i64>(c))? > 0 {
                    present.push(key);
                }
            }
            Ok(present)
        })
        .await
    }

    /// `SET`s each item, with `PX` for a future expiry (see [`set_command`]).
    pub async fn set(&self, items: Vec<(Item, Timeout)>) -> Result<(), String> {
        self.run(move |link| {
            for (item, timeout) in items {
                let command = set_command(&item, timeout, super::memory::now());
                link.with(|c| command.query::<()>(c))?;
            }
            Ok(())
        })
        .await
    }

    /// The values of the keys that exist (`GET` each).
    pub async fn mget(&self, keys: Vec<String>) -> Result<Vec<(String, Vec<u8>)>, String> {
        self.run(move |link| {
            let mut found = Vec::new();
            for key in keys {
                if let Some(value) =
                    link.with(|c| redis::cmd("GET").arg(&key).query::<Option<Vec<u8>>>(c))?
                {
                    found.push((key, value));
                }
            }
            Ok(found)
        })
        .await
    }

    /// `EXPIRE`s each key (whole seconds, at least 1 for a future time; a past time makes
    /// Redis delete the key); the replies are ignored, as rr does, but not a lost connection.
    pub async fn mexpire(&self, items: Vec<(String, String, UnixNanos)>) -> Result<(), String> {
        self.run(move |link| {
            for (key, _, at) in items {
                let left = at - super::memory::now();
                let seconds = if left > 0 {
                    (left / 1_000_000_000).max(1)
                } else {
                    left / 1_000_000_000
                };
                let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
                link.with(|c| {
                    redis::cmd("EXPIRE")
                        .arg(&key)
                        .arg(seconds)
                        .query::<redis::Value>(c)
                })?;
            }
            Ok(())
        })
        .await
    }

    /// The expiry of each key that has one, `now + TTL` (keys without one, or missing, are
    /// left out, as rr's redis driver does).
    pub async fn ttl(&self, keys: Vec<String>) -> Result<Vec<(String, String)>, String> {
        self.run(move |link| {
            let mut found = Vec::new();
            for key in keys {
                let left = link.with(|c| redis::cmd("TTL").arg(&key).query::<i64>(c))?;
                if let Ok(left) = u64::try_from(left) {
                    found.push((key, rfc3339::format(crate::clock::unix_seconds() + left)));
                }
            }
            Ok(found)
        })
        .await
    }

    /// `DEL`s the keys in one command.
    pub async fn delete(&self, keys: Vec<String>) -> Result<(), String> {
        if keys.is_empty() {
            return Ok(());
        }
        self.run(move |link| {
            link.with(|c| redis::cmd("DEL").arg(&keys).query::<i64>(c))
                .map(drop)
        })
        .await
    }

    /// `FLUSHDB`: every key of the database, as rr does.
    pub async fn clear(&self) -> Result<(), String> {
        self.run(|link| link.with(|c| redis::cmd("FLUSHDB").query::<()>(c)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(command: &redis::Cmd) -> Vec<String> {
        command
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                _ => "<cursor>".into(),
            })
            .collect()
    }

    /// A redis-server of the test's own on a free port, killed when dropped; None (a
    /// visible skip) when it is not installed.
    struct ScratchRedis(std::process::Child, u16);

    impl ScratchRedis {
        fn start() -> Option<Self> {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .ok()?
                .local_addr()
                .ok()?
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn();
            let Ok(child) = child else {
                eprintln!("SKIPPED: redis-server is not installed");
                return None;
            };
            Some(Self(child, port))
        }

        /// A connection, once it answers (it takes a moment to listen).
        fn connect(&self) -> redis::Connection {
            let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.1)).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match client.get_connection() {
                    Ok(connection) => return connection,
                    Err(error) => assert!(Instant::now() < deadline, "redis-server: {error}"),
                }
                std::thread::park_timeout(Duration::from_millis(10));
            }
        }
    }

    impl Drop for ScratchRedis {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_deadline_under_a_millisecond_away_still_expires() {
        let item = Item {
            key: "soon".into(),
            value: b"v".to_vec(),
            timeout: "2030-01-01T00:00:00Z".into(),
        };
        let now: UnixNanos = 1_000_000_000_000;
        // On a real Redis the key sent with half a millisecond left has an expiry (PTTL 0 or
        // 1) or is already gone (-2); -1 is a key stored for good (what was sent before).
        if let Some(redis) = ScratchRedis::start() {
            let mut connection = redis.connect();
            set_command(&item, Timeout::At(now + 500_000), now)
                .query::<()>(&mut connection)
                .unwrap();
            let left_ms: i64 = redis::cmd("PTTL")
                .arg("soon")
                .query(&mut connection)
                .unwrap();
            assert!(
                matches!(left_ms, -2 | 0 | 1),
                "PTTL {left_ms}: the key would never expire"
            );
        }
        let set = |left_ns: UnixNanos| args(&set_command(&item, Timeout::At(now + left_ns), now));
        assert_eq!(set(500_000), ["SET", "soon", "v", "PX", "1"]);
        assert_eq!(set(1), ["SET", "soon", "v", "PX", "1"]);
        assert_eq!(set(2_500_000), ["SET", "soon", "v", "PX", "2"]);
        // A past deadline: stored without expiry, as rr's go-redis does.
        assert_eq!(set(0), ["SET", "soon", "v"]);
        assert_eq!(set(-5), ["SET", "soon", "v"]);
        assert_eq!(
            args(&set_command(&item, Timeout::None, now)),
            ["SET", "soon", "v"]
        );
    }
}
