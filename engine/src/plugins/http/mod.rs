//! The `http` plugin (spec http): HTTP/1.1 on every shard, requests relayed to the `http`
//! pool as rr sends them, replies written back as rr writes them.

mod answer;
mod chain;
mod config;
mod conn;
mod exchange;
/// The sans-IO HTTP/1 pieces the connections use (`ringrunner_protocol::http1`).
pub use ringrunner_protocol::http1 as head;
mod fcgi;
pub mod gzip;
pub mod headers;
#[cfg(test)]
mod hot_path_tests;
mod http2;
pub mod metrics;
pub mod request;
mod sendfile;
mod sink;
#[cfg(test)]
mod sink_trailer_tests;
pub mod static_files;
pub mod tls;
pub mod uploads;
mod worker_headers;
/// The response bytes (`ringrunner_protocol::http1::response`).
pub use ringrunner_protocol::http1::response as wire;

pub use config::{Http2Section, HttpSection, Layer, Uploads, SUPPORTED_MIDDLEWARE};

use super::server::ServerPlugin;
use super::stream::{self, Listener};
use super::{listener, Lifecycle, Plugin, SectionContext, Service, StartContext};
use crate::config::ConfigError;
use crate::pool::Pool;
use crate::runtime::{ShardContext, Shards};
use request::Subnet;
use std::any::Any;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use uploads::UploadPolicy;

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "http",
    configure,
};

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("http") {
        return Ok(None);
    }
    Ok(Some(Box::new(HttpSection::read(ctx.reader, ctx.warnings)?)))
}

impl Plugin for HttpSection {
    fn name(&self) -> &'static str {
        "http"
    }

    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        let section = self.pool.clone();
        ServerPlugin::run_with_pool("http", &section, ctx, |pool| {
            let otel = otel_tracer(&self.middleware, ctx);
            let lifecycle = Arc::clone(ctx.lifecycle);
            let plugin = HttpPlugin::start(*self, pool, ctx.shards, lifecycle, otel)?;
            Ok(Arc::new(plugin) as Arc<dyn Service>)
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The `otel` middleware's tracer, when `otel` is in the middleware and the plugin runs
/// (rr: "requested middleware does not exist" otherwise).
fn otel_tracer(middleware: &[String], ctx: &StartContext<'_>) -> Option<Arc<super::otel::Tracer>> {
    if !middleware.iter().any(|name| name == "otel") {
        return None;
    }
    let tracer = ctx
        .get::<super::otel::OtelPlugin>()
        .map(super::otel::OtelPlugin::tracer);
    if tracer.is_none() {
        tracing::warn!(target: "http", requested = "otel", "requested middleware does not exist (no otel section)");
    }
    tracer
}

impl Service for HttpPlugin {
    fn name(&self) -> &'static str {
        "http"
    }

    fn pool(&self) -> Option<&Pool> {
        Some(&self.shared.pool)
    }

    fn collect(&self, families: &mut Vec<crate::plugins::metrics::exposition::Family>) {
        crate::plugins::metrics::pool::collect_pool(
            &metrics::HTTP_POOL_HELP,
            &self.shared.pool,
            families,
        );
        if let Some(http_metrics) = &self.shared.metrics {
            http_metrics.collect(families);
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What every connection of the plugin shares.
#[derive(Debug)]
pub struct HttpShared {
    /// The `http` section.
    pub config: HttpSection,
    /// The `http` pool.
    pub pool: Pool,
    /// Parsed `trusted_subnets`, empty unless `proxy_ip_parser` is in the middleware.
    pub trusted: Vec<Subnet>,
    /// Head read timeout.
    pub read_header_timeout: Duration,
    /// Where multipart files go.
    pub uploads: UploadPolicy,
    /// Shutdown state.
    pub lifecycle: Arc<Lifecycle>,
    /// The `static` middleware, when configured.
    pub static_files: Option<static_files::StaticFiles>,
    /// The `http_metrics` middleware's counters, when it is listed.
    pub metrics: Option<metrics::HttpMetrics>,
    /// `ssl.redirect`: the TLS listener's port, which the plain listener redirects to.
    pub redirect_port: Option<u16>,
    /// The `otel` middleware's tracer, when it is listed and the `otel` plugin runs.
    pub otel: Option<Arc<super::otel::Tracer>>,
}

/// The running plugin.
#[derive(Debug)]
pub struct HttpPlugin {
    shared: Arc<HttpShared>,
    address: SocketAddr,
}

impl HttpPlugin {
    /// Binds `http.address` on every shard and starts accepting.
    ///
    /// # Errors
    /// Bad trusted subnets, an address that does not resolve or bind.
    pub fn start(
        config: HttpSection,
        pool: Pool,
        shards: &Shards,
        lifecycle: Arc<Lifecycle>,
        otel: Option<Arc<super::otel::Tracer>>,
    ) -> Result<Self, String> {
        let read_header_timeout = config.read_header_timeout;
        let trusted = if config.middleware.iter().any(|m| m == "proxy_ip_parser") {
            config
                .trusted_subnets
                .iter()
                .map(|subnet| Subnet::parse(subnet))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        let sharing = if config.reuse_port {
            listener::Sharing::Shared
        } else {
            listener::Sharing::Exclusive
        };
        let tls = match &config.ssl {
            Some(ssl) => {
                let server_config = ssl.server_config()?;
                let (sockets, address) = bind(&ssl.address, shards.count(), sharing)?;
                Some((sockets, address, server_config))
            }
            None => None,
        };
        let plain = if config.address.is_empty() {
            None
        } else {
            Some(bind(&config.address, shards.count(), sharing)?)
        };
        let fcgi = match &config.fcgi {
            Some(address) => Some(bind_fcgi(address)?),
            None => None,
        };
        let redirect_port = match (&config.ssl, &tls) {
            (Some(ssl), Some((_, address, _))) if ssl.redirect => Some(address.port()),
            _ => None,
        };
        let uploads = UploadPolicy::new(&config.uploads, pool.config().command.credentials);
        if !uploads.dir.is_dir() {
            tracing::warn!(target: "http", dir = %uploads.dir.display(),
                "uploads.dir is not a directory: uploaded files will report error 6");
        }
        let static_files = config.static_files.clone().map(|static_config| {
            static_files::warn_about_php_sources(&static_config);
            static_files::StaticFiles::new(static_config)
        });
        let metrics = config
            .middleware
            .iter()
            .any(|name| name == "http_metrics")
            .then(|| metrics::HttpMetrics::new(shards.count()));
        let shared = Arc::new(HttpShared {
            metrics,
            static_files,
            uploads,
            config,
            pool,
            trusted,
            read_header_timeout,
            lifecycle,
            redirect_port,
            otel,
        });
        let mut first = None;
        if let Some((sockets, address)) = plain {
            listen(sockets, None, &shared, shards);
            tracing::info!(target: "http", %address, "http server listening");
            first = Some(address);
        }
        if let Some((sockets, address, server_config)) = tls {
            listen(sockets, Some(server_config), &shared, shards);
            tracing::info!(target: "http", %address, "https server listening");
            first.get_or_insert(address);
        }
        if let Some((listener, address)) = fcgi {
            let shared = Arc::clone(&shared);
            shards.spawn_on(0, move |shard| async move {
                let lifecycle = Arc::clone(&shared.lifecycle);
                stream::accept_loop(listener, shard.backend(), lifecycle, "http", |stream, _| {
                    tokio::task::spawn_local(fcgi::serve(
                        stream,
                        Arc::clone(&shared),
                        Rc::clone(&shard),
                    ));
                })
                .await;
            });
            tracing::info!(target: "http", %address, "fcgi server listening");
        }
        let address = first.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        Ok(Self { shared, address })
    }

    /// The bound address (the real port when configured with port 0).
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The pool behind the plugin.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.shared.pool
    }
}

/// Binds `http.fcgi.address`: `tcp://host:port`, `unix:///path.sock` or `host:port`.
fn bind_fcgi(address: &str) -> Result<(Listener, String), String> {
    if let Some(path) = address.strip_prefix("unix://") {
        let listener = Listener::bind_unix(std::path::Path::new(path))?;
        return Ok((listener, address.to_owned()));
    }
    let host_port = address.strip_prefix("tcp://").unwrap_or(address);
    let (listener, bound) =
        Listener::bind_tcp(host_port).map_err(|error| format!("fcgi: {error}"))?;
    Ok((listener, format!("tcp://{bound}")))
}

/// Resolves and binds `address` on every shard (one SO_REUSEPORT socket each).
fn bind(
    address: &str,
    shards: usize,
    sharing: listener::Sharing,
) -> Result<(Vec<std::net::TcpListener>, SocketAddr), String> {
    let resolved =
        listener::resolve(address).map_err(|error| format!("http: address {address}: {error}"))?;
    let sockets = listener::bind_reuseport(resolved, shards, sharing).map_err(|error| {
        format!(
            "listen tcp {resolved}: {}",
            listener::bind_error_text(&error)
        )
    })?;
    let bound = sockets[0].local_addr().map_err(|e| e.to_string())?;
    Ok((sockets, bound))
}

/// Accepts on `sockets`, one per shard; with `tls`, each connection is a TLS session.
fn listen(
    sockets: Vec<std::net::TcpListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: &Arc<HttpShared>,
    shards: &Shards,
) {
    for (shard, socket) in sockets.into_iter().enumerate() {
        let shared = Arc::clone(shared);
        let tls = tls.clone();
        shards.spawn_on(shard, move |context| {
            accept_loop(socket, tls, shared, context)
        });
    }
}

async fn accept_loop(
    socket: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<HttpShared>,
    shard: Rc<ShardContext>,
) {
    let lifecycle = Arc::clone(&shared.lifecycle);
    let listener = Listener::Tcp(socket);
    stream::accept_loop(
        listener,
        shard.backend(),
        lifecycle,
        "http",
        |stream, peer| {
            let stream = match &tls {
                None => stream,
                Some(config) => match stream.into_tls(Arc::clone(config)) {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::error!(target: "http", %error, "tls session");
                        return;
                    }
                },
            };
            // A TCP listener always names the peer.
            let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            let origin = conn::Origin {
                https: stream.is_tls(),
            };
            tokio::task::spawn_local(conn::serve(
                stream,
                peer,
                origin,
                Arc::clone(&shared),
                Rc::clone(&shard),
            ));
        },
    )
    .await;
}
