//! The `centrifuge` plugin (spec centrifuge): Centrifugo's gRPC proxy served on the shards,
//! each event run on the `centrifuge` pool (`RR_MODE=centrifuge`) and answered with the
//! worker's message ([`proxy`]); and the `centrifuge.*` RPC methods PHP calls with the
//! protobuf codec, forwarded to Centrifugo's gRPC API by a client of their own ([`api`]).

mod api;
pub mod config;
mod proxy;
mod tls;

pub use api::{ApiError, API_CALL_TIMEOUT, IN_FLIGHT_CALLS_MAX};
pub use config::CentrifugeSection;

use super::grpc;
use super::metrics::pool::PoolHelp;
use super::rpc::RpcService;
use super::server::ServerPlugin;
use super::stream::{self, Listener};
use super::{Lifecycle, LocalFuture, Plugin, SectionContext, Service, StartContext};
use crate::config::ConfigError;
use crate::pool::Pool;
use crate::runtime::ShardContext;
use ringrunner_protocol::centrifuge::API_METHODS;
use std::any::Any;
use std::rc::Rc;
use std::sync::Arc;

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "centrifuge",
    configure,
};

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if !ctx.reader.has("centrifuge") {
        return Ok(None);
    }
    Ok(Some(Box::new(CentrifugeSection::read(
        ctx.reader,
        ctx.warnings,
    )?)))
}

/// The centrifuge pool's gauges, named and worded as rr's (`rr_centrifugo_*`).
const CENTRIFUGE_POOL_HELP: PoolHelp = PoolHelp {
    prefix: "rr_centrifugo",
    total: "Total number of workers used by the plugin",
    memory: "Memory usage by workers",
    ready: "Workers currently in ready state",
    working: "Workers currently in working state",
    invalid: "Workers currently in invalid,killing,destroyed,errored,inactive states",
};

/// What the proxy's connections and calls share.
#[derive(Debug)]
pub struct CentrifugeShared {
    /// The `centrifuge` pool.
    pub pool: Pool,
    /// Shutdown state.
    pub lifecycle: Arc<Lifecycle>,
}

/// The running plugin.
#[derive(Debug)]
pub struct CentrifugeService {
    shared: Arc<CentrifugeShared>,
    rpc: CentrifugeRpc,
}

impl Plugin for CentrifugeSection {
    fn name(&self) -> &'static str {
        "centrifuge"
    }

    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        if let Some(tls) = &self.tls {
            tls.check_files()
                .map_err(|error| format!("centrifuge_plugin_init: {error}"))?;
        }
        let listen = config::parse_proxy_address(&self.proxy_address)
            .map_err(|error| format!("centrifuge_plugin_serve: {error}"))?;
        let bound = grpc::bind(&listen, ctx.shards.count())
            .map_err(|error| format!("centrifuge_plugin_serve: {error}"))?;
        let api = api::ApiClient::start(&self)?;
        ServerPlugin::run_with_pool("centrifuge", &self.pool, ctx, |pool| {
            let shared = Arc::new(CentrifugeShared {
                pool,
                lifecycle: Arc::clone(ctx.lifecycle),
            });
            tracing::info!(target: "centrifuge", proxy_address = %self.proxy_address,
                grpc_api_address = %self.grpc_api_address, "centrifuge proxy server was started");
            bound.spawn_accepts(&shared, ctx, accept);
            Ok(Arc::new(CentrifugeService {
                shared,
                rpc: CentrifugeRpc { api },
            }) as Arc<dyn Service>)
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

async fn accept(listener: Listener, shared: Arc<CentrifugeShared>, shard: Rc<ShardContext>) {
    let lifecycle = Arc::clone(&shared.lifecycle);
    stream::accept_loop(
        listener,
        shard.backend(),
        lifecycle,
        "centrifuge",
        |stream, _peer| {
            let _ = stream.set_nodelay(true);
            tokio::task::spawn_local(proxy::serve(stream, Arc::clone(&shared), Rc::clone(&shard)));
        },
    )
    .await;
}

impl Service for CentrifugeService {
    fn name(&self) -> &'static str {
        "centrifuge"
    }

    fn pool(&self) -> Option<&Pool> {
        Some(&self.shared.pool)
    }

    fn collect(&self, families: &mut Vec<super::metrics::exposition::Family>) {
        super::metrics::pool::collect_pool(&CENTRIFUGE_POOL_HELP, &self.shared.pool, families);
    }

    fn rpc_services(&self) -> Vec<&dyn RpcService> {
        vec![&self.rpc]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The `centrifuge` RPC service: each of [`API_METHODS`] with the protobuf codec, forwarded
/// as is to Centrifugo's API.
#[derive(Debug)]
struct CentrifugeRpc {
    api: api::ApiClient,
}

impl RpcService for CentrifugeRpc {
    fn service(&self) -> &'static str {
        "centrifuge"
    }

    /// No method takes JSON: the caller gets rr's "can't find method".
    fn call<'a>(
        &'a self,
        _method: &'a str,
        _arg: serde_json::Value,
    ) -> Option<LocalFuture<'a, Result<super::rpc::Reply, String>>> {
        None
    }

    fn call_proto<'a>(
        &'a self,
        method: &'a str,
        message: &'a [u8],
    ) -> Option<LocalFuture<'a, Result<Vec<u8>, String>>> {
        let method = API_METHODS.iter().copied().find(|name| *name == method)?;
        Some(Box::pin(async move {
            self.api
                .call(method, message)
                .await
                .map_err(|error| error.to_string())
        }))
    }
}

/// Why a gzip message was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GunzipError {
    /// It inflates past the limit.
    TooLarge,
    /// It is not gzip.
    Malformed(String),
}

/// Inflates a gzip message (`grpc-encoding: gzip`) of at most `max_bytes`; a message that
/// inflates further is refused once it has, without inflating the rest.
fn gunzip(compressed: &[u8], max_bytes: usize) -> Result<Vec<u8>, GunzipError> {
    use std::io::Read;
    let mut plain = Vec::new();
    let limit = u64::try_from(max_bytes).map_or(u64::MAX, |max| max.saturating_add(1));
    flate2::read::GzDecoder::new(compressed)
        .take(limit)
        .read_to_end(&mut plain)
        .map_err(|error| GunzipError::Malformed(error.to_string()))?;
    if plain.len() > max_bytes {
        return Err(GunzipError::TooLarge);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gunzip_is_bounded() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&[b'z'; 10_000]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert_eq!(gunzip(&bomb, 10_000).map(|plain| plain.len()), Ok(10_000));
        assert_eq!(gunzip(&bomb, 9_999), Err(GunzipError::TooLarge));
        assert!(matches!(
            gunzip(b"plain", 100),
            Err(GunzipError::Malformed(_))
        ));
    }
}
