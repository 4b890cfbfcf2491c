//! The `rr` command line (spec config-cli-rpc §2): global flags as rr's, `serve`, `stop`,
//! `--version`, and our `bench`.

mod bench;

use crate::config::Config;
use crate::plugins::http::HttpPlugin;
use crate::plugins::status::{Checked, StatusPlugin};
use crate::plugins::{logs, Lifecycle};
use crate::pool::Pool;
use crate::runtime::Shards;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `rr`: a RoadRunner-compatible PHP application server.
#[derive(Debug, Parser)]
#[command(name = "rr", disable_version_flag = true)]
pub struct Cli {
    /// Config file.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = ".rr.yaml"
    )]
    pub config: String,
    /// Working directory (rr changes into the config file's directory otherwise).
    #[arg(short = 'w', long = "WorkDir", global = true)]
    pub work_dir: Option<PathBuf>,
    /// `key.path=value`, repeatable.
    #[arg(short = 'o', long = "override", global = true)]
    pub overrides: Vec<String>,
    /// A dotenv file loaded before the config (DOTENV_PATH wins).
    #[arg(long = "dotenv", global = true)]
    pub dotenv: Option<PathBuf>,
    /// No informational output on stdout.
    #[arg(short = 's', long = "silent", global = true)]
    pub silent: bool,
    /// rr's pprof server: accepted, not served.
    #[arg(short = 'd', long = "debug", global = true)]
    pub debug: bool,
    /// Write the pid to `.pid`.
    #[arg(short = 'p', long = "pid", global = true)]
    pub pid: bool,
    /// Experimental features.
    #[arg(short = 'e', long = "enable-experimental", global = true)]
    pub experimental: bool,
    /// Used by `stop`.
    #[arg(short = 'f', long = "force", global = true)]
    pub force: bool,
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server.
    Serve,
    /// Stop the server whose pid is in `.pid`.
    Stop,
    /// Print the version.
    Version,
    /// Send synthetic payloads through the configured pool and print throughput and
    /// latency (ringrunner's own; rr has no such verb).
    Bench(bench::BenchArgs),
}

/// Runs the command line; returns the exit status.
#[must_use]
pub fn main(cli: Cli) -> i32 {
    if cli.version {
        println!("{}", crate::version_line());
        return 0;
    }
    let result = match cli.command {
        Some(Command::Serve) => serve(&cli),
        Some(Command::Stop) => stop(&cli),
        Some(Command::Bench(ref args)) => run_bench(&cli, args),
        Some(Command::Version) => {
            println!("{}", crate::version_line());
            Ok(())
        }
        None => {
            eprintln!("usage: rr [flags] serve | stop | version | bench (rr --help)");
            return 1;
        }
    };
    match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error}");
            1
        }
    }
}

/// Changes directory as rr does and returns the config path: `-w` first, else the config
/// file's own directory.
fn enter_work_dir(cli: &Cli) -> Result<PathBuf, String> {
    if cli.config.is_empty() {
        return Err("no configuration file provided".into());
    }
    if let Some(dir) = &cli.work_dir {
        std::env::set_current_dir(dir)
            .map_err(|error| format!("chdir {}: {error}", dir.display()))?;
    }
    let path = std::path::absolute(&cli.config).map_err(|error| error.to_string())?;
    if cli.work_dir.is_none() {
        if let Some(dir) = path.parent().filter(|dir| dir.is_dir()) {
            std::env::set_current_dir(dir)
                .map_err(|error| format!("chdir {}: {error}", dir.display()))?;
        }
    }
    Ok(path)
}

/// The variables of a dotenv file that the environment does not already set (spec
/// config-cli-rpc §1.5: the environment wins). They are not written into this process's
/// environment (that is unsound once threads run); config expansion reads them beside it,
/// and workers and `on_init` get them as inherited variables under their own `env`.
fn load_dotenv(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|_| format!("open {}: no such file or directory", path.display()))?;
    let mut vars: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((key, value)) = line.split_once('=') {
            let key = key.trim();
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            if std::env::var_os(key).is_none() {
                vars.retain(|(known, _)| known != key);
                vars.push((key.to_owned(), value.to_owned()));
            }
        }
    }
    Ok(vars)
}

fn shard_count() -> usize {
    std::env::var("RINGRUNNER_SHARDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|count| *count > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Changes directory, loads the dotenv file and the config, installs the logger.
fn prepare(cli: &Cli) -> Result<(Config, logs::LogFlusher), String> {
    let config_path = enter_work_dir(cli)?;
    let dotenv = std::env::var_os("DOTENV_PATH")
        .map(PathBuf::from)
        .or_else(|| cli.dotenv.clone());
    let dotenv_vars = match dotenv {
        Some(dotenv) => load_dotenv(&dotenv)?,
        None => Vec::new(),
    };
    let env = |name: &str| {
        std::env::var(name).ok().or_else(|| {
            dotenv_vars
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    };
    let mut config =
        Config::load_file(&config_path, &cli.overrides, &env).map_err(|e| e.to_string())?;
    config.inherit_env(&dotenv_vars);
    let flusher = logs::install(&config.logs)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    Ok((config, flusher))
}

/// How long the exit waits for queued log lines to be written.
const LOG_FLUSH_AT_EXIT: Duration = Duration::from_secs(2);

/// Prints one of rr's plain stdout notices ("RoadRunner server started", "stop signal
/// received") only if stdout can take it now: a full pipe nobody reads must not block the
/// thread that handles signals. A pipe that polls writable has room for PIPE_BUF bytes,
/// which a write this small never exceeds.
fn print_notice(text: &str) {
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

fn run_bench(cli: &Cli, args: &bench::BenchArgs) -> Result<(), String> {
    let (config, flusher) = prepare(cli)?;
    let outcome = Shards::start(shard_count())
        .map_err(|e| e.to_string())
        .and_then(|shards| {
            let shards = Arc::new(shards);
            let outcome = bench::run(&config, args, &shards);
            shards.shutdown();
            outcome
        });
    flusher.flush(LOG_FLUSH_AT_EXIT);
    outcome
}

fn serve(cli: &Cli) -> Result<(), String> {
    let (config, flusher) = prepare(cli)?;
    let outcome = serve_config(cli, &config, &flusher);
    // The log lines queued so far come out before the caller prints an error.
    flusher.flush(LOG_FLUSH_AT_EXIT);
    outcome
}

fn serve_config(cli: &Cli, config: &Config, flusher: &logs::LogFlusher) -> Result<(), String> {
    if config.http.is_none() {
        // A server that says "started" and serves nothing hides a typo (`htttp:`) until
        // the first request fails; the warnings above name the sections not recognised.
        return Err(
            "serve: nothing to serve: the configuration has no http section (the one plugin \
             that serves requests in this version)"
                .into(),
        );
    }
    if cli.debug {
        tracing::warn!("-d (pprof server) is not supported by ringrunner; ignored");
    }
    if let Some(on_init) = config.server.as_ref().and_then(|s| s.on_init.as_ref()) {
        crate::worker::on_init::run(on_init).map_err(|e| e.to_string())?;
    }
    let shards = Arc::new(Shards::start(shard_count()).map_err(|e| e.to_string())?);
    let lifecycle = Arc::new(Lifecycle::default());
    let started = start_plugins(config, &shards, &lifecycle);
    let (pools, _http, _status) = match started {
        Ok(started) => started,
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
            "[INFO] RoadRunner server started; version: {}, buildtime: {}",
            crate::VERSION,
            option_env!("RINGRUNNER_BUILD_TIME").unwrap_or("unknown")
        ));
    }
    let outcome = wait_and_stop(config, &shards, &lifecycle, &pools, flusher);
    if cli.pid {
        let _ = std::fs::remove_file(".pid");
    }
    outcome
}

type Started = (Vec<Pool>, Option<HttpPlugin>, Option<StatusPlugin>);

fn start_plugins(
    config: &Config,
    shards: &Arc<Shards>,
    lifecycle: &Arc<Lifecycle>,
) -> Result<Started, String> {
    let mut pools = Vec::new();
    let mut checked = Vec::new();
    let http = match &config.http {
        Some(section) => {
            let server = config
                .server
                .as_ref()
                .ok_or("http plugin needs the server section (server.command)")?;
            let pool_config = section
                .pool
                .pool_config("http", server, config.rpc_listen.as_deref())
                .map_err(|error| format!("http_plugin_serve: {error}"))?;
            let for_pool = Arc::clone(shards);
            let pool = shards
                .block_on(0, move || Pool::start(pool_config, for_pool))
                .map_err(|error| format!("http_plugin_serve: {error}"))?;
            pools.push(pool.clone());
            checked.push(Checked {
                name: "http".into(),
                pool: pool.clone(),
            });
            let plugin = HttpPlugin::start(section.clone(), pool, shards, Arc::clone(lifecycle));
            match plugin {
                Ok(plugin) => Some(plugin),
                Err(error) => {
                    destroy_pools(shards, &pools);
                    return Err(error);
                }
            }
        }
        None => None,
    };
    let status = match &config.status {
        Some(section) => {
            match StatusPlugin::start(section.clone(), checked, shards, Arc::clone(lifecycle)) {
                Ok(plugin) => {
                    tracing::info!(target: "status", address = %plugin.address(), "status server listening");
                    Some(plugin)
                }
                Err(error) => {
                    destroy_pools(shards, &pools);
                    return Err(error);
                }
            }
        }
        None => None,
    };
    Ok((pools, http, status))
}

fn destroy_pools(shards: &Shards, pools: &[Pool]) {
    for pool in pools {
        let pool = pool.clone();
        shards.block_on(0, move || async move { pool.destroy().await });
    }
}

/// Waits for a stop signal, then stops gracefully within `grace_period`; a second signal
/// forces the exit (workers are SIGKILLed first: they live in their own process groups).
fn wait_and_stop(
    config: &Config,
    shards: &Arc<Shards>,
    lifecycle: &Arc<Lifecycle>,
    pools: &[Pool],
    flusher: &logs::LogFlusher,
) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let kinds = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::quit(),
            SignalKind::from_raw(rustix::process::Signal::ABORT.as_raw()),
        ];
        let mut signals = Vec::new();
        for kind in kinds {
            signals.push(signal(kind).map_err(|e| e.to_string())?);
        }
        next_signal(&mut signals).await;
        let grace = config.grace_period;
        print_notice(&format!(
            "stop signal received, grace timeout is: {} seconds",
            grace.as_secs()
        ));
        lifecycle.begin_stop();
        let stop = async {
            let _ = tokio::time::timeout(grace, lifecycle.drained()).await;
            for pool in pools {
                let pool = pool.clone();
                let destroyed = shards.run_on(0, move || async move { pool.destroy().await });
                let _ = destroyed.await;
            }
        };
        let deadline = tokio::time::timeout(grace, stop);
        tokio::select! {
            finished = deadline => {
                if finished.is_err() {
                    for pool in pools {
                        pool.kill_all();
                    }
                    shards.shutdown();
                    return Err("stop: grace period exceeded, workers killed".to_owned());
                }
            }
            () = next_signal(&mut signals) => {
                print_notice("exit forced");
                for pool in pools {
                    pool.kill_all();
                }
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
fn stop(cli: &Cli) -> Result<(), String> {
    let _ = enter_work_dir(cli);
    let text = std::fs::read_to_string(".pid").map_err(|_| {
        "open .pid: no such file or directory, to create a .pid file, you must run RR with the following options: './rr serve -p'".to_owned()
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid pid in .pid: {text}"))?;
    let pid = rustix::process::Pid::from_raw(pid).ok_or("invalid pid 0 in .pid")?;
    if !cli.silent {
        eprintln!("stopping process with PID: {pid:?}");
    }
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)
        .map_err(|error| format!("kill: {error}"))?;
    if cli.force {
        std::thread::sleep(Duration::from_secs(1));
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    Ok(())
}
