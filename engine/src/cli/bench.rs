//! `rr bench` (ours, not rr's): N synthetic payloads of a given size through the configured
//! pool and its real relay, no HTTP in between; prints throughput and latency percentiles
//! with a progress bar. What a user runs to see what one worker round trip costs.

use crate::plugins::http::HttpSection;
use crate::plugins::server::ServerPlugin;
use crate::plugins::Configured;
use crate::pool::{Pool, Request};
use crate::runtime::{ShardContext, Shards};
use ringrunner_protocol::http::{ContextCodec, CookieJar, HeaderTable, RequestContext};
use ringrunner_protocol::Flags;
use std::io::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What each payload looks like to the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PayloadKind {
    /// An `http.v1.Request` context (`POST http://bench.local/`) and the body: HTTP workers
    /// answer it as a request.
    Http,
    /// The body alone (raw codec): for plain goridge workers.
    Raw,
}

/// `rr bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Payloads to send.
    #[arg(short = 'n', long = "requests", default_value_t = 10_000)]
    pub requests: u64,
    /// Body bytes per payload.
    #[arg(long = "size", default_value_t = 1024)]
    pub size: usize,
    /// Payloads in flight (default: the pool's number of workers).
    #[arg(long = "concurrency")]
    pub concurrency: Option<usize>,
    /// Payload shape (default: http when the config has an `http` section, else raw).
    #[arg(long = "payload", value_enum)]
    pub payload: Option<PayloadKind>,
}

/// The outcome of a run.
#[derive(Debug)]
struct Outcome {
    /// Latencies of the successful payloads, in nanoseconds, sorted.
    latencies: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

/// Runs the benchmark with the loaded `config` on `shards`.
///
/// # Errors
/// No pool to drive, or a pool that cannot start.
pub fn run(config: &Configured, args: &BenchArgs, shards: &Arc<Shards>) -> Result<(), String> {
    let server = &config
        .get::<ServerPlugin>()
        .ok_or("rr bench needs the server section (server.command)")?
        .section;
    let http = config.get::<HttpSection>();
    let section = http.map(|http| http.pool.clone()).unwrap_or_default();
    let pool_config = section
        .pool_config("bench", server, None)
        .map_err(|error| format!("bench: {error}"))?;
    let workers = pool_config.num_workers;
    let kind = args.payload.unwrap_or(if http.is_some() {
        PayloadKind::Http
    } else {
        PayloadKind::Raw
    });
    let for_pool = Arc::clone(shards);
    let pool = shards
        .block_on(0, move |_| Pool::start(pool_config, for_pool))
        .map_err(|error| format!("bench: {error}"))?;
    let concurrency = args.concurrency.unwrap_or(workers).max(1);
    println!(
        "rr bench: {} payloads of {} B ({kind:?}) through {workers} workers of `{}`, {concurrency} in flight",
        args.requests,
        args.size,
        server.command.join(" ")
    );
    let codec = http.map_or(ContextCodec::Json, |http| http.context_codec);
    let outcome = drive(&pool, shards, args, (kind, codec), concurrency);
    let destroying = pool.clone();
    shards.block_on(0, move |_| async move { destroying.destroy().await });
    report(&outcome, args.requests);
    match (outcome.errors, outcome.first_error) {
        (0, _) => Ok(()),
        (errors, first) => Err(format!(
            "{errors} payloads failed; the first: {}",
            first.unwrap_or_default()
        )),
    }
}

fn drive(
    pool: &Pool,
    shards: &Shards,
    args: &BenchArgs,
    (kind, codec): (PayloadKind, ContextCodec),
    concurrency: usize,
) -> Outcome {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let receivers: Vec<_> = (0..concurrency)
        .map(|task| {
            let (pool, next, done) = (pool.clone(), Arc::clone(&next), Arc::clone(&done));
            let (requests, size) = (args.requests, args.size);
            shards.run_on(task % shards.count(), move |shard| {
                client(shard, pool, next, done, requests, size, (kind, codec))
            })
        })
        .collect();
    // The bar is redrawn ten times a second on a terminal; elsewhere only the last state.
    let live = rustix::termios::isatty(std::io::stderr());
    loop {
        let finished = done.load(Ordering::Relaxed);
        if live {
            progress(finished, args.requests, started.elapsed());
        }
        if finished >= args.requests {
            break;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    let mut outcome = Outcome {
        latencies: Vec::with_capacity(usize::try_from(args.requests).unwrap_or(0)),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    for receiver in receivers {
        if let Ok(client) = receiver.blocking_recv() {
            outcome.latencies.extend(client.latencies);
            outcome.errors += client.errors;
            outcome.first_error = outcome.first_error.or(client.first_error);
            outcome.elapsed = outcome.elapsed.max(client.finished.duration_since(started));
        }
    }
    progress(args.requests, args.requests, outcome.elapsed);
    eprintln!();
    outcome.latencies.sort_unstable();
    outcome
}

/// What one in-flight slot measured.
struct ClientOutcome {
    latencies: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    finished: Instant,
}

/// One in-flight slot: takes payload numbers until all are taken.
async fn client(
    shard: Rc<ShardContext>,
    pool: Pool,
    next: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    requests: u64,
    size: usize,
    (kind, context_codec): (PayloadKind, ContextCodec),
) -> ClientOutcome {
    let body = vec![b'x'; size];
    let mut context = Vec::new();
    let codec = match kind {
        PayloadKind::Http => {
            let (headers, cookies) = (HeaderTable::default(), CookieJar::default());
            RequestContext {
                remote_addr: "127.0.0.1",
                protocol: "HTTP/1.1",
                method: "POST",
                uri: "http://bench.local/",
                headers: headers.view(b""),
                cookies: &cookies,
                raw_query: "",
                parsed: false,
                uploads: None,
            }
            .encode(context_codec, &mut context);
            context_codec.flags()
        }
        PayloadKind::Raw => Flags::CODEC_RAW,
    };
    let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0, None);
    let mut response = Vec::new();
    while next.fetch_add(1, Ordering::Relaxed) < requests {
        let sent = Instant::now();
        let request = Request {
            codec,
            context: &context,
            body: &body,
            lent: None,
        };
        match pool.exec(&shard, request, &mut response).await {
            Ok(_) => latencies.push(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX)),
            Err(error) => {
                errors += 1;
                first_error.get_or_insert_with(|| error.to_string());
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    ClientOutcome {
        latencies,
        errors,
        first_error,
        finished: Instant::now(),
    }
}

/// `[#########               ]  3,500/10,000  12,345/s` on one line of stderr.
fn progress(done: u64, total: u64, elapsed: Duration) {
    const WIDTH: u64 = 40;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let bar: String = (0..WIDTH)
        .map(|i| if i < filled { '#' } else { ' ' })
        .collect();
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "\r[{bar}] {done}/{total}  {rate:.0}/s ");
    let _ = stderr.flush();
}

fn report(outcome: &Outcome, requests: u64) {
    let secs = outcome.elapsed.as_secs_f64();
    println!(
        "throughput: {:.0} payloads/s ({requests} in {secs:.2} s)",
        requests as f64 / secs.max(1e-9)
    );
    let at = |quantile: f64| -> f64 {
        let latencies = &outcome.latencies;
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() - 1) as f64 * quantile).round() as usize;
        latencies[index] as f64 / 1e6
    };
    println!(
        "latency: p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    println!("errors: {}", outcome.errors);
}
