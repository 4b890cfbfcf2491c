//! `rr serve` (spec config-cli-rpc §2.3) and `rr stop` (§2.6): start the configured plugins,
//! wait for a signal, stop them within the grace period.

use super::{prepare, Cli};
use crate::plugins::{logs, Configured, Lifecycle, Running};
use crate::runtime::Shards;
use std::sync::Arc;
use std::time::Duration;

/// The plugins that serve clients: a config needs one of them.
const SERVING_PLUGINS: [&str; 5] = ["http", "tcp", "grpc", "service", "jobs"];

/// Raises the soft limit on open files to the hard one, as Go's runtime does for rr: a
/// server holding thousands of connections must not fail at 1,024.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(%error, "could not raise the open files limit");
        }
    }
}

/// How long the exit waits for queued log lines to be written.
pub(super) const LOG_FLUSH_AT_EXIT: Duration = Duration::from_secs(2);

/// Prints one of rr's plain stdout notices ("RoadRunner server started", "stop signal
/// received") only if stdout can take it now: a full pipe nobody reads must not block the
/// thread that handles signals. A pipe that polls writable has room for PIPE_BUF bytes,
/// which a write this small never exceeds.
pub(super) fn print_notice(text: &str) {
    use rustix::event::{poll, PollFd, PollFlags};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if matches!(poll(&mut fds, Some(&zero)), Ok(1)) && fds[0].revents().contains(PollFlags::OUT) {
        let mut line = String::with_capacity(text.len() + 1);
        line.push_str(text);
        line.push('\n');
        let _ = std::io::Write::write_all(&mut stdout.lock(), line.as_bytes());
    }
}

/// `rr serve`.
pub(super) fn serve(cli: &Cli) -> Result<(), String> {
    let (configured, flusher) = prepare(cli)?;
    let outcome = serve_configured(cli, configured, &flusher);
    // The log lines queued so far come out before the caller prints an error.
    flusher.flush(LOG_FLUSH_AT_EXIT);
    outcome
}

fn serve_configured(
    cli: &Cli,
    mut configured: Configured,
    flusher: &logs::LogFlusher,
) -> Result<(), String> {
    configured.drop_server_dependents_without_server();
    if !SERVING_PLUGINS.iter().any(|name| configured.has(name)) {
        // rr starts whatever has a section and idles (a kv or lock sidecar over RPC, a
        // metrics exporter, Octane's config of `-o` flags); the warnings above name the
        // sections not recognised, so a typo (`htttp:`) still shows. With RPC on, the
        // plugins it serves (kv, lock, jobs pushes) are the point: no warning then.
        let text = format!(
            "no plugin of this configuration serves requests ({}): running the others until \
             a stop signal",
            SERVING_PLUGINS.join(", ")
        );
        if configured.has("rpc") {
            tracing::debug!("{text}");
        } else {
            tracing::warn!("{text}");
        }
    }
    raise_open_file_limit();
    if cli.debug {
        tracing::warn!("-d (pprof server) is not supported by ringrunner; ignored");
    }
    let grace = configured.grace_period;
    // Caught from before the plugins start: a SIGTERM while they start is handled once they
    // have, instead of killing the process half-started with the default action.
    let stop_signals = catch_stop_signals()?;
    let shards = Arc::new(super::start_shards()?);
    let lifecycle = Arc::new(Lifecycle::default());
    let running = match Running::start(configured.plugins, &shards, &lifecycle) {
        Ok(running) => running,
        Err(error) => {
            shards.shutdown();
            return Err(error);
        }
    };
    if cli.pid {
        std::fs::write(".pid", std::process::id().to_string())
            .map_err(|error| format!("write .pid: {error}"))?;
    }
    if !cli.silent {
        print_notice(&format!(
            "[INFO] RoadRunner server started; version: {} (ringrunner {}), buildtime: {}",
            crate::RR_COMPATIBLE_VERSION,
            crate::VERSION,
            option_env!("RINGRUNNER_BUILD_TIME").unwrap_or("unknown")
        ));
    }
    let outcome = wait_and_stop(stop_signals, grace, &shards, &lifecycle, &running, flusher);
    if cli.pid {
        let _ = std::fs::remove_file(".pid");
    }
    outcome
}

/// Waits for a stop signal, then stops gracefully within `grace_period`; a second signal
/// forces the exit (workers are SIGKILLed first: they live in their own process groups).
/// SIGINT, SIGTERM, SIGQUIT and SIGABRT, caught on a small runtime of the main thread.
struct StopSignals {
    runtime: tokio::runtime::Runtime,
    signals: Vec<tokio::signal::unix::Signal>,
}

fn catch_stop_signals() -> Result<StopSignals, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::quit(),
        SignalKind::from_raw(rustix::process::Signal::ABORT.as_raw()),
    ];
    let signals = {
        let _entered = runtime.enter();
        kinds
            .into_iter()
            .map(signal)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?
    };
    Ok(StopSignals { runtime, signals })
}

fn wait_and_stop(
    stop_signals: StopSignals,
    grace: Duration,
    shards: &Arc<Shards>,
    lifecycle: &Arc<Lifecycle>,
    running: &Running,
    flusher: &logs::LogFlusher,
) -> Result<(), String> {
    let StopSignals {
        runtime,
        mut signals,
    } = stop_signals;
    runtime.block_on(async {
        next_signal(&mut signals).await;
        print_notice(&format!(
            "stop signal received, grace timeout is: {} seconds",
            grace.as_secs()
        ));
        lifecycle.begin_stop();
        let stop = async {
            let _ = tokio::time::timeout(grace, lifecycle.drained()).await;
            running.stop(shards).await;
        };
        let deadline = tokio::time::timeout(grace, stop);
        tokio::select! {
            finished = deadline => {
                if finished.is_err() {
                    running.kill_all();
                    shards.shutdown();
                    return Err("stop: grace period exceeded, workers killed".to_owned());
                }
            }
            () = next_signal(&mut signals) => {
                print_notice("exit forced");
                running.kill_all();
                flusher.flush(Duration::from_millis(200));
                std::process::exit(1);
            }
        }
        shards.shutdown();
        Ok(())
    })
}

/// Resolves when any of `signals` arrives.
async fn next_signal(signals: &mut [tokio::signal::unix::Signal]) {
    std::future::poll_fn(|cx| {
        for signal in signals.iter_mut() {
            if signal.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await;
}

/// `rr stop`: SIGTERM to the pid in `.pid`; with `-f` a second one after a second.
pub(super) fn stop(cli: &Cli) -> Result<(), String> {
    let _ = super::enter_work_dir(cli);
    let text = std::fs::read_to_string(".pid").map_err(|_| {
        "open .pid: no such file or directory, to create a .pid file, you must run RR with the following options: './rr serve -p'".to_owned()
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid pid in .pid: {text}"))?;
    let pid = rustix::process::Pid::from_raw(pid).ok_or("invalid pid 0 in .pid")?;
    if !cli.silent {
        eprintln!(
            "{} stopping process with PID: {}",
            super::go_log_time(),
            pid.as_raw_nonzero()
        );
    }
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)
        .map_err(|error| format!("kill: {error}"))?;
    if cli.force {
        std::thread::sleep(Duration::from_secs(1));
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    Ok(())
}
