//! The `amqp` driver (spec jobs-amqp): a pipeline on RabbitMQ. Each pipeline has its own
//! connection with a publish channel in confirm mode and, while it consumes, a consume
//! channel with `prefetch` unacknowledged deliveries at most; deliveries become jobs in the
//! shared queue and a worker's verdict becomes `basic.ack`, `basic.nack` or a republish.
//! Everything AMQP runs on a small runtime of its own; a lost connection is redialed with
//! back-off, and what was delivered but not acknowledged comes back from the broker.

pub mod config;
mod headers;
mod link;
mod redial;
mod runtime;

pub use runtime::AmqpRuntime;

use super::pipeline::{Driver, Job, Pipeline, PipelineStat, Receipt, Verdict};
use super::queue::SharedQueue;
use config::Options;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use link::Link;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{Mutex, Notify};

/// What a delivered job needs to be settled with the broker.
#[derive(Debug)]
pub struct Delivery {
    acker: lapin::Acker,
    /// Acknowledged when it arrived (`rr_auto_ack`): the verdict sends nothing.
    auto_acked: bool,
    /// The dial it came on: once that connection is gone, its acks cannot reach the broker,
    /// which delivers it again on the next one.
    generation: u64,
    /// The channel it came on (its acks go there).
    channel: lapin::Channel,
}

/// An amqp pipeline's driver.
#[derive(Debug)]
pub struct Amqp {
    inner: Arc<Inner>,
    runtime: tokio::runtime::Handle,
}

/// What the driver's tasks share.
struct Inner {
    name: String,
    priority: i64,
    options: Options,
    /// Bounds a publish's wait for the link and for its confirm (`jobs.timeout`).
    timeout: Duration,
    queue: Arc<SharedQueue>,
    pipeline: Weak<Pipeline>,
    /// The connection and channels; None before the first dial, during a redial that has
    /// not succeeded yet, and after stop.
    link: Mutex<Option<Link>>,
    /// Each dial's number: a watcher or listener of an older one does not redial.
    generation: AtomicU64,
    /// The number of the dial whose link is in place; 0 while there is none (before the
    /// first dial, during a redial, after stop). Deliveries of any other are stale.
    live_generation: AtomicU64,
    consuming: AtomicBool,
    stopped: AtomicBool,
    stop: Notify,
    delayed: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("name", &self.name)
            .field("queue", &self.options.queue)
            .finish_non_exhaustive()
    }
}

const FAILED_ACK: &str = "failed to acknowledge the JOB, the pipeline is probably stopped";

impl Amqp {
    /// A pipeline on `options`' broker, not dialed yet.
    #[must_use]
    pub fn pipeline(
        name: &str,
        options: Options,
        timeout: Duration,
        queue: &Arc<SharedQueue>,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Pipeline> {
        Arc::new_cyclic(|pipeline| Pipeline {
            name: name.to_owned(),
            priority: options.priority,
            driver: Driver::Amqp(Self {
                inner: Arc::new(Inner {
                    name: name.to_owned(),
                    priority: options.priority,
                    options,
                    timeout,
                    queue: Arc::clone(queue),
                    pipeline: pipeline.clone(),
                    link: Mutex::new(None),
                    generation: AtomicU64::new(0),
                    live_generation: AtomicU64::new(0),
                    consuming: AtomicBool::new(false),
                    stopped: AtomicBool::new(false),
                    stop: Notify::new(),
                    delayed: AtomicU64::new(0),
                }),
                runtime,
            }),
        })
    }

    /// The first dial: the connection, the exchange, the publish channel; consuming too
    /// when `consume` (the pipeline is in `jobs.consume`).
    ///
    /// # Errors
    /// The broker cannot be reached, refuses the credentials or the exchange.
    pub async fn connect(&self, consume: bool) -> Result<(), String> {
        let inner = Arc::clone(&self.inner);
        runtime::on(&self.runtime, async move {
            inner.consuming.store(consume, Ordering::Release);
            let link = Link::dial(&inner).await?;
            redial::install(&inner, link)
                .await
                .map_err(|why| match why {
                    redial::Installed::Stopped => {
                        "the pipeline was stopped while it dialed".to_owned()
                    }
                    redial::Installed::Closed => {
                        "the connection closed while it was dialed".to_owned()
                    }
                })
        })
        .await
    }

    /// True while `delivery` can still be settled: acknowledged on arrival, or come on the
    /// connection in place and on a channel still open. A stale one is not run: the broker
    /// delivers it again on the new connection (running it now would run it twice).
    #[must_use]
    pub fn is_live(&self, delivery: &Delivery) -> bool {
        delivery.auto_acked
            || (delivery.generation == self.inner.live_generation.load(Ordering::Acquire)
                && delivery.channel.status().connected())
    }

    /// The queue it consumes (the worker's context names it).
    #[must_use]
    pub fn queue_name(&self) -> &str {
        &self.inner.options.queue
    }

    /// Publishes `jobs` (each delayed one to its delay queue) and waits for the broker's
    /// confirms.
    ///
    /// # Errors
    /// rr's texts: an empty routing key, a broker nack; a link that is down past `timeout`.
    pub async fn publish(&self, jobs: Vec<Job>) -> Result<(), String> {
        let inner = Arc::clone(&self.inner);
        runtime::on(&self.runtime, async move { inner.publish_many(jobs).await }).await
    }

    /// Carries out a worker's verdict (spec jobs-amqp §6).
    ///
    /// # Errors
    /// The pipeline stopped; the channel the job came on is gone (the broker delivers it
    /// again); the republish of a requeue failed (the job is nacked back instead).
    pub async fn settle(&self, job: Job, verdict: Verdict) -> Result<(), String> {
        let inner = Arc::clone(&self.inner);
        runtime::on(
            &self.runtime,
            async move { inner.settle(job, verdict).await },
        )
        .await
    }

    /// Starts (or resumes) consuming.
    ///
    /// # Errors
    /// An empty queue name; it consumes already; the broker refused the queue.
    pub async fn run(&self, _pipeline: &Arc<Pipeline>) -> Result<(), String> {
        let inner = Arc::clone(&self.inner);
        runtime::on(&self.runtime, async move {
            inner.check_queue()?;
            let mut link = inner.link.lock().await;
            if inner.consuming.swap(true, Ordering::AcqRel) {
                return Err("amqp listener is already in the active state".into());
            }
            let result = match link.as_mut() {
                Some(link) => within_answer("basic.consume", link.consume(&inner)).await,
                // A redial in progress consumes once it succeeds.
                None => Ok(()),
            };
            if result.is_err() {
                inner.consuming.store(false, Ordering::Release);
            } else {
                tracing::debug!(target: "jobs", pipeline = %inner.name, driver = "amqp", "pipeline was resumed");
            }
            result
        })
        .await
    }

    /// Stops consuming: the consumer is cancelled; deliveries already taken still run and
    /// are settled on their channel.
    ///
    /// # Errors
    /// An empty queue name; it does not consume.
    pub async fn pause(&self) -> Result<(), String> {
        let inner = Arc::clone(&self.inner);
        runtime::on(&self.runtime, async move {
            inner.check_queue()?;
            let mut link = inner.link.lock().await;
            if !inner.consuming.swap(false, Ordering::AcqRel) {
                return Err("no active listeners, nothing to pause".into());
            }
            if let Some(link) = link.as_mut() {
                within_answer("basic.cancel", link.cancel(&inner)).await?;
            }
            tracing::debug!(target: "jobs", pipeline = %inner.name, driver = "amqp", "pipeline was paused");
            Ok(())
        })
        .await
    }

    /// Stops it for good: the consumer is cancelled, the queue deleted when configured so,
    /// the connection closed (the broker takes back what was not acknowledged).
    pub async fn stop(&self) {
        let inner = Arc::clone(&self.inner);
        let stopped = runtime::on(&self.runtime, async move {
            inner.stopped.store(true, Ordering::Release);
            inner.stop.notify_waiters();
            let link = {
                let mut link = inner.link.lock().await;
                inner.live_generation.store(0, Ordering::Release);
                link.take()
            };
            if let Some(link) = link {
                link.close(&inner).await;
            }
            tracing::debug!(target: "jobs", pipeline = %inner.name, driver = "amqp", "pipeline was stopped");
            Ok(())
        });
        let _ = stopped.await;
    }

    /// `active` is what the broker has ready in the queue (a passive declare on a channel
    /// of its own, so a missing queue closes only that one), `delayed` this driver's count,
    /// `ready` whether it consumes now. With no connection (a redial under way) or a
    /// broker that does not answer within [`link::ANSWER_WITHIN`], it answers at once: not
    /// ready, nothing active.
    ///
    /// # Errors
    /// The broker's: the queue does not exist.
    pub async fn stat(&self) -> Result<PipelineStat, String> {
        let inner = Arc::clone(&self.inner);
        runtime::on(&self.runtime, async move {
            let down = PipelineStat {
                queue: inner.options.queue.clone(),
                active: 0,
                delayed: inner.delayed.load(Ordering::Acquire),
                ready: false,
            };
            let ready = inner.consuming.load(Ordering::Acquire);
            match tokio::time::timeout(link::ANSWER_WITHIN, inner.ready_count()).await {
                Ok(Ok(Some(active))) => Ok(PipelineStat {
                    active,
                    ready,
                    ..down
                }),
                Ok(Ok(None)) => Ok(down),
                Ok(Err(error)) => Err(error),
                Err(_) => {
                    tracing::warn!(target: "jobs", pipeline = %inner.name, within = ?link::ANSWER_WITHIN, "the broker did not answer the state's queue.declare, reported as not ready");
                    Ok(down)
                }
            }
        })
        .await
    }
}

/// `call`, or an error naming `what` when the broker does not answer within
/// [`link::ANSWER_WITHIN`].
async fn within_answer<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(link::ANSWER_WITHIN, call)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{what}: the broker did not answer within {:?}",
                link::ANSWER_WITHIN
            ))
        })
}

/// Runs `futures` together, polling them in their order, and returns their outputs in it.
async fn join_in_order<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

impl Inner {
    /// Messages ready in the queue (0 for a push-only pipeline); None while there is no
    /// connection.
    async fn ready_count(&self) -> Result<Option<u64>, String> {
        let channel = {
            let link = self.link.lock().await;
            let Some(link) = link.as_ref() else {
                return Ok(None);
            };
            if self.options.queue.is_empty() {
                return Ok(Some(0));
            }
            link.channel().await?
        };
        let count = link::ready_count(&channel, &self.options.queue).await;
        let _ = channel.close(200, "OK".into()).await;
        count.map(|count| Some(u64::from(count)))
    }

    fn check_queue(&self) -> Result<(), String> {
        if self.options.queue.is_empty() {
            return Err(
                "empty queue name, consider adding the queue name to the AMQP configuration".into(),
            );
        }
        Ok(())
    }

    async fn publish(self: &Arc<Self>, job: Job) -> Result<(), String> {
        self.publish_many(vec![job]).await
    }

    /// Publishes `jobs` in order under one hold of the link, then waits for their confirms
    /// together (a batch costs about one round trip, not one per job).
    async fn publish_many(self: &Arc<Self>, jobs: Vec<Job>) -> Result<(), String> {
        let options = &self.options;
        if options.routing_key.is_empty() && options.exchange_type != "fanout" {
            return Err(
                "empty routing key, consider adding the routing key name to the AMQP configuration"
                    .into(),
            );
        }
        let delayed = jobs.iter().filter(|job| job.delay > 0).count() as u64;
        self.delayed.fetch_add(delayed, Ordering::AcqRel);
        let published = tokio::time::timeout(self.timeout, self.publish_now(jobs))
            .await
            .unwrap_or_else(|_| Err("publish: context deadline exceeded".into()));
        if published.is_err() {
            // Which of them the broker took is not known: the count is a local figure.
            let _ = self
                .delayed
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    Some(n.saturating_sub(delayed))
                });
        }
        published
    }

    async fn publish_now(self: &Arc<Self>, mut jobs: Vec<Job>) -> Result<(), String> {
        let routing_keys: Vec<String> = jobs
            .iter_mut()
            .map(|job| {
                headers::take_routing_key(&mut job.headers)
                    .unwrap_or_else(|| self.options.routing_key.clone())
            })
            .collect();
        let confirms = {
            let link = self.link.lock().await;
            let link = link
                .as_ref()
                .ok_or("connection is closed, the pipeline is redialing")?;
            // Each publish waits for the client's I/O thread to write it: issued together
            // (polled in order, so frames and confirm tags keep the jobs' order), a batch
            // waits about once.
            let publishes = jobs
                .iter()
                .zip(&routing_keys)
                .map(|(job, routing_key)| async move {
                    if job.delay > 0 {
                        link.publish_delayed(self, job, routing_key).await
                    } else {
                        link.publish(&self.options.exchange, routing_key, job).await
                    }
                });
            join_in_order(publishes.collect()).await
        };
        let mut first_error = None;
        let mut pending = Vec::with_capacity(confirms.len());
        for confirm in confirms {
            match confirm {
                Ok(confirm) => pending.push(confirm),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        for confirmation in join_in_order(pending).await {
            match confirmation {
                Ok(confirmation) if confirmation.is_nack() => {
                    first_error.get_or_insert_with(|| "failed to get publisher confirm".into());
                }
                Ok(_) => {}
                Err(error) => {
                    first_error
                        .get_or_insert_with(|| format!("failed to get publisher confirm: {error}"));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn settle(self: &Arc<Self>, mut job: Job, verdict: Verdict) -> Result<(), String> {
        let Receipt::Amqp(delivery) = std::mem::replace(&mut job.receipt, Receipt::None) else {
            return Err("not a delivered job".into());
        };
        if self.stopped.load(Ordering::Acquire) {
            return Err(FAILED_ACK.into());
        }
        let old_delay = job.delay;
        let result = match verdict {
            Verdict::Ack => self.ack(&delivery).await,
            Verdict::Nack => self.nack(&delivery, self.options.requeue_on_fail).await,
            Verdict::NackWith { requeue, delay } if !requeue || delay == 0 => {
                self.nack(&delivery, requeue).await
            }
            Verdict::NackWith { delay, .. } => {
                job.delay = delay;
                self.requeue(job, &delivery).await
            }
            Verdict::Requeue { headers, delay } => {
                job.headers.extend(headers);
                job.delay = delay;
                self.requeue(job, &delivery).await
            }
        };
        if old_delay > 0 {
            let _ = self
                .delayed
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
        result
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), String> {
        if delivery.auto_acked {
            return Ok(());
        }
        let options = BasicAckOptions {
            multiple: self.options.multiple_ack,
        };
        delivery
            .acker
            .ack(options)
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    }

    async fn nack(&self, delivery: &Delivery, requeue: bool) -> Result<(), String> {
        if delivery.auto_acked {
            return Ok(());
        }
        let options = BasicNackOptions {
            multiple: false,
            requeue,
        };
        delivery
            .acker
            .nack(options)
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    }

    /// Publishes the job again (a new message at the tail of the queue), then acks the
    /// delivery; a failed publish nacks it back instead, so it is not lost.
    async fn requeue(self: &Arc<Self>, job: Job, delivery: &Delivery) -> Result<(), String> {
        match self.publish(job).await {
            Ok(()) => self.ack(delivery).await,
            Err(error) => {
                let _ = self.nack(delivery, true).await;
                Err(error)
            }
        }
    }

    /// Waits for room in the shared queue; false when the pipeline stopped meanwhile.
    async fn wait_room(&self) -> bool {
        self.until_stopped(self.queue.wait_room()).await.is_some()
            && !self.stopped.load(Ordering::Acquire)
    }

    /// `future`'s output, or None when the pipeline stops first (a dial, a back-off wait).
    /// An output that comes with the stop is still returned: a dialed link is closed by
    /// the install that finds the pipeline stopped, not dropped open.
    async fn until_stopped<F: std::future::Future>(&self, future: F) -> Option<F::Output> {
        // Made before the check: a stop in between wakes it.
        let stop = self.stop.notified();
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        tokio::select! {
            output = future => Some(output),
            () = stop => None,
        }
    }

    /// Takes out of the shared queue this pipeline's deliveries of dial `generation` (its
    /// connection is gone: their acks could not reach the broker, which delivers them
    /// again); how many.
    fn drop_deliveries_of(&self, generation: u64) -> usize {
        let pipeline = self.pipeline.as_ptr();
        self.queue.remove_where(|job| {
            std::ptr::eq(Arc::as_ptr(&job.pipeline), pipeline)
                && matches!(&job.receipt, Receipt::Amqp(delivery)
                    if !delivery.auto_acked && delivery.generation == generation)
        })
    }

    /// A delivery on `channel` of dial `generation` becomes a job in the shared queue
    /// (acknowledged first when it asks for auto-ack).
    async fn deliver(
        self: &Arc<Self>,
        delivery: lapin::message::Delivery,
        generation: u64,
        channel: &lapin::Channel,
    ) {
        let Some(pipeline) = self.pipeline.upgrade() else {
            return;
        };
        let received = headers::received(delivery.properties.headers().as_ref());
        let auto_acked = received.auto_ack;
        if auto_acked {
            if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
                tracing::error!(target: "jobs", pipeline = %self.name, %error, "auto-ack failed");
            }
        }
        let priority = received
            .priority
            .filter(|p| *p != 0)
            .unwrap_or(self.priority);
        let job = Job {
            id: received.id.unwrap_or_else(crate::uuid::new_v4),
            name: received.name.unwrap_or_else(|| "deduced_by_rr".to_owned()),
            payload: delivery.data,
            headers: received.headers,
            priority,
            delay: received.delay,
            auto_ack: auto_acked,
            pipeline,
            receipt: Receipt::Amqp(Delivery {
                acker: delivery.acker,
                auto_acked,
                generation,
                channel: channel.clone(),
            }),
        };
        self.queue.insert(job);
    }
}
