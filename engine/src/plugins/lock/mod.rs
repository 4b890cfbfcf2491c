//! The `lock` plugin (spec devops § lock): the RPC service `lock` (Lock, LockRead, Release,
//! ForceRelease, Exists, UpdateTTL) with the `lock.v1beta1` protobuf messages
//! `roadrunner-php/lock` sends (JSON with the same field names is read too). As rr's, it has
//! no configuration and is on whenever `rpc` is (a `lock:` section is accepted, its content
//! ignored).
//!
//! The locks live in one lock table (`table.rs`) behind a mutex (the RPC connections all run on
//! shard 0, so it is never contended); a waiting call parks on a oneshot channel that the
//! table's grants fire, and one task on shard 0 sleeps until the next lock's expiry.

mod proto;
mod table;
#[cfg(test)]
mod table_properties;

use super::rpc::{Reply, RpcService};
use super::{Lifecycle, LocalFuture, Plugin, SectionContext, Service, StartContext};
use crate::config::ConfigError;
use prost::Message;
use proto::{Request, Response};
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use table::{Acquire, Kind, LockTable, Ticket};
use tokio::sync::{oneshot, Notify};

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "lock",
    configure,
};

/// rr's error text for a call without an id (all methods but ForceRelease).
pub const EMPTY_ID: &str = "empty ID is not allowed";

/// The longest a call waits for a lock, whatever `wait` it sends: a year, rr's own "for
/// ever" (its ttl 0).
pub const WAIT_MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// What `wait` 0 means: rr's `defaultImmediateTimeout`.
pub const WAIT_IMMEDIATE: Duration = Duration::from_millis(1);

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    // rr's lock plugin reads no configuration: the section is accepted and ignored.
    let _ = ctx.reader.node("lock");
    if !ctx.reader.has("rpc") {
        return Ok(None);
    }
    Ok(Some(Box::new(LockSection)))
}

/// The plugin before its start (it has nothing to configure).
#[derive(Debug)]
pub struct LockSection;

impl Plugin for LockSection {
    fn name(&self) -> &'static str {
        "lock"
    }

    /// Starts the expiry task on shard 0, where the RPC connections run.
    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        let locks = Arc::new(Locks::default());
        let task_locks = Arc::clone(&locks);
        let lifecycle = Arc::clone(ctx.lifecycle);
        if !ctx
            .shards
            .spawn_on(0, move |_| expire_locks(task_locks, lifecycle))
        {
            return Err("lock: shard 0 is not running".into());
        }
        Ok(Arc::new(LockPlugin { locks }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The running plugin.
#[derive(Debug)]
pub struct LockPlugin {
    locks: Arc<Locks>,
}

impl Service for LockPlugin {
    fn name(&self) -> &'static str {
        "lock"
    }

    fn rpc_services(&self) -> Vec<&dyn RpcService> {
        vec![self]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The table, the channels of the calls waiting in it, and the expiry task's wake-up.
#[derive(Debug, Default)]
struct Locks {
    state: Mutex<LockState>,
    /// Wakes the expiry task when the next expiry moved.
    rearm: Notify,
}

#[derive(Debug, Default)]
struct LockState {
    table: LockTable,
    /// A waiting call's channel by its ticket: the grant fires it.
    wakers: HashMap<Ticket, oneshot::Sender<()>>,
    /// Tickets granted by the operation under way, woken when it ends.
    granted: Vec<Ticket>,
    /// Set at shutdown: no call waits any more.
    stopped: bool,
}

impl Locks {
    /// Runs `operation` on the table after dropping the expired locks, then wakes whom it
    /// granted and re-arms the expiry task when the next expiry moved.
    fn with_state<T>(&self, operation: impl FnOnce(&mut LockState, Instant) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let LockState { table, granted, .. } = &mut *state;
        table.expire(now, granted);
        let expiry_before = state.table.next_expiry();
        let output = operation(&mut state, now);
        let LockState {
            wakers, granted, ..
        } = &mut *state;
        for ticket in granted.drain(..) {
            if let Some(waker) = wakers.remove(&ticket) {
                let _ = waker.send(());
            }
        }
        if state.table.next_expiry() != expiry_before {
            self.rearm.notify_one();
        }
        output
    }

    /// Takes the lock, waiting up to `wait` behind its holders; true when it is held.
    async fn acquire(&self, request: &Request, kind: Kind) -> bool {
        let ttl = ttl_of(request.ttl);
        let deadline = tokio::time::Instant::now() + wait_of(request.wait);
        let (waker, granted) = oneshot::channel();
        let acquired = self.with_state(|state, now| {
            // Stopping: nobody would wake the call.
            if state.stopped {
                return None;
            }
            let acquired = state
                .table
                .acquire(&request.resource, &request.id, kind, ttl, now);
            if let Acquire::Queued(ticket) = acquired {
                state.wakers.insert(ticket, waker);
            }
            Some(acquired)
        });
        let ticket = match acquired {
            None => return false,
            Some(Acquire::Granted) => return true,
            Some(Acquire::Full) => {
                tracing::warn!(target: "lock", resource = %request.resource, id = %request.id,
                    holds_max = table::HOLDS_MAX, waiters_max = table::WAITERS_MAX,
                    "lock table full: request refused");
                return false;
            }
            Some(Acquire::Queued(ticket)) => ticket,
        };
        let mut waiting = Waiting {
            locks: self,
            resource: &request.resource,
            ticket: Some(ticket),
        };
        if let Ok(Ok(())) = tokio::time::timeout_at(deadline, granted).await {
            waiting.ticket = None;
            return true;
        }
        // The wait is over (or the server stops); granted in the meantime counts as got.
        let still_queued = waiting.leave();
        if still_queued {
            tracing::warn!(target: "lock", resource = %request.resource, id = %request.id,
                "lock notification wait timeout expired");
        }
        !still_queued
    }

    /// Wakes every waiting call (with `false`) and refuses new waits.
    fn stop(&self) {
        tracing::debug!(target: "lock", "received stop signal, acquiring lock/release mutexes");
        self.with_state(|state, _| {
            state.stopped = true;
            state.wakers.clear();
        });
        tracing::debug!(target: "lock", "signal sent to all resources");
    }
}

/// A call waiting in the queue: leaves it when dropped (a call cancelled mid-wait).
struct Waiting<'a> {
    locks: &'a Locks,
    resource: &'a str,
    ticket: Option<Ticket>,
}

impl Waiting<'_> {
    /// Leaves the queue; false when the lock was granted first.
    fn leave(&mut self) -> bool {
        let Some(ticket) = self.ticket.take() else {
            return false;
        };
        self.locks.with_state(|state, now| {
            state.wakers.remove(&ticket);
            let LockState { table, granted, .. } = state;
            table.cancel(self.resource, ticket, now, granted)
        })
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Drops the locks whose ttl is up, on time: sleeps until the next expiry, woken earlier
/// when it moves; at shutdown wakes the waiting calls.
async fn expire_locks(locks: Arc<Locks>, lifecycle: Arc<Lifecycle>) {
    loop {
        let rearmed = locks.rearm.notified();
        let stopping = lifecycle.stop.notified();
        if lifecycle.is_stopping() {
            return locks.stop();
        }
        // `with_state` drops what expired by now.
        let next_expiry = locks.with_state(|state, _| state.table.next_expiry());
        let sleep = async {
            match next_expiry {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = rearmed => {}
            () = stopping => return locks.stop(),
        }
    }
}

/// A lock's ttl from microseconds: 0 (or none) is no expiry; a negative one is up at once,
/// as rr's timer with a negative duration.
fn ttl_of(micros: Option<i64>) -> Option<Duration> {
    match micros.unwrap_or(0) {
        0 => None,
        micros => Some(Duration::from_micros(micros.max(0).unsigned_abs())),
    }
}

/// A call's wait from microseconds: 0 or less (or none) is [`WAIT_IMMEDIATE`]; at most
/// [`WAIT_MAX`].
fn wait_of(micros: Option<i64>) -> Duration {
    match micros.unwrap_or(0) {
        ..=0 => WAIT_IMMEDIATE,
        micros => Duration::from_micros(micros.unsigned_abs()).min(WAIT_MAX),
    }
}

/// A lock method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Lock,
    LockRead,
    Release,
    ForceRelease,
    Exists,
    UpdateTtl,
}

impl Method {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "Lock" => Self::Lock,
            "LockRead" => Self::LockRead,
            "Release" => Self::Release,
            "ForceRelease" => Self::ForceRelease,
            "Exists" => Self::Exists,
            "UpdateTTL" => Self::UpdateTtl,
            _ => return None,
        })
    }

    /// rr's debug line for the request.
    fn received(self) -> &'static str {
        match self {
            Self::Lock => "lock request received",
            Self::LockRead => "read lock request received",
            Self::Release => "release request received",
            Self::ForceRelease => "force release request received",
            Self::Exists => "exists request received",
            Self::UpdateTtl => "updateTTL request received",
        }
    }
}

impl RpcService for LockPlugin {
    fn service(&self) -> &'static str {
        "lock"
    }

    fn call<'a>(
        &'a self,
        method: &'a str,
        arg: serde_json::Value,
    ) -> Option<LocalFuture<'a, Result<Reply, String>>> {
        let method = Method::from_name(method)?;
        Some(Box::pin(async move {
            let request = request_from_json(&arg)?;
            let ok = self.run(method, &request).await?;
            Ok(Reply::Json(serde_json::json!({ "ok": ok })))
        }))
    }

    fn call_proto<'a>(
        &'a self,
        method: &'a str,
        message: &'a [u8],
    ) -> Option<LocalFuture<'a, Result<Vec<u8>, String>>> {
        let method = Method::from_name(method)?;
        Some(Box::pin(async move {
            let request = Request::decode(message).map_err(|error| format!("lock: {error}"))?;
            let ok = self.run(method, &request).await?;
            Ok(Response { ok }.encode_to_vec())
        }))
    }
}

impl LockPlugin {
    /// Runs `method` with rr's checks (spec devops § lock).
    async fn run(&self, method: Method, request: &Request) -> Result<bool, String> {
        tracing::debug!(target: "lock", ttl = request.ttl.unwrap_or(0),
            wait_ttl = request.wait.unwrap_or(0), resource = %request.resource,
            id = %request.id, "{}", method.received());
        if request.id.is_empty() && method != Method::ForceRelease {
            return Err(EMPTY_ID.into());
        }
        let locks = &self.locks;
        let (resource, id) = (request.resource.as_str(), request.id.as_str());
        Ok(match method {
            Method::Lock => locks.acquire(request, Kind::Write).await,
            Method::LockRead => locks.acquire(request, Kind::Read).await,
            Method::Release => locks.with_state(|state, now| {
                let LockState { table, granted, .. } = state;
                table.release(resource, id, now, granted)
            }),
            Method::ForceRelease => locks.with_state(|state, now| {
                let LockState { table, granted, .. } = state;
                table.force_release(resource, now, granted)
            }),
            Method::Exists => locks.with_state(|state, _| state.table.exists(resource, id)),
            Method::UpdateTtl => locks.with_state(|state, now| {
                state
                    .table
                    .update_ttl(resource, id, ttl_of(request.ttl), now)
            }),
        })
    }
}

/// A request sent as JSON: `{"resource", "id", "ttl", "wait"}`.
fn request_from_json(arg: &serde_json::Value) -> Result<Request, String> {
    if !arg.is_object() {
        return Err("lock: expected a lock.v1beta1.Request object".into());
    }
    let text = |key: &str| {
        arg.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let number = |key: &str| arg.get(key).and_then(serde_json::Value::as_i64);
    Ok(Request {
        resource: text("resource"),
        id: text("id"),
        ttl: number("ttl"),
        wait: number("wait"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_wait_are_microseconds_with_rr_s_zero_values() {
        assert_eq!(ttl_of(None), None);
        assert_eq!(ttl_of(Some(0)), None);
        assert_eq!(ttl_of(Some(-5)), Some(Duration::ZERO));
        assert_eq!(ttl_of(Some(1_500_000)), Some(Duration::from_millis(1500)));
        assert_eq!(wait_of(None), WAIT_IMMEDIATE);
        assert_eq!(wait_of(Some(0)), WAIT_IMMEDIATE);
        assert_eq!(wait_of(Some(-1)), WAIT_IMMEDIATE);
        assert_eq!(wait_of(Some(250_000)), Duration::from_millis(250));
        assert_eq!(wait_of(Some(i64::MAX)), WAIT_MAX);
    }

    #[test]
    fn a_json_request_has_the_protobuf_field_names() {
        let request = request_from_json(
            &serde_json::json!({"resource": "r", "id": "a", "ttl": 5, "wait": 7}),
        );
        assert_eq!(
            request,
            Ok(Request {
                resource: "r".into(),
                id: "a".into(),
                ttl: Some(5),
                wait: Some(7),
            })
        );
        let bare = request_from_json(&serde_json::json!({})).expect("an object");
        assert_eq!((bare.id.as_str(), bare.ttl, bare.wait), ("", None, None));
        assert!(request_from_json(&serde_json::json!("r")).is_err());
    }
}
