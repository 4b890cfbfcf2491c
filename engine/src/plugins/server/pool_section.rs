//! A plugin's `pool` section (spec pool-server §2) and the engine's pool config made from it
//! and the `server` section.

use super::{read_command, ServerSection};
use crate::config::values::{ConfigError, Reader};
use crate::pool::{DynamicAllocator, PoolConfig, SupervisorConfig};
use crate::worker::process::WorkerCommand;
use std::time::Duration;

/// A plugin's `pool` section (spec pool-server §2), as read.
#[derive(Debug, Clone)]
pub struct PoolSection {
    /// Overrides `server.command` when not empty.
    pub command: Vec<String>,
    /// 0 = number of CPUs.
    pub num_workers: u64,
    /// 0 = unlimited.
    pub max_jobs: u64,
    /// 0 = unlimited.
    pub max_queue_size: u64,
    /// Zero = 60 s.
    pub allocate_timeout: Duration,
    /// Zero = 60 s.
    pub reset_timeout: Duration,
    /// Zero = 60 s.
    pub stream_timeout: Duration,
    /// Zero = 60 s.
    pub destroy_timeout: Duration,
    /// A fresh worker per request.
    pub debug: bool,
    /// Present when the section exists.
    pub supervisor: Option<SupervisorConfig>,
    /// `dynamic_allocator`, present when the section exists.
    pub dynamic: Option<DynamicAllocator>,
    /// Variables the owning plugin adds to the workers' environment (`grpc.env`), after
    /// `server.env`.
    pub extra_env: Vec<(String, String)>,
}

impl Default for PoolSection {
    /// rr's defaults, as an absent section reads.
    fn default() -> Self {
        Self {
            command: Vec::new(),
            num_workers: 0,
            max_jobs: 0,
            max_queue_size: 0,
            allocate_timeout: or_60s(None),
            reset_timeout: or_60s(None),
            stream_timeout: or_60s(None),
            destroy_timeout: or_60s(None),
            debug: false,
            supervisor: None,
            dynamic: None,
            extra_env: Vec::new(),
        }
    }
}

fn or_60s(duration: Option<Duration>) -> Duration {
    duration
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(60))
}

impl PoolSection {
    /// Reads `<prefix>.pool`.
    ///
    /// # Errors
    /// A value of the wrong type.
    pub fn read(
        reader: &Reader<'_>,
        prefix: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let key = |name: &str| format!("{prefix}.{name}");
        let num_workers = reader.unsigned(&key("num_workers"))?.unwrap_or(0);
        if num_workers > crate::pool::MAX_WORKERS as u64 {
            return Err(ConfigError {
                path: key("num_workers"),
                line: reader.node(&key("num_workers")).map_or(0, |n| n.line),
                message: "number of workers can't be more than 500".into(),
            });
        }
        let supervisor = if reader.has(&key("supervisor")) {
            let defaults = SupervisorConfig::default();
            Some(SupervisorConfig {
                watch_tick: reader
                    .duration(&key("supervisor.watch_tick"))?
                    .filter(|d| !d.is_zero())
                    .unwrap_or(defaults.watch_tick),
                ttl: reader.duration(&key("supervisor.ttl"))?.unwrap_or_default(),
                idle_ttl: reader
                    .duration(&key("supervisor.idle_ttl"))?
                    .unwrap_or_default(),
                max_worker_memory_mib: reader
                    .unsigned(&key("supervisor.max_worker_memory"))?
                    .unwrap_or(0),
                exec_ttl: reader
                    .duration(&key("supervisor.exec_ttl"))?
                    .unwrap_or_default(),
            })
        } else {
            None
        };
        let debug = reader.bool(&key("debug"))?.unwrap_or(false);
        if debug && reader.has(&key("dynamic_allocator")) {
            warnings.push(format!(
                "{} is ignored in debug mode (a worker per request)",
                key("dynamic_allocator")
            ));
        }
        let dynamic = if reader.has(&key("dynamic_allocator")) {
            let defaults = DynamicAllocator::default();
            let count = |name: &str, default: usize| -> Result<usize, ConfigError> {
                Ok(reader
                    .unsigned(&key(&format!("dynamic_allocator.{name}")))?
                    .map_or(default, |n| usize::try_from(n).unwrap_or(usize::MAX)))
            };
            Some(
                DynamicAllocator {
                    max_workers: count("max_workers", defaults.max_workers)?,
                    spawn_rate: count("spawn_rate", defaults.spawn_rate)?,
                    idle_timeout: reader
                        .duration(&key("dynamic_allocator.idle_timeout"))?
                        .unwrap_or(defaults.idle_timeout),
                }
                .clamped(),
            )
        } else {
            None
        };
        Ok(Self {
            command: read_command(reader, &key("command"))?,
            num_workers,
            max_jobs: reader.unsigned(&key("max_jobs"))?.unwrap_or(0),
            max_queue_size: reader.unsigned(&key("max_queue_size"))?.unwrap_or(0),
            allocate_timeout: or_60s(reader.duration(&key("allocate_timeout"))?),
            reset_timeout: or_60s(reader.duration(&key("reset_timeout"))?),
            stream_timeout: or_60s(reader.duration(&key("stream_timeout"))?),
            destroy_timeout: or_60s(reader.duration(&key("destroy_timeout"))?),
            debug,
            supervisor,
            dynamic,
            extra_env: Vec::new(),
        })
    }

    /// The engine's pool config for plugin `name` (`RR_MODE`), from this section and
    /// `server`.
    ///
    /// # Errors
    /// `command should not be empty` when neither gives a command.
    pub fn pool_config(
        &self,
        name: &str,
        server: &ServerSection,
        rpc_listen: Option<&str>,
    ) -> Result<PoolConfig, String> {
        let argv = if self.command.is_empty() {
            server.command.clone()
        } else {
            self.command.clone()
        };
        if argv.is_empty() {
            return Err("command should not be empty".into());
        }
        let credentials = match &server.user {
            Some(user) => Some(user_credentials(
                user,
                &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
            )?),
            None => None,
        };
        let command = WorkerCommand {
            argv,
            env: server
                .env
                .iter()
                .chain(&self.extra_env)
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            credentials,
            ..WorkerCommand::default()
        };
        let mut config = PoolConfig::new(name, command);
        if self.num_workers > 0 {
            config.num_workers = self.num_workers as usize;
        }
        config.max_jobs = self.max_jobs;
        config.max_queue_size = usize::try_from(self.max_queue_size).unwrap_or(usize::MAX);
        config.allocate_timeout = self.allocate_timeout;
        config.reset_timeout = self.reset_timeout;
        config.stream_timeout = self.stream_timeout;
        config.destroy_timeout = self.destroy_timeout;
        config.debug = self.debug;
        config.supervisor.clone_from(&self.supervisor);
        config.dynamic = self.dynamic;
        config.mode = Some(name.to_owned());
        config.rpc_listen = rpc_listen.map(str::to_owned);
        config.relay = crate::worker::socket_relay::RelayAddress::parse(&server.relay)?;
        config.relay_dsn = if server.relay.is_empty() {
            "pipes".into()
        } else {
            server.relay.clone()
        };
        Ok(config)
    }
}

/// uid and primary gid of `user` from `passwd` text (spec pool-server §9.1). Switching to
/// another user needs root; asking for it without root is a clear error, not a spawn failure
/// per worker.
///
/// # Errors
/// Unknown user, no user namespaces, or not root.
pub fn user_credentials(user: &str, passwd: &str) -> Result<(u32, u32), String> {
    if !std::path::Path::new("/proc/self/ns/user").exists() {
        return Err("kernel doesn't support user namespaces".into());
    }
    let entry = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() >= 4 && fields[0] == user)
        .ok_or_else(|| format!("server.user: user: unknown user {user}"))?;
    let (uid, gid) = match (entry[2].parse(), entry[3].parse()) {
        (Ok(uid), Ok(gid)) => (uid, gid),
        _ => return Err(format!("server.user: malformed passwd entry for {user}")),
    };
    let current = rustix::process::geteuid().as_raw();
    if current != 0 && current != uid {
        return Err(format!(
            "server.user: running workers as {user} (uid {uid}) needs root; rr runs as uid {current}"
        ));
    }
    Ok((uid, gid))
}
