//! The `server` plugin (spec pool-server §9): the worker command, environment, user and
//! relay every pool starts its workers with, and `on_init`, run once before any pool starts.
//! Plugins that run workers (http, and later jobs, tcp) build their pools through it.

mod pool_section;

pub use pool_section::{user_credentials, PoolSection};

use super::{Plugin, SectionContext, Service, StartContext};
use crate::config::values::{ConfigError, Reader};
use crate::pool::Pool;
use crate::worker::on_init::OnInit;
use crate::worker::process::WorkerCommand;
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "server",
    configure,
};

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("server") {
        return Ok(None);
    }
    let mut section = ServerSection::read(ctx.reader, &ctx.env)?;
    if ctx.reader.has("server.relay_timeout") {
        ctx.warnings.push(
            "server.relay_timeout is ignored: RoadRunner removed it in 2024.1; \
             the pool's allocate_timeout bounds a worker's start"
                .into(),
        );
    }
    prepend_inherited(&mut section.env, ctx.inherited_env);
    if let Some(on_init) = section.on_init.as_mut() {
        prepend_inherited(&mut on_init.command.env, ctx.inherited_env);
    }
    // rr's server plugin tells workers where RPC listens (RR_RPC) when `rpc.listen` is set.
    let rpc_listen = ctx.reader.string("rpc.listen")?.filter(|l| !l.is_empty());
    Ok(Some(Box::new(ServerPlugin {
        section,
        rpc_listen,
    })))
}

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
pub(crate) fn read_command(reader: &Reader<'_>, path: &str) -> Result<Vec<String>, ConfigError> {
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
        .map(|(key, value)| (key.to_uppercase(), crate::config::expand(&value, env)))
        .collect())
}

impl ServerSection {
    /// Reads `server`.
    ///
    /// # Errors
    /// A value of the wrong type or form.
    pub fn read(
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
            let credentials = read_on_init_credentials(reader)?;
            Some(OnInit {
                command: WorkerCommand {
                    argv: command,
                    env: read_env(reader, "server.on_init.env", env)?
                        .into_iter()
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect(),
                    credentials,
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
        // rr accepts `group` and ignores it: the gid is the user's primary group.
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

/// uid and gid for `server.on_init.user` (spec pool-server §9.3: as `server.user`), checked at
/// start as the pools' user is: an unknown user or a missing privilege is a start-up error.
fn read_on_init_credentials(reader: &Reader<'_>) -> Result<Option<(u32, u32)>, ConfigError> {
    let Some(user) = reader
        .string("server.on_init.user")?
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    pool_section::user_credentials(&user, &passwd)
        .map(Some)
        .map_err(|message| ConfigError {
            path: "server.on_init.user".into(),
            line: reader.node("server.on_init.user").map_or(0, |n| n.line),
            message: message.replace("server.user: ", ""),
        })
}

/// Puts the `vars` (a dotenv file's) that `own` does not set in front of it: later entries
/// win, so `server.env` and `on_init.env` win over them as over the environment.
fn prepend_inherited<T: From<String> + PartialEq<str>>(
    own: &mut Vec<(T, T)>,
    vars: &[(String, String)],
) {
    let mut merged: Vec<(T, T)> = vars
        .iter()
        .filter(|(key, _)| !own.iter().any(|(known, _)| known == key.as_str()))
        .map(|(key, value)| (key.clone().into(), value.clone().into()))
        .collect();
    merged.append(own);
    *own = merged;
}

/// The `server` plugin, configured and (once started) running: it holds no process of its
/// own; it makes the pools of the plugins that run workers.
#[derive(Debug, Clone)]
pub struct ServerPlugin {
    /// The section as read (dotenv variables merged into its `env`).
    pub section: ServerSection,
    /// `rpc.listen`, exported to workers as `RR_RPC`.
    pub rpc_listen: Option<String>,
}

impl ServerPlugin {
    /// Starts the pool of plugin `name` (whose section is `pool`) and waits until every
    /// worker is ready, then runs `start` with it; the pool is destroyed again when `start`
    /// fails. The `server` plugin must have started before. Call it off the shards: it blocks
    /// on shard 0.
    ///
    /// # Errors
    /// No `server` section, the pool config's error or the first worker's boot failure
    /// (prefixed as rr prefixes them: `http_plugin_serve: …`), or `start`'s.
    pub fn run_with_pool<T>(
        name: &str,
        pool: &PoolSection,
        ctx: &StartContext<'_>,
        start: impl FnOnce(Pool) -> Result<T, String>,
    ) -> Result<T, String> {
        let server = ctx
            .get::<Self>()
            .ok_or_else(|| format!("{name} plugin needs the server section (server.command)"))?;
        let config = pool
            .pool_config(name, &server.section, server.rpc_listen.as_deref())
            .map_err(|error| format!("{name}_plugin_serve: {error}"))?;
        let shards = Arc::clone(ctx.shards);
        let pool = ctx
            .shards
            .block_on(0, move |_| Pool::start(config, shards))
            .map_err(|error| format!("{name}_plugin_serve: {error}"))?;
        start(pool.clone()).inspect_err(|_| {
            ctx.shards
                .block_on(0, move |_| async move { pool.destroy().await });
        })
    }
}

impl Plugin for ServerPlugin {
    fn name(&self) -> &'static str {
        "server"
    }

    fn start(self: Box<Self>, _ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        if let Some(on_init) = &self.section.on_init {
            crate::worker::on_init::run(on_init).map_err(|e| e.to_string())?;
        }
        Ok(Arc::new(*self))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Service for ServerPlugin {
    fn name(&self) -> &'static str {
        "server"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
