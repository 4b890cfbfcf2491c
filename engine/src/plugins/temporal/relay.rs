//! One temporal exchange with a PHP worker (spec temporal "Wire protocol" §2): a frame with
//! flags 0 whose payload is the JSON context and a protobuf `Frame`, and the worker's `Frame`
//! back. Called from the temporal runtime; the exec itself runs on a shard, which the caller
//! awaits through a oneshot (the shards never wait on the temporal runtime).

use crate::pool::{ExecError, Pool, Request};
use crate::runtime::Shards;
use ringrunner_protocol::temporal::{self, Context, Frame, TemporalFrameError};
use ringrunner_protocol::Flags;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why an exchange with a worker gave no frame.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The pool's error (no free worker, the worker died, …).
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The worker's reply is not a `Frame`.
    #[error(transparent)]
    Frame(#[from] TemporalFrameError),
    /// The worker did not answer in time: it was killed (the pool replaces it).
    #[error("the worker did not answer within {0:?}; it was killed and is replaced")]
    Timeout(Duration),
    /// The shards stopped while the exchange was under way.
    #[error("the server is stopping")]
    Stopping,
}

/// Sends frames to a pool's workers from any thread, spreading the execs over the shards.
#[derive(Debug, Clone)]
pub struct Relay {
    shards: Arc<Shards>,
    next_shard: Arc<AtomicUsize>,
}

impl Relay {
    /// A relay over `shards`.
    #[must_use]
    pub fn new(shards: Arc<Shards>) -> Self {
        Self {
            shards,
            next_shard: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Sends `frame` with `context` to a worker of `pool` and decodes its reply; a worker
    /// that has not answered within `limit` is killed (the abandoned exec retires it).
    ///
    /// # Errors
    /// The pool's error, the time limit, a reply that is not a `Frame`, or a stop of the
    /// shards.
    pub async fn exchange(
        &self,
        pool: &Pool,
        context: &Context,
        frame: &Frame,
        limit: Duration,
    ) -> Result<Frame, RelayError> {
        let mut payload = context.to_json();
        let context_len = payload.len();
        temporal::encode_frame(frame, &mut payload);
        let pool = pool.clone();
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed);
        let reply = self.shards.run_on(shard, move |shard| async move {
            let mut response = Vec::new();
            let request = Request {
                codec: Flags::EMPTY,
                context: &payload[..context_len],
                body: &payload[context_len..],
                lent: None,
            };
            let exec = pool.exec(&shard, request, &mut response);
            let meta = tokio::time::timeout(limit, exec)
                .await
                .map_err(|_| RelayError::Timeout(limit))??;
            Ok::<_, RelayError>(response.split_off(meta.context_len.min(response.len())))
        });
        let body = reply.await.map_err(|_| RelayError::Stopping)??;
        Ok(temporal::decode_frame(&body)?)
    }
}
