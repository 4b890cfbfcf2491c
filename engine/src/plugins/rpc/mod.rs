//! The `rpc` plugin (spec config-cli-rpc §3, relay-protocol §6): goridge RPC on `rpc.listen`
//! (`tcp://host:port` or `unix://path`) for `rr workers`, `rr reset` and PHP apps. Accepting
//! and the connections run on shard 0; the control plane is not the hot path.

mod conn;
pub mod services;

pub use services::{Reply, RpcService};

use super::stream::{self, Listener};
use super::{Directory, Lifecycle, Plugin, SectionContext, Service, StartContext};
use crate::config::ConfigError;
use services::{Informer, Resetter, RpcInfo};
use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// rr's default when the section has no `listen`.
pub const DEFAULT_LISTEN: &str = "tcp://127.0.0.1:6001";

/// `rpc.write_timeout` when the section has none (or 0): the http and tcp plugins' default.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "rpc",
    configure,
};

/// Where RPC listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcAddress {
    /// `tcp://host:port`.
    Tcp(String),
    /// `unix://path`.
    Unix(PathBuf),
}

impl RpcAddress {
    /// Parses rr's DSN.
    ///
    /// # Errors
    /// rr's text for anything but `tcp://…` and `unix://…`.
    pub fn parse(dsn: &str) -> Result<Self, String> {
        let invalid = || "invalid socket DSN (tcp://:6001, unix://file.sock)".to_owned();
        let (scheme, address) = dsn.split_once("://").ok_or_else(invalid)?;
        if address.is_empty() {
            return Err(invalid());
        }
        match scheme {
            "tcp" => Ok(Self::Tcp(address.to_owned())),
            "unix" => Ok(Self::Unix(PathBuf::from(address))),
            _ => Err(invalid()),
        }
    }
}

/// The `rpc` section.
#[derive(Debug, Clone)]
pub struct RpcSection {
    /// `rpc.listen`.
    pub listen: RpcAddress,
    /// The effective config as JSON, for `rpc.Config`.
    pub config_json: Vec<u8>,
    /// Ours (`rpc.write_timeout`, default 60 s; rr has no bound): each write of a reply must
    /// complete within this, else the client has stopped reading and is closed, so it
    /// cannot pin its task and its reply (up to `MAX_RPC_PAYLOAD`) for ever.
    pub write_timeout: Duration,
}

impl RpcSection {
    /// Reads `rpc.listen` (rr's default when empty).
    ///
    /// # Errors
    /// A DSN that is not `tcp://` or `unix://`.
    pub fn read(reader: &crate::config::values::Reader<'_>) -> Result<Self, ConfigError> {
        let listen = reader
            .string("rpc.listen")?
            .filter(|listen| !listen.is_empty())
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = RpcAddress::parse(&listen).map_err(|message| ConfigError {
            path: "rpc.listen".into(),
            line: reader.node("rpc.listen").map_or(0, |n| n.line),
            message,
        })?;
        let write_timeout = reader
            .duration("rpc.write_timeout")?
            .filter(|timeout| !timeout.is_zero())
            .unwrap_or(DEFAULT_WRITE_TIMEOUT);
        Ok(Self {
            listen,
            config_json: Vec::new(),
            write_timeout,
        })
    }
}

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("rpc") {
        return Ok(None);
    }
    let mut section = RpcSection::read(ctx.reader)?;
    section.config_json = ctx.reader.root().to_json().to_string().into_bytes();
    Ok(Some(Box::new(section)))
}

/// What the connections share.
pub(crate) struct RpcShared {
    services: Vec<Box<dyn RpcService>>,
    directory: Arc<Directory>,
    lifecycle: Arc<Lifecycle>,
    /// `rpc.write_timeout`.
    write_timeout: Duration,
}

impl std::fmt::Debug for RpcShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcShared").finish_non_exhaustive()
    }
}

impl RpcShared {
    /// The service called `name`: a built-in one, else one a plugin exposes.
    fn find(&self, name: &str) -> Option<&dyn RpcService> {
        self.services
            .iter()
            .map(|service| &**service)
            .find(|service| service.service() == name)
            .or_else(|| {
                self.directory
                    .services()
                    .iter()
                    .flat_map(|plugin| plugin.rpc_services())
                    .find(|service| service.service() == name)
            })
    }
}

/// The running plugin (its listener and connections are tasks on shard 0).
#[derive(Debug)]
pub struct RpcPlugin;

impl Plugin for RpcSection {
    fn name(&self) -> &'static str {
        "rpc"
    }

    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        let (listener, address) = match &self.listen {
            RpcAddress::Tcp(host_port) => {
                let (listener, bound) =
                    Listener::bind_tcp(host_port).map_err(|error| format!("rpc: {error}"))?;
                (listener, format!("tcp://{bound}"))
            }
            RpcAddress::Unix(path) => (
                Listener::bind_unix(path)?,
                format!("unix://{}", path.display()),
            ),
        };
        let directory = Arc::clone(ctx.directory);
        let shared = Arc::new(RpcShared {
            services: vec![
                Box::new(Informer {
                    directory: Arc::clone(&directory),
                }),
                Box::new(Resetter {
                    directory: Arc::clone(&directory),
                }),
                Box::new(RpcInfo {
                    config_json: self.config_json,
                }),
            ],
            directory,
            lifecycle: Arc::clone(ctx.lifecycle),
            write_timeout: self.write_timeout,
        });
        let lifecycle = Arc::clone(ctx.lifecycle);
        ctx.shards.spawn_on(0, move |shard| {
            stream::accept_loop(
                listener,
                shard.backend(),
                lifecycle,
                "rpc",
                move |stream, _| {
                    tokio::task::spawn_local(conn::serve(stream, Arc::clone(&shared)));
                },
            )
        });
        tracing::info!(target: "rpc", %address, "rpc server listening");
        Ok(Arc::new(RpcPlugin))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Service for RpcPlugin {
    fn name(&self) -> &'static str {
        "rpc"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_is_rr_s() {
        assert_eq!(
            RpcAddress::parse("tcp://127.0.0.1:6001"),
            Ok(RpcAddress::Tcp("127.0.0.1:6001".into()))
        );
        assert_eq!(
            RpcAddress::parse("unix://rr.sock"),
            Ok(RpcAddress::Unix("rr.sock".into()))
        );
        for bad in ["127.0.0.1:6001", "udp://x:1", "tcp://", ""] {
            assert_eq!(
                RpcAddress::parse(bad).unwrap_err(),
                "invalid socket DSN (tcp://:6001, unix://file.sock)"
            );
        }
    }
}
