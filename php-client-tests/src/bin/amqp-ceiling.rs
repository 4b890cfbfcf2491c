//! The jobs benchmark's ceiling for the amqp driver: a plain consumer on the same AMQP
//! client, with no PHP hop. It declares and binds the queue, consumes COUNT messages with
//! `prefetch` unacknowledged at most, acks each, and appends each one's push-to-ack latency
//! (the payload starts with the push time, as the PHP producer writes it) to a file.
//!
//! Usage: amqp-ceiling URI EXCHANGE QUEUE ROUTING_KEY PREFETCH COUNT LATENCY_FILE

use futures_core::Stream;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use std::io::Write;
use std::pin::Pin;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [uri, exchange, queue, routing_key, prefetch, count, latency_file] = args.as_slice() else {
        eprintln!("usage: amqp-ceiling URI EXCHANGE QUEUE ROUTING_KEY PREFETCH COUNT LATENCY_FILE");
        std::process::exit(2);
    };
    let prefetch: u16 = prefetch.parse().expect("PREFETCH is a number");
    let count: usize = count.parse().expect("COUNT is a number");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let latencies = runtime.block_on(async {
        let connection = Connection::connect(uri, ConnectionProperties::default())
            .await
            .expect("broker dialed");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("exchange.declare");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("queue.declare");
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("queue.bind");
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .expect("basic.qos");
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "amqp-ceiling".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("basic.consume");
        // Ready: the producer may start.
        println!("consuming");
        let mut latencies = Vec::with_capacity(count);
        while latencies.len() < count {
            let delivery = std::future::poll_fn(|cx| Pin::new(&mut consumer).poll_next(cx))
                .await
                .expect("the consumer stays open")
                .expect("a delivery");
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            let pushed: f64 = String::from_utf8_lossy(&delivery.data)
                .split(' ')
                .next()
                .and_then(|time| time.parse().ok())
                .unwrap_or(0.0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            latencies.push(now - pushed);
        }
        latencies
    });
    let mut file = std::fs::File::create(latency_file).expect("latency file");
    for latency in latencies {
        let _ = writeln!(file, "{latency:.6}");
    }
}
