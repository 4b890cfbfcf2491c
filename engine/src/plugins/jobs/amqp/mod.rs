//! The `amqp` driver (spec jobs-amqp): a pipeline on RabbitMQ. Each pipeline has its own
//! connection with a publish channel in confirm mode and, while it consumes, a consume
//! channel with `prefetch` unacknowledged deliveries at most; deliveries become jobs in the
//! shared queue and a worker's verdict becomes `basic.ack`, `basic.nack` or a republish.
//! Everything AMQP runs on a small runtime of its own; a lost connection is redialed with
//! back-off, and what was delivered but not acknowledged comes back from the broker.

pub mod config;
mod headers;
mod link;
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
            let mut link = inner.link.lock().await;
            *link = Some(Link::dial(&inner).await?);
            Ok(())
        })
        .await
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
                Some(link) => link.consume(&inner).await,
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
                link.cancel(&inner).await?;
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
            let link = inner.link.lock().await.take();
            if let Some(link) = link {
                link.close(&inner).await;
            }
            tracing::debug!(target: "jobs", pipeline = %inner.name, driver = "amqp", "pipeline was stopped");
            Ok(())
        });
        let _ = stopped.await;
    }

    /// `active` is what the broker has ready in the queue (a passive declare on a channel
    /// of its own, so a missing queue closes only that one), `delayed` this driver's count.
    ///
    /// # Errors
    /// The connection is down; the queue does not exist.
    pub async fn stat(&self) -> Result<PipelineStat, String> {
        let inner = Arc::clone(&self.inner);
        runtime::on(&self.runtime, async move {
            let ready = inner.consuming.load(Ordering::Acquire);
            let delayed = inner.delayed.load(Ordering::Acquire);
            let active = if inner.options.queue.is_empty() {
                if inner.link.lock().await.is_none() {
                    return Err("connection is closed, can't get the state".into());
                }
                0
            } else {
                let channel = {
                    let link = inner.link.lock().await;
                    let link = link
                        .as_ref()
                        .ok_or("connection is closed, can't get the state")?;
                    link.channel().await?
                };
                let count = link::ready_count(&channel, &inner.options.queue).await;
                let _ = channel.close(200, "OK".into()).await;
                u64::from(count?)
            };
            Ok(PipelineStat {
                queue: inner.options.queue.clone(),
                active,
                delayed,
                ready,
            })
        })
        .await
    }
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
        let stop = self.stop.notified();
        if self.stopped.load(Ordering::Acquire) {
            return false;
        }
        tokio::select! {
            () = self.queue.wait_room() => !self.stopped.load(Ordering::Acquire),
            () = stop => false,
        }
    }

    /// A delivery becomes a job in the shared queue (acknowledged first when it asks for
    /// auto-ack).
    async fn deliver(self: &Arc<Self>, delivery: lapin::message::Delivery) {
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
            }),
        };
        self.queue.insert(job);
    }
}
