//! The `grpc` plugin (spec grpc): a gRPC server over HTTP/2 on the shards (the `h2` crate
//! polled over the connection's own socket, as the http plugin's HTTP/2), whose unary calls
//! go to the `grpc` pool (`RR_MODE=grpc`) with rr's JSON context and the raw message; the
//! worker's headers, trailers and `GRPCException` statuses come back as rr sends them.
//! `grpc.health.v1.Health` is served here (NOT_SERVING while resetting or stopping), and
//! server reflection (v1 and v1alpha) from the loaded protos.

mod call;
mod client_message;
mod config;
mod health;
mod metadata;
mod proto;
mod reflection;
mod reply;
mod serve;

pub use config::{GrpcListen, GrpcSection};
// The centrifuge plugin's proxy server shares the listeners and the answers.
pub(crate) use call::{send_ok, send_status, CallStatus, UnaryReply};
pub(crate) use client_message::{framed_message, FrameError};
pub(crate) use metadata::{put_metadata_map, Source as MetadataSource};
pub use proto::{parse_source as parse_proto_source, Services};

use super::metrics::pool::PoolHelp;
use super::otel::IdSource;
use super::server::ServerPlugin;
use super::stream::{self, Listener};
use super::{listener, Lifecycle, LocalFuture, Plugin, SectionContext, Service, StartContext};
use crate::config::ConfigError;
use crate::pool::Pool;
use crate::runtime::ShardContext;
use std::any::Any;
use std::rc::Rc;
use std::sync::Arc;

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "grpc",
    configure,
};

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("grpc") {
        return Ok(None);
    }
    Ok(Some(Box::new(GrpcSection::read(ctx.reader, ctx.warnings)?)))
}

/// The grpc pool's gauges, worded as rr words them.
const GRPC_POOL_HELP: PoolHelp = PoolHelp {
    prefix: "rr_grpc",
    total: "Total number of workers used by the GRPC plugin",
    memory: "Memory usage by GRPC workers.",
    ready: "GRPC workers currently in ready state",
    working: "GRPC workers currently in working state",
    invalid: "GRPC workers currently in invalid,killing,destroyed,errored,inactive states",
};

/// What every connection and call of the plugin shares.
#[derive(Debug)]
pub struct GrpcShared {
    /// The `grpc` section.
    pub config: GrpcSection,
    /// The `grpc` pool.
    pub pool: Pool,
    /// The services of the loaded protos.
    pub services: Services,
    /// The health service's state.
    pub health: health::Health,
    /// Shutdown state.
    pub lifecycle: Arc<Lifecycle>,
    /// TLS, when `grpc.tls` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The span ids of the trace context injected into each call's context.
    pub ids: IdSource,
}

/// The running plugin.
#[derive(Debug)]
pub struct GrpcPlugin {
    shared: Arc<GrpcShared>,
}

impl Plugin for GrpcSection {
    fn name(&self) -> &'static str {
        "grpc"
    }

    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        let fail = |error: String| format!("grpc_plugin_init:\n\tgrpc_plugin_config: {error}");
        if let Some(name) = self.interceptors.first() {
            // rr's text (it checks when it creates the server): ringrunner registers no
            // interceptor plugin, and a named one (say, an auth check) must not be skipped.
            return Err(format!(
                "grpc_plugin_serve:\n\tgrpc_plugin_create_server: interceptor {name} is not registered"
            ));
        }
        let services = proto::load(&self.proto).map_err(fail)?;
        let tls = match &self.tls {
            Some(ssl) => Some(ssl.server_config().map_err(fail)?),
            None => None,
        };
        let bound = bind(&self.listen, ctx.shards.count())?;
        let mut section = self.pool.clone();
        section.extra_env.extend(self.env.iter().cloned());
        ServerPlugin::run_with_pool("grpc", &section, ctx, |pool| {
            let shared = Arc::new(GrpcShared {
                config: *self,
                pool,
                services,
                health: health::Health::default(),
                lifecycle: Arc::clone(ctx.lifecycle),
                tls,
                ids: IdSource::new(ctx.shards.count()),
            });
            tracing::info!(target: "grpc", address = %shared.config.listen_text,
                "grpc server was started");
            bound.spawn_accepts(&shared, ctx, accept);
            Ok(Arc::new(GrpcPlugin { shared }) as Arc<dyn Service>)
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The listening sockets: one per shard for TCP, one unix socket.
pub(crate) enum Bound {
    Tcp(Vec<std::net::TcpListener>),
    Unix(Listener),
}

pub(crate) fn bind(listen: &GrpcListen, shards: usize) -> Result<Bound, String> {
    Ok(match listen {
        GrpcListen::Tcp(host_port) => {
            let address = listener::resolve(host_port)
                .map_err(|error| format!("grpc: address {host_port}: {error}"))?;
            let sockets = listener::bind_reuseport(address, shards, listener::Sharing::Exclusive)
                .map_err(|error| {
                format!(
                    "listen tcp {address}: {}",
                    listener::bind_error_text(&error)
                )
            })?;
            Bound::Tcp(sockets)
        }
        GrpcListen::Unix(path) => Bound::Unix(Listener::bind_unix(path)?),
    })
}

impl Bound {
    /// Runs `accept` on each listener, one a shard (the unix socket on the first): the
    /// front ends on gRPC (grpc, centrifuge's proxy) share this start.
    pub(crate) fn spawn_accepts<S, Fut>(
        self,
        shared: &Arc<S>,
        ctx: &StartContext<'_>,
        accept: fn(Listener, Arc<S>, Rc<ShardContext>) -> Fut,
    ) where
        S: Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let listeners: Vec<Listener> = match self {
            Bound::Tcp(sockets) => sockets.into_iter().map(Listener::Tcp).collect(),
            Bound::Unix(listener) => vec![listener],
        };
        for (shard, listener) in listeners.into_iter().enumerate() {
            let shared = Arc::clone(shared);
            ctx.shards
                .spawn_on(shard, move |context| accept(listener, shared, context));
        }
    }
}

async fn accept(listener: Listener, shared: Arc<GrpcShared>, shard: Rc<ShardContext>) {
    let lifecycle = Arc::clone(&shared.lifecycle);
    stream::accept_loop(
        listener,
        shard.backend(),
        lifecycle,
        "grpc",
        |stream, peer| {
            let _ = stream.set_nodelay(true);
            let stream = match &shared.tls {
                None => stream,
                Some(config) => match stream.into_tls(Arc::clone(config)) {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::error!(target: "grpc", %error, "tls session");
                        return;
                    }
                },
            };
            tokio::task::spawn_local(serve::serve(
                stream,
                peer,
                Arc::clone(&shared),
                Rc::clone(&shard),
            ));
        },
    )
    .await;
}

impl Service for GrpcPlugin {
    fn name(&self) -> &'static str {
        "grpc"
    }

    fn pool(&self) -> Option<&Pool> {
        Some(&self.shared.pool)
    }

    /// rr's reset: health says NOT_SERVING while the workers are replaced.
    fn reset(&self) -> Option<LocalFuture<'_, ()>> {
        Some(Box::pin(async move {
            self.shared.health.set_serving(false);
            self.shared.pool.reset().await;
            self.shared.health.set_serving(true);
        }))
    }

    fn collect(&self, families: &mut Vec<super::metrics::exposition::Family>) {
        super::metrics::pool::collect_pool(&GRPC_POOL_HELP, &self.shared.pool, families);
    }

    fn stop(self: Arc<Self>) -> LocalFuture<'static, ()> {
        Box::pin(async move {
            self.shared.health.set_serving(false);
            self.shared.pool.destroy().await;
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
