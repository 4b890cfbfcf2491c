//! The amqp tests' rig: a server with the jobs plugin on a private RabbitMQ node, the RPC
//! calls the tests make, and the waits on the broker's and the server's figures.

use php_client_tests::jobs_log::taken;
pub use php_client_tests::jobs_log::wait_until;
use php_client_tests::rabbitmq::RabbitMq;
use php_client_tests::server::{free_port, scratch_dir, worker_command, RrServer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Jobs {
    pub server: RrServer,
    pub dsn: String,
    pub log: PathBuf,
}

/// A pipeline `emails` on queue `emails-q` (exchange `rr-exchange`, key `emails`) with
/// `options` (lines under its `config:`, indented 8).
pub fn emails(options: &str) -> String {
    format!("    emails:\n      driver: amqp\n      config:\n        queue: emails-q\n        exchange: rr-exchange\n        routing_key: emails\n{options}")
}

pub fn config(
    broker: &RabbitMq,
    workers: usize,
    pipelines: &str,
    consume: &str,
    log: &Path,
    dsn: &str,
) -> String {
    format!(
        "version: \"3\"\nrpc:\n  listen: {dsn}\nserver:\n  command: \"{}\"\n  env:\n    - JOBS_LOG: {}\namqp:\n  addr: {}\njobs:\n  pool:\n    num_workers: {workers}\n  consume: [{consume}]\n  pipelines:\n{pipelines}logs:\n  level: debug\n",
        worker_command("jobs.php"),
        log.display(),
        broker.uri(),
    )
}

pub fn start(broker: &RabbitMq, workers: usize, pipelines: &str, consume: &str) -> Jobs {
    start_with_jobs_lines(broker, workers, pipelines, consume, "")
}

/// As [`start`], with `lines` (indented 2) added to the `jobs` section.
pub fn start_with_jobs_lines(
    broker: &RabbitMq,
    workers: usize,
    pipelines: &str,
    consume: &str,
    lines: &str,
) -> Jobs {
    let log = scratch_dir().join("jobs.log");
    let dsn = format!("tcp://127.0.0.1:{}", free_port());
    let yaml = config(broker, workers, pipelines, consume, &log, &dsn)
        .replace("\njobs:\n", &format!("\njobs:\n{lines}"));
    Jobs {
        server: RrServer::start_with(&yaml, &[])
            .unwrap_or_else(|(status, output)| panic!("rr did not start ({status}):\n{output}")),
        dsn,
        log,
    }
}

/// Held by the tests that load the machine (thousands of jobs) and the one that times
/// delays, so that they do not run at once: the timing would measure the load.
pub fn alone() -> std::sync::MutexGuard<'static, ()> {
    static MACHINE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    MACHINE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn broker() -> Option<RabbitMq> {
    RabbitMq::start(&scratch_dir().join("rabbitmq"))
}

pub fn call(jobs: &Jobs, args: &[&str]) -> Result<Value, String> {
    php_client_tests::jobs_log::call(&jobs.dsn, args)
}

pub fn stat(jobs: &Jobs, pipeline: &str) -> Value {
    call(jobs, &["stat"]).unwrap()[pipeline].clone()
}

/// The runs of `id` in the log, their times.
pub fn runs(log: &Path, id: &str) -> Vec<f64> {
    taken(log)
        .iter()
        .filter(|line| line["id"] == id)
        .map(|line| line["at"].as_f64().unwrap())
        .collect()
}

pub fn wait_runs(log: &Path, id: &str, count: usize) -> Vec<f64> {
    wait_until(
        &format!("{count} runs of {id}"),
        Duration::from_secs(10),
        || runs(log, id).len() >= count,
    );
    runs(log, id)
}

/// What PHP's `AMQPCreateInfo` sends for a pipeline named `declared` (its defaults, with
/// `queue_headers` as `[]`), routing key `declared`, queue deleted on stop.
pub const DECLARE: &str = r#"{"name":"declared","driver":"amqp","priority":"3","prefetch":"100","queue":"declared-q","queue_auto_delete":"false","exchange":"amqp.default","exchange_durable":"false","exchange_type":"direct","exchange_auto_delete":"false","routing_key":"declared","exclusive":"false","multiple_ack":"false","requeue_on_fail":"false","durable":"false","consume_all":"false","queue_headers":"[]","delete_queue_on_stop":"true","redial_timeout":"60"}"#;
