//! `grpc.health.v1.Health` (spec grpc "Other behaviours"): `Check` answers SERVING for any
//! service name, NOT_SERVING while the plugin resets or stops; `List` gives `{"grpc":
//! status}`; `Watch` streams the status and each change until the client goes or the
//! server stops.

use super::call::{send_message, CallStatus};
use super::GrpcShared;
use bytes::Bytes;
use h2::server::SendResponse;
use http::{HeaderMap, HeaderValue};
use prost::Message;
use ringrunner_protocol::grpc::Code;
use std::collections::BTreeMap;
use tokio::sync::watch;

/// The service's full name.
pub const SERVICE: &str = "grpc.health.v1.Health";

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: i32 = 1;
/// `HealthCheckResponse.ServingStatus.NOT_SERVING`.
const NOT_SERVING: i32 = 2;

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `grpc.health.v1.HealthListResponse`.
#[derive(Clone, PartialEq, Message)]
struct HealthListResponse {
    #[prost(btree_map = "string, message", tag = "1")]
    statuses: BTreeMap<String, HealthCheckResponse>,
}

/// Whether the plugin serves; watched by `Watch` calls.
#[derive(Debug)]
pub struct Health {
    serving: watch::Sender<bool>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            serving: watch::Sender::new(true),
        }
    }
}

impl Health {
    /// Sets the state (false while resetting or stopping).
    pub fn set_serving(&self, serving: bool) {
        self.serving.send_replace(serving);
    }

    fn status(serving: bool) -> HealthCheckResponse {
        HealthCheckResponse {
            status: if serving { SERVING } else { NOT_SERVING },
        }
    }
}

/// Serves `method` of the health service.
pub(super) async fn serve(
    method: &str,
    _request: &[u8],
    respond: &mut SendResponse<Bytes>,
    shared: &GrpcShared,
) -> Result<(), CallStatus> {
    let status = Health::status(*shared.health.serving.borrow());
    let answer = match method {
        "Check" => status.encode_to_vec(),
        "List" => HealthListResponse {
            statuses: BTreeMap::from([("grpc".to_owned(), status)]),
        }
        .encode_to_vec(),
        "Watch" => return watch(respond, shared).await,
        _ => {
            return Err(CallStatus::new(
                Code::Unimplemented,
                format!("unknown method {method} for service {SERVICE}"),
            ))
        }
    };
    super::call::send_ok(respond, HeaderMap::new(), &answer, HeaderMap::new()).await
}

async fn watch(respond: &mut SendResponse<Bytes>, shared: &GrpcShared) -> Result<(), CallStatus> {
    let cancelled = |error: h2::Error| CallStatus::new(Code::Cancelled, error.to_string());
    let mut changes = shared.health.serving.subscribe();
    let mut head = http::Response::new(());
    head.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let mut send = respond.send_response(head, false).map_err(cancelled)?;
    let stop = shared.lifecycle.stop.notified();
    tokio::pin!(stop);
    stop.as_mut().enable();
    loop {
        let serving = *changes.borrow_and_update();
        send_message(&mut send, &Health::status(serving).encode_to_vec()).await?;
        if shared.lifecycle.is_stopping() {
            break;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            () = &mut stop => {
                send_message(&mut send, &Health::status(false).encode_to_vec()).await?;
                break;
            }
            reset = std::future::poll_fn(|cx| send.poll_reset(cx)) => {
                return Err(CallStatus::new(Code::Cancelled, format!("{reset:?}")));
            }
        }
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    send.send_trailers(trailers).map_err(cancelled)
}
