//! A load client for the tcp plugin: CONNECTIONS connections, each sending a SIZE-byte line
//! (`x…x\r\n`) and waiting for its echo, for SECONDS seconds; prints messages per second
//! and the latency percentiles of one round trip, one `key=value` line.
//!
//! Usage: tcp-load ADDRESS CONNECTIONS SECONDS SIZE

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, connections, seconds, size] = args.as_slice() else {
        eprintln!("usage: tcp-load ADDRESS CONNECTIONS SECONDS SIZE");
        std::process::exit(2);
    };
    let connections: usize = connections.parse().expect("CONNECTIONS");
    let duration = Duration::from_secs_f64(seconds.parse().expect("SECONDS"));
    let size: usize = size.parse::<usize>().expect("SIZE").max(3);
    let mut message = vec![b'x'; size - 2];
    message.extend_from_slice(b"\r\n");
    let started = Instant::now();
    let deadline = started + duration;
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (address, message) = (address.clone(), message.clone());
            std::thread::spawn(move || round_trips(&address, &message, deadline))
        })
        .collect();
    let mut latencies: Vec<u64> = Vec::new();
    for thread in threads {
        latencies.extend(thread.join().expect("a client thread"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |ns| *ns as f64 / 1e6)
    };
    println!(
        "messages={} msgs_per_s={:.0} p50_ms={:.3} p99_ms={:.3}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(0.50),
        percentile(0.99)
    );
}

/// One connection's round trips until `deadline`, each in nanoseconds.
fn round_trips(address: &str, message: &[u8], deadline: Instant) -> Vec<u64> {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut reply = vec![0; message.len()];
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let sent = Instant::now();
        if stream.write_all(message).is_err() || stream.read_exact(&mut reply).is_err() {
            break;
        }
        latencies.push(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    latencies
}
