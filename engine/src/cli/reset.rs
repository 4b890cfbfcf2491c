//! `rr reset [plugin…]` (spec config-cli-rpc §2.5): every named plugin (all resettable ones
//! when none is named) replaces its workers, concurrently; progress on stderr in Go's log
//! format unless `-s`.

use super::rpc_client::RpcClient;
use super::{load_config, Cli, ConfigUse};
use serde_json::json;
use std::time::Duration;

/// A reset waits for every worker to be replaced: up to the pool's `reset_timeout`
/// (60 s by default) and the kill after it.
const RESET_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// `rr reset` arguments.
#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// Plugins to reset (all resettable ones when none is named).
    pub plugins: Vec<String>,
}

/// Runs `rr reset`. As rr's, a plugin's reset error is not reported and does not change
/// the exit status; failing to reach the server does.
pub(super) fn run(cli: &Cli, args: &ResetArgs) -> Result<(), String> {
    let (config, _) = load_config(cli, ConfigUse::Client)?;
    let mut client = RpcClient::connect(&config)?;
    let names: Vec<String> = if args.plugins.is_empty() {
        super::rpc_client::string_list(&client.call(
            "resetter.List",
            &json!(true),
            RESET_TIMEOUT,
        )?)
    } else {
        args.plugins.clone()
    };
    let silent = cli.silent;
    std::thread::scope(|scope| {
        for name in &names {
            let config = &config;
            scope.spawn(move || {
                if !silent {
                    eprintln!("{} resetting plugin: [{name}] ", super::go_log_time());
                }
                let reset = RpcClient::connect(config).and_then(|mut client| {
                    client.call("resetter.Reset", &json!(name), RESET_TIMEOUT)
                });
                if !silent && reset.is_ok() {
                    eprintln!("{} plugin reset: [{name}]", super::go_log_time());
                }
            });
        }
    });
    Ok(())
}
