//! The `rr` command line (spec config-cli-rpc §2): global flags as rr's, `serve`, `stop`,
//! `workers`, `reset`, `--version`, and our `bench`.

mod bench;
mod humanize;
mod jobs;
mod reset;
mod rpc_client;
mod serve;
mod service;
mod workers;

use crate::config::Config;
use crate::plugins::{logs, Configured};
use crate::runtime::Shards;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Show the workers of the running server's plugins (over RPC).
    Workers(workers::WorkersArgs),
    /// Replace the workers of the running server's plugins (over RPC).
    Reset(reset::ResetArgs),
    /// Print the version.
    Version,
    /// Send synthetic payloads through the configured pool and print throughput and
    /// latency (ringrunner's own; rr has no such verb).
    Bench(bench::BenchArgs),
    /// List, pause, resume or destroy the jobs plugin's pipelines (over RPC).
    Jobs(jobs::JobsArgs),
    /// List, inspect, start, stop and restart the `service` plugin's services over RPC
    /// (ringrunner's own; exit status 3 from `status` when a process is not running).
    Service(service::ServiceArgs),
    /// Print a shell completion script, as rr's `completion` verb does.
    Completion(CompletionArgs),
}

/// `rr completion SHELL`.
#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Runs the command line; returns the exit status.
#[must_use]
pub fn main(cli: Cli) -> i32 {
    if cli.version {
        println!("{}", crate::version_line());
        return 0;
    }
    let result = match cli.command {
        Some(Command::Serve) => serve::serve(&cli),
        Some(Command::Stop) => serve::stop(&cli),
        Some(Command::Workers(ref args)) => workers::run(&cli, args),
        Some(Command::Reset(ref args)) => reset::run(&cli, args),
        Some(Command::Bench(ref args)) => run_bench(&cli, args),
        Some(Command::Jobs(ref args)) => jobs::run(&cli, args),
        Some(Command::Service(ref args)) => match service::run(&cli, args) {
            Ok(status) => return status,
            Err(error) => Err(error),
        },
        Some(Command::Completion(ref args)) => print_completion(args.shell),
        Some(Command::Version) => {
            println!("{}", crate::version_line());
            Ok(())
        }
        None => {
            eprintln!(
                "usage: rr [flags] serve | stop | workers | reset | jobs | version | bench | service | completion (rr --help)"
            );
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

/// Writes the completion script for `shell` to stdout, generated from these clap definitions.
/// The script is made in memory first (clap_complete panics on a failed write); a reader that
/// closed the pipe early (`| head`) is not an error.
fn print_completion(shell: clap_complete::Shell) -> Result<(), String> {
    use std::io::Write;
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "rr", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("writing the completion script: {error}"))
        }
        _ => Ok(()),
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

/// Starts the shards: `RINGRUNNER_SHARDS` of them (one per CPU by default), on the I/O
/// backend `RINGRUNNER_IO` asks for (io_uring where it works by default).
pub(crate) fn start_shards() -> Result<Shards, String> {
    let backend = crate::aio::Backend::from_env()?;
    let count = shard_count();
    tracing::debug!(backend = backend.name(), shards = count, "starting shards");
    Shards::start(count, backend).map_err(|error| error.to_string())
}

fn shard_count() -> usize {
    std::env::var("RINGRUNNER_SHARDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|count| *count > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Which config a command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConfigUse {
    /// `serve`, `bench`: the whole config, `version` required.
    Server,
    /// `workers`, `reset`: only `rpc` matters; a missing `version` is taken as 3.
    Client,
}

/// Changes directory, loads the dotenv file and the config file; gives the config and the
/// dotenv file's variables.
fn load_config(cli: &Cli, purpose: ConfigUse) -> Result<(Config, Vec<(String, String)>), String> {
    let config_path = enter_work_dir(cli)?;
    let dotenv = std::env::var_os("DOTENV_PATH")
        .map(PathBuf::from)
        .or_else(|| cli.dotenv.clone());
    let dotenv_vars = match dotenv {
        Some(dotenv) => load_dotenv(&dotenv)?,
        None => Vec::new(),
    };
    let text = crate::config::read_file(&config_path).map_err(|e| e.to_string())?;
    let env = dotenv_env(&dotenv_vars);
    let mut config = match purpose {
        ConfigUse::Server => Config::load(&text, &cli.overrides, &env),
        ConfigUse::Client => Config::load_for_client(&text, &cli.overrides, &env),
    }
    .map_err(|e| e.to_string())?;
    // rr's config plugin prints its notices (the 2.7 one) to stderr itself, whatever the
    // log level: a `logs.level: error` must not hide that the file is outdated.
    for notice in config.warnings.drain(..) {
        eprintln!("{notice}");
    }
    drop(env);
    Ok((config, dotenv_vars))
}

/// The environment, then the dotenv file's variables.
fn dotenv_env(dotenv_vars: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        std::env::var(name).ok().or_else(|| {
            dotenv_vars
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    }
}

/// Loads the config, reads every plugin's section, installs the logger and logs the
/// config's warnings.
fn prepare(cli: &Cli) -> Result<(Configured, logs::LogFlusher), String> {
    let (config, dotenv_vars) = load_config(cli, ConfigUse::Server)?;
    let env = dotenv_env(&dotenv_vars);
    let configured =
        crate::plugins::configure(&config, &env, &dotenv_vars).map_err(|e| e.to_string())?;
    let default_logs = logs::LogsSection::default();
    let logs_section = configured
        .get::<logs::LogsSection>()
        .unwrap_or(&default_logs);
    let flusher = logs::install(logs_section)?;
    for warning in &configured.warnings {
        tracing::warn!("{warning}");
    }
    for note in &configured.notes {
        tracing::debug!("{note}");
    }
    Ok((configured, flusher))
}

fn run_bench(cli: &Cli, args: &bench::BenchArgs) -> Result<(), String> {
    let (configured, flusher) = prepare(cli)?;
    let outcome = start_shards().and_then(|shards| {
        let shards = Arc::new(shards);
        let outcome = bench::run(&configured, args, &shards);
        shards.shutdown();
        outcome
    });
    flusher.flush(serve::LOG_FLUSH_AT_EXIT);
    outcome
}

/// Go's standard log prefix, `2025/01/02 15:04:05` (UTC: the server keeps no timezone
/// database).
pub(crate) fn go_log_time() -> String {
    let c = crate::clock::civil(crate::clock::unix_seconds());
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}
