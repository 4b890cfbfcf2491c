//! A pipeline's connection to the broker (spec jobs-amqp §3, §4): the dial (exchange,
//! publish channel in confirm mode, bounded by a timeout), the consumer and its listener,
//! publishing. The redial when the connection or one of its channels fails is in
//! `redial.rs`.

use super::super::pipeline::Job;
use super::config::short;
use super::headers;
use super::redial::{redial, watch};
use super::Inner;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::PublisherConfirm;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long closing a connection may take before it is dropped instead.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// How long a dial (TCP, the AMQP handshake, the exchange, the channels) may take: the
/// default dial timeout of rr's client (amqp091-go).
const DIAL_WITHIN: Duration = Duration::from_secs(30);
/// How long a control-plane call (Stat's passive declare, Pause's cancel, Resume's
/// consume) waits for the broker before it answers without it.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// A live connection and its channels.
pub struct Link {
    connection: Connection,
    publish: Channel,
    /// The consume channel, kept while paused: jobs taken before are settled on it.
    consume: Option<Channel>,
    /// A consumer is on the consume channel.
    pub(super) consuming: bool,
    /// The dial's number.
    pub(super) generation: u64,
}

fn amqp_error(what: &str) -> impl Fn(lapin::Error) -> String + '_ {
    move |error| format!("{what}: {error}")
}

impl Link {
    /// Dials the broker: the exchange, the publish channel, consuming when the pipeline
    /// does; a watcher redials when the connection or a channel of it fails. (Boxed: the
    /// watcher it spawns may dial again, and a future cannot contain itself.)
    pub fn dial(
        inner: &Arc<Inner>,
    ) -> Pin<Box<dyn Future<Output = Result<Self, String>> + Send + '_>> {
        Box::pin(async move {
            tokio::time::timeout(DIAL_WITHIN, Self::dial_now(inner))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "amqp dial {}: no answer within {DIAL_WITHIN:?}",
                        redacted(&inner.options.addr)
                    ))
                })
        })
    }

    async fn dial_now(inner: &Arc<Inner>) -> Result<Self, String> {
        let options = &inner.options;
        let generation = inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let connection = Connection::connect(&options.addr, ConnectionProperties::default())
            .await
            .map_err(|error| format!("amqp dial {}: {error}", redacted(&options.addr)))?;
        let declare = connection
            .create_channel()
            .await
            .map_err(amqp_error("channel"))?;
        declare
            .exchange_declare(
                short(&options.exchange)?,
                exchange_kind(&options.exchange_type),
                ExchangeDeclareOptions {
                    durable: options.exchange_durable,
                    auto_delete: options.exchange_auto_delete,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("exchange.declare"))?;
        let _ = declare.close(200, "OK".into()).await;
        let publish = connection
            .create_channel()
            .await
            .map_err(amqp_error("channel"))?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|error| {
                format!("failed to turn on publisher confirms on the channel: {error}")
            })?;
        let mut link = Self {
            connection,
            publish,
            consume: None,
            consuming: false,
            generation,
        };
        if inner.consuming.load(Ordering::Acquire) {
            link.consume(inner).await?;
        }
        let events = link.connection.events_listener();
        tokio::spawn(watch(Arc::clone(inner), Box::pin(events), generation));
        Ok(link)
    }

    /// A fresh channel on this connection.
    pub async fn channel(&self) -> Result<Channel, String> {
        self.connection
            .create_channel()
            .await
            .map_err(amqp_error("channel"))
    }

    /// Declares and binds the queue, then consumes it (`basic.qos` prefetch) on the consume
    /// channel, with a listener that moves deliveries to the shared queue. (Boxed: the
    /// listener may redial, and a redial consumes again.)
    pub fn consume<'a>(
        &'a mut self,
        inner: &'a Arc<Inner>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.consume_now(inner))
    }

    async fn consume_now(&mut self, inner: &Arc<Inner>) -> Result<(), String> {
        let options = &inner.options;
        let queue = short(&options.queue)?;
        let declare = self.channel().await?;
        declare
            .queue_declare(
                queue.clone(),
                QueueDeclareOptions {
                    durable: options.durable,
                    exclusive: options.exclusive,
                    auto_delete: options.queue_auto_delete,
                    ..QueueDeclareOptions::default()
                },
                options.queue_headers.clone(),
            )
            .await
            .map_err(amqp_error("queue.declare"))?;
        declare
            .queue_bind(
                queue.clone(),
                short(&options.exchange)?,
                short(&options.routing_key)?,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("queue.bind"))?;
        let _ = declare.close(200, "OK".into()).await;
        let channel = match &self.consume {
            Some(channel) if channel.status().connected() => channel.clone(),
            _ => {
                let channel = self.channel().await?;
                let prefetch = qos_prefetch(options.prefetch, inner.queue.capacity());
                channel
                    .basic_qos(prefetch, BasicQosOptions::default())
                    .await
                    .map_err(amqp_error("basic.qos"))?;
                channel
            }
        };
        let consumer = channel
            .basic_consume(
                queue,
                short(&options.consumer_id)?,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("basic.consume"))?;
        self.consume = Some(channel.clone());
        self.consuming = true;
        tokio::spawn(listen(
            Arc::clone(inner),
            consumer,
            self.generation,
            channel,
        ));
        tracing::debug!(target: "jobs", pipeline = %inner.name, driver = "amqp", "pipeline was started");
        Ok(())
    }

    /// Cancels the consumer; its channel stays for the acks of jobs already taken.
    pub async fn cancel(&mut self, inner: &Inner) -> Result<(), String> {
        let Some(channel) = &self.consume else {
            return Ok(());
        };
        self.consuming = false;
        let cancelled = channel
            .basic_cancel(
                short(&inner.options.consumer_id)?,
                BasicCancelOptions::default(),
            )
            .await;
        if let Err(error) = cancelled {
            let _ = channel.close(200, "OK".into()).await;
            self.consume = None;
            return Err(format!("basic.cancel: {error}"));
        }
        Ok(())
    }

    /// Cancels, deletes the queue when configured so, closes the connection.
    pub async fn close(mut self, inner: &Inner) {
        let close = async {
            let _ = self.cancel(inner).await;
            if inner.options.delete_queue_on_stop && !inner.options.queue.is_empty() {
                if let Ok(queue) = short(&inner.options.queue) {
                    if let Err(error) = self
                        .publish
                        .queue_delete(queue, QueueDeleteOptions::default())
                        .await
                    {
                        tracing::error!(target: "jobs", pipeline = %inner.name, %error, "queue.delete");
                    }
                }
            }
            let _ = self.connection.close(200, "OK".into()).await;
        };
        let _ = tokio::time::timeout(CLOSE_WITHIN, close).await;
    }

    /// Closes the connection of a link that failed (a redial replaces it): the broker takes
    /// back what it delivered and was not acknowledged, and the old consumer stops (a
    /// connection that only lost a channel would otherwise keep delivering to it); the
    /// queue stays.
    pub async fn abandon(self) {
        let _ = tokio::time::timeout(CLOSE_WITHIN, self.connection.close(200, "OK".into())).await;
    }

    /// True while the connection and the channels it needs are open.
    pub(super) fn healthy(&self) -> bool {
        self.connection.status().connected()
            && self.publish.status().connected()
            && self
                .consume
                .as_ref()
                .is_none_or(|channel| channel.status().connected())
    }

    /// Publishes `job` to `exchange` with rr's properties; the confirm is the caller's to
    /// await (outside the lock, so publishes overlap).
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        job: &Job,
    ) -> Result<PublisherConfirm, String> {
        self.publish
            .basic_publish(
                short(exchange)?,
                short(routing_key)?,
                BasicPublishOptions::default(),
                &job.payload,
                properties(job),
            )
            .await
            .map_err(amqp_error("basic.publish"))
    }

    /// A delayed job goes to `delayed-<ms>.<exchange>.<queue>`, a queue whose messages
    /// expire after the delay into the exchange with the job's routing key. A routing key
    /// other than the pipeline's gets a queue of its own (rr's shared name made RabbitMQ
    /// refuse the second declare); on a fanout exchange the delay queue is reached through
    /// the default exchange, so it does not receive every message of the fanout.
    pub async fn publish_delayed(
        &self,
        inner: &Inner,
        job: &Job,
        routing_key: &str,
    ) -> Result<PublisherConfirm, String> {
        let options = &inner.options;
        let ms = job.delay.saturating_mul(1000);
        let tail = if options.queue.is_empty() {
            &options.routing_key
        } else {
            &options.queue
        };
        let mut name = format!("delayed-{ms}.{}.{tail}", options.exchange);
        if routing_key != options.routing_key {
            name.push('.');
            name.push_str(routing_key);
        }
        let delay_queue = short(&name)?;
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from(options.exchange.as_str())),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(LongString::from(routing_key)),
        );
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms));
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(ms.saturating_mul(2)),
        );
        self.publish
            .queue_declare(
                delay_queue.clone(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .map_err(amqp_error("queue.declare"))?;
        if options.exchange_type == "fanout" {
            return self.publish("", &name, job).await;
        }
        self.publish
            .queue_bind(
                delay_queue.clone(),
                short(&options.exchange)?,
                delay_queue,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("queue.bind"))?;
        self.publish(&options.exchange, &name, job).await
    }
}

/// The consume channel's `basic.qos` prefetch count: the configured one, and for 0 (rr's
/// "unlimited", which let the broker push a whole queue into this process) the shared
/// queue's capacity, so what waits in the client for room is bounded too.
fn qos_prefetch(prefetch: u16, pipeline_size: usize) -> u16 {
    if prefetch > 0 {
        return prefetch;
    }
    u16::try_from(pipeline_size).unwrap_or(u16::MAX).max(1)
}

/// Messages ready in `queue` (a passive declare on `channel`).
pub async fn ready_count(channel: &Channel, queue: &str) -> Result<u32, String> {
    channel
        .queue_declare(
            short(queue)?,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map(|queue| queue.message_count())
        .map_err(amqp_error("queue.declare"))
}

fn properties(job: &Job) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/octet-stream".into())
        .with_delivery_mode(2)
        .with_timestamp(crate::clock::unix_now().as_secs())
        .with_headers(headers::table(job))
}

fn exchange_kind(kind: &str) -> ExchangeKind {
    match kind {
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "topic" => ExchangeKind::Topic,
        "headers" => ExchangeKind::Headers,
        other => ExchangeKind::Custom(other.to_owned()),
    }
}

/// The URI without its password, for logs and errors.
fn redacted(addr: &str) -> String {
    match (addr.find("://"), addr.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &addr[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &addr[..scheme + 3], &addr[at..]),
                None => addr.to_owned(),
            }
        }
        _ => addr.to_owned(),
    }
}

/// Moves deliveries to the shared queue until the consumer ends: cancelled (pause, stop)
/// or failed (then the link is redialed). A delivery waits for room in the shared queue
/// before it is acknowledged (auto-ack) and queued, and the next is not read meanwhile:
/// consuming stops at `pipeline_size`, whatever the ack mode, and the broker keeps the rest
/// (rr's insert blocks the same way).
async fn listen(
    inner: Arc<Inner>,
    mut consumer: lapin::Consumer,
    generation: u64,
    channel: Channel,
) {
    loop {
        match poll_fn(|cx| Pin::new(&mut consumer).poll_next(cx)).await {
            Some(Ok(delivery)) => {
                if !inner.wait_room().await {
                    // Stopped: not acknowledged, the broker takes it back with the connection.
                    break;
                }
                inner.deliver(delivery, generation, &channel).await;
            }
            Some(Err(error)) => {
                if !inner.stopped.load(Ordering::Acquire) {
                    let inner = Arc::clone(&inner);
                    let error = error.to_string();
                    tokio::spawn(async move { redial(&inner, generation, &error).await });
                }
                break;
            }
            None => break,
        }
    }
    tracing::debug!(target: "jobs", pipeline = %inner.name, "delivery channel was closed, leaving the AMQP listener");
}

use futures_core::Stream as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redacted("amqp://guest:secret@127.0.0.1:5672/"),
            "amqp://guest:***@127.0.0.1:5672/"
        );
        assert_eq!(redacted("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }

    #[test]
    fn prefetch_zero_is_bounded_by_the_pipeline_size() {
        assert_eq!(qos_prefetch(20, 100), 20);
        assert_eq!(qos_prefetch(0, 100), 100);
        assert_eq!(qos_prefetch(0, 1_000_000), u16::MAX);
    }
}
