//! One request through the pool (spec pool-server §4): take a worker, one write, read the
//! reply, give the worker back (or retire it), all on the calling shard.

use super::slot::SlotToken;
use super::{ExecError, Pool, PoolShared, WorkerState};
use crate::runtime::ShardContext;
use crate::worker::relay::{RelayError, RelayIo, SendBuffers};
use ringrunner_protocol::payload::{data_header, WorkerMessage, PONG_FRAME, STREAM_STOP_FRAME};
use ringrunner_protocol::{Flags, StreamFlags};
use std::cell::RefCell;
use std::future::Future;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

/// A request: context and body, with the codec bits of the context.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Codec of the context (e.g. `CODEC_PROTO` for HTTP).
    pub codec: Flags,
    /// Context bytes.
    pub context: &'a [u8],
    /// Body bytes (copied into the frame; see `lent` for large bodies).
    pub body: &'a [u8],
    /// A body lent by value instead (then `body` is empty): written to the worker straight
    /// from the caller's buffer, without a copy.
    pub lent: Option<&'a LentBody>,
}

impl Request<'_> {
    fn body_len(&self) -> usize {
        self.lent.map_or(self.body.len(), LentBody::len)
    }
}

/// A request body in a buffer the caller lends for the exec: the ring writes it from there
/// (completion-based I/O owns the buffer while the write is in flight), and the buffer
/// comes back after each write. An exec abandoned mid-write (`exec_ttl`) loses it: then
/// [`LentBody::into_buffer`] is None.
#[derive(Debug)]
pub struct LentBody {
    buffer: RefCell<Option<Vec<u8>>>,
    range: std::ops::Range<usize>,
}

impl LentBody {
    /// Lends `buffer`, whose bytes `range` are the body.
    ///
    /// # Panics
    /// When `range` is outside `buffer`.
    #[must_use]
    pub fn new(buffer: Vec<u8>, range: std::ops::Range<usize>) -> Self {
        assert!(range.start <= range.end && range.end <= buffer.len());
        Self {
            buffer: RefCell::new(Some(buffer)),
            range,
        }
    }

    /// Bytes of the body.
    #[must_use]
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// True for an empty body.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The buffer back, unless a write that had it was abandoned.
    #[must_use]
    pub fn into_buffer(self) -> Option<Vec<u8>> {
        self.buffer.into_inner()
    }
}

/// What came back, besides the bytes written to the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseMeta {
    /// The worker's codec bits.
    pub codec: Flags,
    /// The first `context_len` bytes of the buffer are the context, the rest the body.
    pub context_len: usize,
}

/// One data frame of a worker's reply.
#[derive(Debug, Clone, Copy)]
pub struct ReplyFrame<'a> {
    /// Codec bits of the context.
    pub codec: Flags,
    /// Context bytes (may be empty on the frames after the first of a stream).
    pub context: &'a [u8],
    /// Body bytes.
    pub body: &'a [u8],
    /// False while the worker streams (the STREAM bit was set): more frames follow.
    pub last: bool,
}

/// Where the frames of a reply go, in order, as they arrive from the worker.
pub trait ReplySink {
    /// Takes one frame. Returns false when the receiver is gone (a client that hung up): the
    /// pool then asks a streaming worker to stop and drains what it still sends.
    fn frame(&mut self, frame: ReplyFrame<'_>) -> impl Future<Output = bool>;
}

/// How many times one request is re-run after workers asked to be stopped (spec §4.2), so a
/// pool whose every worker asks to stop cannot loop forever.
const MAX_STOP_REQUEST_RERUNS: usize = 64;

/// The worker's answer, its bytes already in the caller's buffer.
enum Reply {
    Data,
    SoftError(String),
    StopRequest,
}

/// Owns a taken slot for the duration of one exchange. Dropped without `finish` (the caller
/// gave up mid-request), the worker's state is unknown: it is killed and replaced.
struct ExecGuard<'a> {
    shared: &'a PoolShared,
    /// None once finished or retired.
    token: Option<SlotToken>,
}

impl ExecGuard<'_> {
    /// The slot back, for [`give_back`].
    fn finish(mut self) -> SlotToken {
        self.token.take().expect("a guard is finished once")
    }

    /// Gives the slot to its lifecycle task in state `state`.
    fn retire(mut self, state: WorkerState) {
        let token = self.token.take().expect("a guard is retired once");
        let slot = self.shared.slot(token.index());
        slot.mark(state);
        if matches!(state, WorkerState::Errored | WorkerState::ExecTtlReached) {
            slot.kill();
        }
        self.shared.hand_back(token);
    }
}

impl Drop for ExecGuard<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            let slot = self.shared.slot(token.index());
            slot.mark(WorkerState::Errored);
            slot.kill();
            self.shared.hand_back(token);
        }
    }
}

impl Pool {
    /// Runs `request` on a worker and writes the reply's context and body into `response`
    /// (cleared first); a streamed reply is gathered whole. The caller keeps `response` for
    /// its next request.
    ///
    /// # Errors
    /// An [`ExecError`] whose text is RoadRunner's.
    pub async fn exec(
        &self,
        shard: &ShardContext,
        request: Request<'_>,
        response: &mut Vec<u8>,
    ) -> Result<ResponseMeta, ExecError> {
        response.clear();
        let mut sink = GatherSink {
            response,
            meta: None,
        };
        self.exec_streamed(shard, request, &mut sink).await?;
        Ok(sink.meta.expect("a successful exec delivered a frame"))
    }

    /// Runs `request` on a worker and hands each frame of the reply to `sink` as it arrives.
    /// An error after the first frame means the reply was cut short.
    ///
    /// # Errors
    /// An [`ExecError`] whose text is RoadRunner's.
    pub async fn exec_streamed<S: ReplySink>(
        &self,
        shard: &ShardContext,
        request: Request<'_>,
        sink: &mut S,
    ) -> Result<(), ExecError> {
        let shared = self.shared();
        if request.context.is_empty() && request.body_len() == 0 {
            return Err(ExecError::EmptyPayload);
        }
        if shared.closed.load(Ordering::SeqCst) {
            return Err(ExecError::Stopped);
        }
        let queued = shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let _in_flight = InFlight(shared);
        let max_queue = shared.config.max_queue_size;
        if max_queue > 0 && queued >= max_queue {
            return Err(ExecError::QueueFull);
        }
        for _ in 0..MAX_STOP_REQUEST_RERUNS {
            let asked = std::time::Instant::now();
            let token = self.take(shard.index()).await?;
            let taken = std::time::Instant::now();
            shared.wait_seconds.observe(shard.index(), taken - asked);
            let reply = exec_on(shared, shard, token, request, sink).await;
            shared.exec_seconds.observe(shard.index(), taken.elapsed());
            match reply? {
                Reply::Data => return Ok(()),
                Reply::SoftError(text) => {
                    tracing::warn!(pool = %shared.config.name, error = %text, "soft worker error");
                    return Err(ExecError::SoftJob(text));
                }
                Reply::StopRequest => continue,
            }
        }
        Err(ExecError::NoFreeWorkers)
    }

    /// Takes a ready worker, waiting up to `allocate_timeout` (spec §4.1, §4.2). Worst case:
    /// one pop per flagged slot met on the way (each handed back to its lifecycle task, so
    /// at most the number of slots), one wait of `allocate_timeout`, then the dynamic
    /// allocator's scale-up when configured.
    async fn take(&self, here: usize) -> Result<SlotToken, ExecError> {
        let shared = self.shared();
        // Read the clock only when there is a wait to bound.
        let mut deadline = None;
        if shared.config.debug {
            shared.demand.notify_one();
        }
        loop {
            let token = match shared.pop_idle() {
                Some(token) => token,
                None => match shared
                    .wait_for_worker(
                        *deadline.get_or_insert_with(|| {
                            tokio::time::Instant::now() + shared.config.allocate_timeout
                        }),
                        here,
                    )
                    .await
                {
                    Ok(token) => token,
                    Err(super::waiters::WaitError::Closed) => return Err(ExecError::Stopped),
                    Err(super::waiters::WaitError::TimedOut) => {
                        tracing::error!(pool = %shared.config.name, reason = "no free workers",
                            "no free workers in the pool, wait timeout exceed");
                        if shared.dynamic.is_none() {
                            return Err(ExecError::NoFreeWorkers);
                        }
                        super::dynamic::allocate(shared, here).await?
                    }
                },
            };
            if shared
                .slot(token.index())
                .transition(WorkerState::Ready, WorkerState::Working)
            {
                return Ok(token);
            }
            // Flagged while idle (exited, supervisor, reset): its lifecycle task takes it.
            shared.hand_back(token);
        }
    }
}

/// Decrements the in-flight count when the exec call ends, however it ends.
struct InFlight<'a>(&'a PoolShared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn exec_on<S: ReplySink>(
    shared: &PoolShared,
    shard: &ShardContext,
    token: SlotToken,
    request: Request<'_>,
    sink: &mut S,
) -> Result<Reply, ExecError> {
    let index = token.index();
    let guard = ExecGuard {
        shared,
        token: Some(token),
    };
    let slot = shared.slot(index);
    let generation = slot.generation.load(Ordering::Acquire);
    let Some(mut relay) = relay_for(shared, shard, index, generation) else {
        guard.retire(WorkerState::Errored);
        return Err(ExecError::Network("worker relay is gone".into()));
    };
    slot.last_used_ns.store(shared.now_ns(), Ordering::Relaxed);
    let exchange = exchange(
        &mut relay,
        shard.send_buffers(),
        request,
        sink,
        slot,
        shared.config.stream_timeout,
    );
    let outcome = match shared.config.exec_ttl() {
        Some(ttl) => tokio::time::timeout(ttl, exchange).await.map_err(|_| ()),
        None => Ok(exchange.await),
    };
    match outcome {
        Err(()) => {
            tracing::warn!(pool = %shared.config.name, pid = slot.pid.load(Ordering::Relaxed),
                reason = "execTTL timeout elapsed", "worker stopped, and will be restarted");
            guard.retire(WorkerState::ExecTtlReached);
            Err(ExecError::ExecTtl)
        }
        Ok(Err(error)) => {
            tracing::warn!(pool = %shared.config.name, pid = slot.pid.load(Ordering::Relaxed),
                reason = "worker hung or process was killed", %error,
                "RoadRunner can't communicate with the worker");
            guard.retire(WorkerState::Errored);
            Err(ExecError::Network(error.to_string()))
        }
        Ok(Ok(Reply::StopRequest)) => {
            shard.relays().put(shared.id, index, generation, relay);
            guard.retire(WorkerState::Invalid);
            Ok(Reply::StopRequest)
        }
        Ok(Ok(reply)) => {
            shard.relays().put(shared.id, index, generation, relay);
            give_back(shared, guard.finish(), shard.index());
            Ok(reply)
        }
    }
}

/// After a complete reply: back to ready, or retired when `max_jobs` is reached or the
/// supervisor flagged it meanwhile. The reply is delivered first either way (spec §4.4 fix).
fn give_back(shared: &PoolShared, token: SlotToken, here: usize) {
    let slot = shared.slot(token.index());
    // Debug mode: one request per worker.
    let max_jobs = if shared.config.debug {
        1
    } else {
        shared.config.max_jobs
    };
    if max_jobs > 0 && slot.execs.load(Ordering::Relaxed) >= max_jobs {
        slot.transition(WorkerState::Working, WorkerState::MaxJobsReached);
        shared.hand_back(token);
    } else if !slot.wanted.load(Ordering::Acquire) {
        // The dynamic allocator scaled down while this extra worker was busy.
        slot.transition(WorkerState::Working, WorkerState::Invalid);
        shared.hand_back(token);
    } else if slot.transition(WorkerState::Working, WorkerState::Ready) {
        shared.release(token, Some(here));
    } else {
        shared.hand_back(token);
    }
}

fn relay_for(
    shared: &PoolShared,
    shard: &ShardContext,
    index: u32,
    generation: u64,
) -> Option<RelayIo> {
    shard
        .relays()
        .take(shared.id, index, generation)
        .or_else(|| {
            let slot = shared.slot(index);
            slot.with_process(|process| {
                RelayIo::from_fds(
                    process.relay_write.as_fd(),
                    process.relay_read.as_fd(),
                    shared.config.max_payload_bytes,
                    shard.backend(),
                )
                .ok()
            })
            .flatten()
        })
}

/// Writes the request frame and reads the reply, handing each data frame to `sink`; answers
/// every PING of a stream with a PONG (spec relay-protocol §5). When the sink says its
/// receiver is gone mid-stream, asks the worker to stop (STREAM STOP) and drains the frames
/// it still sends, for at most `stream_timeout`, so the worker goes back to the pool clean.
async fn exchange<S: ReplySink>(
    relay: &mut RelayIo,
    buffers: &SendBuffers,
    request: Request<'_>,
    sink: &mut S,
    slot: &super::slot::WorkerSlot,
    stream_timeout: std::time::Duration,
) -> Result<Reply, RelayError> {
    let mut frame = buffers.take();
    let header = data_header(
        request.codec,
        StreamFlags::EMPTY,
        request.context.len(),
        request.body_len(),
    )?;
    frame.reserve_exact(header.as_bytes().len() + request.context.len() + request.body.len());
    frame.extend_from_slice(header.as_bytes());
    frame.extend_from_slice(request.context);
    frame.extend_from_slice(request.body);
    // The request's last write also starts reading the reply: the frame's, or the lent
    // body's after it.
    let (sent, frame) = if request.lent.is_some() {
        let (sent, frame) = relay.send(frame).await;
        (sent.map_err(RelayError::from), frame)
    } else {
        let len = frame.len();
        relay.send_range_then_read(frame, 0..len).await
    };
    buffers.give_back(frame);
    sent?;
    if let Some(lent) = request.lent {
        send_lent(relay, lent).await?;
    }
    slot.execs.fetch_add(1, Ordering::Relaxed);
    let result = receive_reply(relay, buffers, sink, stream_timeout).await;
    relay.release_frame();
    result
}

/// Writes a lent body after the frame's header and context: the buffer goes to the ring
/// and comes back into `lent` (it stays out if this future is dropped mid-write).
async fn send_lent(relay: &mut RelayIo, lent: &LentBody) -> Result<(), RelayError> {
    let Some(buffer) = lent.buffer.borrow_mut().take() else {
        return Err(RelayError::Io(std::io::Error::other(
            "the request body was lost to an abandoned write",
        )));
    };
    let (sent, buffer) = relay.send_range_then_read(buffer, lent.range.clone()).await;
    *lent.buffer.borrow_mut() = Some(buffer);
    sent
}

/// A reply the worker sent that is not a valid reply.
fn invalid_reply(reason: String) -> RelayError {
    RelayError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, reason))
}

/// Reads the reply's frames and hands each data frame to `sink` straight from the relay's
/// read buffer (no copy); see [`exchange`] for PINGs and STOP.
async fn receive_reply<S: ReplySink>(
    relay: &mut RelayIo,
    buffers: &SendBuffers,
    sink: &mut S,
    stream_timeout: std::time::Duration,
) -> Result<Reply, RelayError> {
    let mut first = true;
    let mut draining_since: Option<tokio::time::Instant> = None;
    loop {
        let next = relay.next_frame();
        let frame = match draining_since {
            None => next.await,
            Some(since) => tokio::time::timeout_at(since + stream_timeout, next)
                .await
                .map_err(|_| {
                    RelayError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "worker did not end its stream after STOP within stream_timeout",
                    ))
                })?,
        }?;
        let (more, pong, delivered) = match WorkerMessage::from_frame(&frame) {
            Ok(WorkerMessage::Data(data)) => {
                let more = data.is_streaming();
                let delivered = if draining_since.is_none() {
                    sink.frame(ReplyFrame {
                        codec: data.codec,
                        context: data.context,
                        body: data.body,
                        last: !more,
                    })
                    .await
                } else {
                    true
                };
                (more, data.wants_pong() && !first, delivered)
            }
            Ok(WorkerMessage::Error(text)) => {
                return Ok(Reply::SoftError(String::from_utf8_lossy(text).into_owned()))
            }
            Ok(WorkerMessage::StopRequest) => return Ok(Reply::StopRequest),
            Ok(WorkerMessage::Control(_)) => {
                return Err(invalid_reply(
                    "unexpected control frame in a reply".to_owned(),
                ))
            }
            Err(error) => return Err(invalid_reply(error.to_string())),
        };
        if !delivered && more && draining_since.is_none() {
            draining_since = Some(tokio::time::Instant::now());
            send_control(relay, buffers, &STREAM_STOP_FRAME).await?;
            continue;
        }
        if !more {
            return Ok(Reply::Data);
        }
        if pong && draining_since.is_none() {
            send_control(relay, buffers, &PONG_FRAME).await?;
        }
        first = false;
    }
}

/// Sends a small control frame (STOP, PONG) from this shard's reused buffers.
async fn send_control(
    relay: &RelayIo,
    buffers: &SendBuffers,
    bytes: &[u8],
) -> Result<(), RelayError> {
    let mut frame = buffers.take();
    frame.extend_from_slice(bytes);
    let (sent, frame) = relay.send(frame).await;
    buffers.give_back(frame);
    Ok(sent?)
}

/// Gathers a whole reply, streamed or not, into one buffer: context of the first frame, then
/// every frame's body.
struct GatherSink<'a> {
    response: &'a mut Vec<u8>,
    meta: Option<ResponseMeta>,
}

impl ReplySink for GatherSink<'_> {
    async fn frame(&mut self, frame: ReplyFrame<'_>) -> bool {
        if self.meta.is_none() {
            self.response.extend_from_slice(frame.context);
            self.meta = Some(ResponseMeta {
                codec: frame.codec,
                context_len: frame.context.len(),
            });
        }
        self.response.extend_from_slice(frame.body);
        true
    }
}
