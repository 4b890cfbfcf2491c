//! The sections ringrunner implements, read with rr's defaults.

use super::values::{ConfigError, Reader};
use crate::pool::{DynamicAllocator, PoolConfig, SupervisorConfig};
use crate::worker::on_init::OnInit;
use crate::worker::process::WorkerCommand;
use ringrunner_protocol::http::ContextCodec;
use std::path::PathBuf;
use std::time::Duration;

/// `server` (spec pool-server §9).
#[derive(Debug, Clone, Default)]
pub struct ServerSection {
    /// argv of `server.command`.
    pub command: Vec<String>,
    /// `server.env`, keys upper-cased, values `$VAR`-expanded.
    pub env: Vec<(String, String)>,
    /// `server.user`.
    pub user: Option<String>,
    /// `server.relay`: `pipes`, `tcp://host:port` or `unix://path`.
    pub relay: String,
    /// `server.on_init`.
    pub on_init: Option<OnInit>,
}

/// `command` as a string (split on spaces, commas make a list as rr's loader does) or a list.
fn read_command(reader: &Reader<'_>, path: &str) -> Result<Vec<String>, ConfigError> {
    let Some(parts) = reader.strings(path)? else {
        return Ok(Vec::new());
    };
    Ok(match parts.as_slice() {
        [single] => WorkerCommand::from_command_line(single).argv,
        _ => parts,
    })
}

fn read_env(
    reader: &Reader<'_>,
    path: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    Ok(reader
        .string_map(path)?
        .into_iter()
        .map(|(key, value)| (key.to_uppercase(), super::expand(&value, env)))
        .collect())
}

impl ServerSection {
    pub(super) fn read(
        reader: &Reader<'_>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let relay = reader
            .string("server.relay")?
            .unwrap_or_else(|| "pipes".into());
        if let Err(message) = crate::worker::socket_relay::RelayAddress::parse(&relay) {
            return Err(ConfigError {
                path: "server.relay".into(),
                line: reader.node("server.relay").map_or(0, |n| n.line),
                message,
            });
        }
        let on_init = if reader.has("server.on_init") {
            let command = read_command(reader, "server.on_init.command")?;
            let _ = reader.has("server.on_init.user");
            Some(OnInit {
                command: WorkerCommand {
                    argv: command,
                    env: read_env(reader, "server.on_init.env", env)?
                        .into_iter()
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect(),
                    ..WorkerCommand::default()
                },
                exec_timeout: reader
                    .duration("server.on_init.exec_timeout")?
                    .filter(|d| !d.is_zero())
                    .unwrap_or(Duration::from_secs(60)),
                exit_on_error: reader
                    .bool("server.on_init.exit_on_error")?
                    .unwrap_or(false),
            })
        } else {
            None
        };
        let _ = reader.has("server.relay_timeout");
        let _ = reader.has("server.group");
        Ok(Self {
            command: read_command(reader, "server.command")?,
            env: read_env(reader, "server.env", env)?,
            user: reader.string("server.user")?.filter(|u| !u.is_empty()),
            relay,
            on_init,
        })
    }
}

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

/// `http.uploads`.
#[derive(Debug, Clone, Default)]
pub struct Uploads {
    /// Where uploaded files go (default: the temp dir).
    pub dir: PathBuf,
    /// Extensions refused (`.php`).
    pub forbid: Vec<String>,
    /// When not empty, the only extensions accepted.
    pub allow: Vec<String>,
}

/// `http` (spec http §5).
#[derive(Debug, Clone)]
pub struct HttpSection {
    /// `host:port`.
    pub address: String,
    /// Body cap in bytes (`max_request_size` MiB; 0 → 1000 MiB).
    pub max_request_size: u64,
    /// Forms sent raw.
    pub raw_body: bool,
    /// Access log records.
    pub access_logs: bool,
    /// Status for worker errors (0 → 500).
    pub internal_error_code: u16,
    /// `uploads`.
    pub uploads: Uploads,
    /// `trusted_subnets` (CIDRs).
    pub trusted_subnets: Vec<String>,
    /// `middleware` names.
    pub middleware: Vec<String>,
    /// `context_codec` (ours): the request context's shape, `json` (default) or `protobuf`.
    /// rr's `json_context: true|false` is read too when `context_codec` is absent.
    pub context_codec: ContextCodec,
    /// ringrunner's bound on reading a request head, and on an idle keep-alive connection
    /// (rr: 5 min, fixed). Default 60 s. Also the longest wait for each read of a body.
    pub read_header_timeout: Duration,
    /// ringrunner's bound on each write to a client (nginx's `send_timeout`: the time between
    /// two successive writes, not the whole response). Default 60 s.
    pub write_timeout: Duration,
    /// ringrunner's minimum body rate in bytes per second: a body may take
    /// `read_header_timeout` plus one second per `body_min_rate` bytes received, in all
    /// (Apache's `mod_reqtimeout` rule). Default 1024; 0 turns the overall bound off.
    pub body_min_rate: u64,
    /// ringrunner's switch to join another process's listeners on `address` (SO_REUSEPORT,
    /// for a zero-downtime hand-over); by default an address in use is refused.
    pub reuse_port: bool,
    /// `http.pool`.
    pub pool: PoolSection,
}

/// Middleware ringrunner runs; others are skipped with a warning, as rr skips unknown names.
pub const SUPPORTED_MIDDLEWARE: [&str; 1] = ["proxy_ip_parser"];

impl HttpSection {
    pub(super) fn read(
        reader: &Reader<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let address = reader.string("http.address")?.unwrap_or_default();
        if address.is_empty() || !address.contains(':') {
            return Err(ConfigError {
                path: "http.address".into(),
                line: reader.node("http.address").map_or(0, |n| n.line),
                message: if address.is_empty() {
                    "http.address is required (ssl, fcgi and http3 listeners are not supported)"
                        .into()
                } else {
                    format!("malformed http server address: {address}")
                },
            });
        }
        let max_request_size = match reader.unsigned("http.max_request_size")?.unwrap_or(0) {
            0 => 1000,
            mib => mib,
        };
        let internal_error_code = reader.unsigned("http.internal_error_code")?.unwrap_or(0);
        let internal_error_code = match u16::try_from(internal_error_code) {
            Ok(0) => 500,
            Ok(code) if (100..600).contains(&code) => code,
            _ => {
                return Err(ConfigError {
                    path: "http.internal_error_code".into(),
                    line: reader
                        .node("http.internal_error_code")
                        .map_or(0, |n| n.line),
                    message: format!("not an HTTP status code: {internal_error_code}"),
                })
            }
        };
        let middleware = reader.strings("http.middleware")?.unwrap_or_default();
        for name in &middleware {
            if !SUPPORTED_MIDDLEWARE.contains(&name.as_str()) {
                warnings.push(format!(
                    "http.middleware: {name} is not supported by ringrunner yet, skipped"
                ));
            }
        }
        for option in ["ssl", "fcgi", "http2", "http3", "headers", "static", "gzip"] {
            let path = format!("http.{option}");
            if reader.has(&path) {
                warnings.push(format!(
                    "{path} is not supported by ringrunner yet, ignored"
                ));
            }
        }
        let uploads = Uploads {
            dir: reader
                .string("http.uploads.dir")?
                .filter(|d| !d.is_empty())
                .map_or_else(std::env::temp_dir, PathBuf::from),
            forbid: reader.strings("http.uploads.forbid")?.unwrap_or_default(),
            allow: reader.strings("http.uploads.allow")?.unwrap_or_default(),
        };
        Ok(Self {
            address,
            max_request_size: max_request_size.saturating_mul(1 << 20),
            raw_body: reader.bool("http.raw_body")?.unwrap_or(false),
            access_logs: reader.bool("http.access_logs")?.unwrap_or(false),
            internal_error_code,
            uploads,
            trusted_subnets: reader.strings("http.trusted_subnets")?.unwrap_or_default(),
            middleware,
            context_codec: read_context_codec(reader)?,
            read_header_timeout: reader
                .duration("http.read_header_timeout")?
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(60)),
            write_timeout: reader
                .duration("http.write_timeout")?
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(60)),
            body_min_rate: reader.unsigned("http.body_min_rate")?.unwrap_or(1024),
            reuse_port: reader.bool("http.reuse_port")?.unwrap_or(false),
            pool: PoolSection::read(reader, "http.pool", warnings)?,
        })
    }
}

/// `http.context_codec` (`json` | `protobuf`), else the legacy `http.json_context` bool,
/// else JSON: the shape PHP decodes fastest, and that every PHP package version reads.
fn read_context_codec(reader: &Reader<'_>) -> Result<ContextCodec, ConfigError> {
    let legacy = reader.bool("http.json_context")?.map(|json| {
        if json {
            ContextCodec::Json
        } else {
            ContextCodec::Proto
        }
    });
    let Some(name) = reader.string("http.context_codec")? else {
        return Ok(legacy.unwrap_or(ContextCodec::Json));
    };
    let error = |message: String| ConfigError {
        path: "http.context_codec".into(),
        line: reader.node("http.context_codec").map_or(0, |n| n.line),
        message,
    };
    let codec = match name.to_ascii_lowercase().as_str() {
        "json" => ContextCodec::Json,
        "protobuf" | "proto" => ContextCodec::Proto,
        other => return Err(error(format!("expected json or protobuf, got {other:?}"))),
    };
    if legacy.is_some_and(|legacy| legacy != codec) {
        return Err(error(format!(
            "{name} contradicts http.json_context; keep one of the two keys"
        )));
    }
    Ok(codec)
}

/// `status` (spec http §7).
#[derive(Debug, Clone)]
pub struct StatusSection {
    /// `host:port`.
    pub address: String,
    /// 503 by default.
    pub unavailable_status_code: u16,
    /// Read timeout of the listener (60 s).
    pub check_timeout: Duration,
}

impl StatusSection {
    pub(super) fn read(reader: &Reader<'_>) -> Result<Self, ConfigError> {
        let address = reader.string("status.address")?.unwrap_or_default();
        if !address.contains(':') {
            return Err(ConfigError {
                path: "status.address".into(),
                line: reader.node("status.address").map_or(0, |n| n.line),
                message: "status plugin address is required (host:port)".into(),
            });
        }
        let code = reader
            .unsigned("status.unavailable_status_code")?
            .and_then(|code| u16::try_from(code).ok())
            .filter(|code| (100..600).contains(code))
            .unwrap_or(503);
        let seconds = reader
            .unsigned("status.check_timeout")?
            .filter(|s| *s > 0)
            .unwrap_or(60);
        Ok(Self {
            address,
            unavailable_status_code: code,
            check_timeout: Duration::from_secs(seconds),
        })
    }
}
