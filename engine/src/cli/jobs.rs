//! `rr jobs --list | --pause NAME… | --resume NAME… | --destroy NAME…` (rr's flags): the jobs
//! plugin's pipelines over RPC, with the `jobs.v1` messages rr sends.

use super::rpc_client::RpcClient;
use super::{load_config, Cli, ConfigUse};
use crate::plugins::jobs::proto::Pipelines;
use prost::Message;
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// `rr jobs` arguments.
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    /// List the pipelines.
    #[arg(long)]
    pub list: bool,
    /// Pause the named pipelines.
    #[arg(long)]
    pub pause: bool,
    /// Resume the named pipelines.
    #[arg(long)]
    pub resume: bool,
    /// Destroy the named pipelines.
    #[arg(long)]
    pub destroy: bool,
    /// Pipelines.
    pub pipelines: Vec<String>,
}

/// Runs `rr jobs`.
pub(super) fn run(cli: &Cli, args: &JobsArgs) -> Result<(), String> {
    let (config, _) = load_config(cli, ConfigUse::Client)?;
    let mut client = RpcClient::connect(&config)?;
    let names = Pipelines {
        pipelines: args.pipelines.clone(),
    }
    .encode_to_vec();
    let method = match (args.list, args.pause, args.resume, args.destroy) {
        (true, ..) => "jobs.List",
        (_, true, ..) => "jobs.Pause",
        (_, _, true, _) => "jobs.Resume",
        (.., true) => "jobs.Destroy",
        _ => return Err("rr jobs: one of --list, --pause, --resume, --destroy".into()),
    };
    let message = if args.list { Vec::new() } else { names };
    let reply = client.call_proto(method, &message, CALL_TIMEOUT)?;
    if args.list || args.destroy {
        let mut listed = Pipelines::decode(reply.as_slice())
            .map_err(|error| error.to_string())?
            .pipelines;
        listed.sort();
        let rows: Vec<Vec<(String, Option<String>)>> =
            listed.into_iter().map(|name| vec![(name, None)]).collect();
        print!("{}", super::workers::table(&["PIPELINE ( S )"], &rows));
    }
    Ok(())
}
