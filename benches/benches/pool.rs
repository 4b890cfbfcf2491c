//! A pool exec round trip with 1 KiB through pipes to the native echo worker, beside a bare
//! pipe ping-pong of 1 KiB between two processes, measured in the same run (DESIGN.md's
//! budget: the round trip within 1.5x of the ping-pong).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringrunner::aio::Backend;
use ringrunner::pool::{Pool, PoolConfig, Request};
use ringrunner::runtime::Shards;
use ringrunner::worker::process::WorkerCommand;
use ringrunner_protocol::Flags;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MESSAGE_BYTES: usize = 1024;

fn echo_worker() -> String {
    env!("CARGO_BIN_EXE_native-echo-worker").to_owned()
}

fn pipe_ping_pong(c: &mut Criterion) {
    let mut child = Command::new(echo_worker())
        .args(["--ping-pong", &MESSAGE_BYTES.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the echo worker");
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = child.stdout.take().unwrap();
    let message = vec![0x5a; MESSAGE_BYTES];
    let mut back = vec![0; MESSAGE_BYTES];
    let mut group = c.benchmark_group("round_trip_1KiB");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pipe_ping_pong", |b| {
        b.iter(|| {
            to_child.write_all(&message).unwrap();
            from_child.read_exact(&mut back).unwrap();
        });
    });
    group.finish();
    drop(to_child);
    let _ = child.wait();
}

fn pool_exec(c: &mut Criterion) {
    let shards =
        Arc::new(Shards::start(1, Backend::from_env().expect("RINGRUNNER_IO")).expect("shards"));
    let mut config = PoolConfig::new(
        "bench",
        WorkerCommand {
            argv: vec![echo_worker()],
            ..WorkerCommand::default()
        },
    );
    config.num_workers = 1;
    let for_pool = Arc::clone(&shards);
    let pool = shards
        .block_on(0, move |_| Pool::start(config, for_pool))
        .expect("pool");
    let mut group = c.benchmark_group("round_trip_1KiB");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pool_exec", |b| {
        b.iter_custom(|iterations| {
            let pool = pool.clone();
            // The loop runs on the shard, as a plugin's request handling does.
            shards.block_on(0, move |shard| async move {
                let body = vec![0x5a; MESSAGE_BYTES];
                let mut response = Vec::with_capacity(MESSAGE_BYTES + 64);
                let started = Instant::now();
                for _ in 0..iterations {
                    let request = Request {
                        codec: Flags::CODEC_RAW,
                        context: b"",
                        body: &body,
                        lent: None,
                    };
                    pool.exec(&shard, request, &mut response)
                        .await
                        .expect("exec");
                }
                started.elapsed()
            })
        });
    });
    group.finish();
    let for_destroy = pool.clone();
    shards.block_on(0, move |_| async move { for_destroy.destroy().await });
    shards.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = pipe_ping_pong, pool_exec
}
criterion_main!(benches);
