//! The `redis` driver on one Redis node (spec kv §1.2, §3), with the `redis` crate's
//! blocking client on a thread of the storage's own: calls are sent to it and awaited, so
//! no shard waits on Redis. One command per key, as rr sends them. A connection that fails
//! is dropped and made again at the next call, so a Redis that restarts costs the calls
//! made while it is down (each an error naming the cause) and no more.

use super::rfc3339::{self, UnixNanos};
use super::{Item, Timeout};
use crate::config::values::Reader;
use crate::config::ConfigError;
use redis::{ConnectionLike, IntoConnectionInfo, RedisConnectionInfo};
use std::time::Duration;
use tokio::sync::oneshot;

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
        if self
            .connection
            .as_ref()
            .is_none_or(|connection| !connection.is_open())
        {
            let connection = self
                .client
                .get_connection_with_timeout(self.config.dial_timeout)
                .map_err(|error| error.to_string())?;
            connection
                .set_read_timeout(Some(self.config.read_timeout))
                .map_err(|e| e.to_string())?;
            connection
                .set_write_timeout(Some(self.config.write_timeout))
                .map_err(|e| e.to_string())?;
            self.connection = Some(connection);
        }
        let connection = self.connection.as_mut().expect("connected above");
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

/// A redis storage: the sender of its thread's queue.
#[derive(Debug)]
pub struct RedisStorage {
    jobs: std::sync::mpsc::Sender<Job>,
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
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let mut link = Link {
            client,
            config,
            connection: None,
        };
        std::thread::Builder::new()
            .name(format!("rr-kv-{name}"))
            .spawn(move || {
                for job in queue {
                    job(&mut link);
                }
            })
            .map_err(|error| format!("cannot start its thread: {error}"))?;
        Ok(Self { jobs })
    }

    /// Runs `call` on the storage's thread and waits for its answer.
    async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&mut Link) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |link| {
            let _ = answer.send(call(link));
        });
        self.jobs
            .send(job)
            .map_err(|_| "the redis storage has stopped".to_owned())?;
        answered
            .await
            .unwrap_or_else(|_| Err("the redis storage has stopped".into()))
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

    /// `SET`s each item, with `PX` for a future expiry.
    pub async fn set(&self, items: Vec<(Item, Timeout)>) -> Result<(), String> {
        self.run(move |link| {
            for (item, timeout) in items {
                let mut command = redis::cmd("SET");
                command.arg(&item.key).arg(&item.value);
                if let Timeout::At(at) = timeout {
                    let left_ms = (at - super::memory::now()).div_euclid(1_000_000);
                    if left_ms > 0 {
                        command
                            .arg("PX")
                            .arg(i64::try_from(left_ms).unwrap_or(i64::MAX));
                    }
                }
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
