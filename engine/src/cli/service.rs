//! `rr service list | status [NAME] | start NAME | stop NAME | restart NAME`: ringrunner's own
//! verbs for people who run their local stack (nginx, php-fpm, Redis …) under the `service`
//! plugin, over the RPC plane. Exit status: 0 done (status: every process running), 1 an
//! error (no server, unknown service, a start that failed), 3 status found a process that is
//! not running (as `systemctl status`).

use super::rpc_client::RpcClient;
use super::{load_config, Cli, ConfigUse};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Duration;

/// A start or stop waits for the processes (stop: up to their `timeout_stop_sec` and the kill).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// `rr service` arguments.
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ServiceAction,
}

/// A `rr service` verb.
#[derive(Debug, clap::Subcommand)]
pub enum ServiceAction {
    /// The services' names.
    List,
    /// State, pid, uptime, restarts and last exit of each process (of NAME, or of all).
    Status {
        /// A service; all when absent.
        name: Option<String>,
    },
    /// Start a service that is stopped (a configured one after `stop`).
    Start {
        /// The service.
        name: String,
    },
    /// Stop a service's processes (it stays known; `start` starts it again).
    Stop {
        /// The service.
        name: String,
    },
    /// Stop and start a service's processes.
    Restart {
        /// The service.
        name: String,
    },
}

/// Runs `rr service …`; gives the exit status.
pub(super) fn run(cli: &Cli, args: &ServiceArgs) -> Result<i32, String> {
    let (config, _) = load_config(cli, ConfigUse::Client)?;
    let mut client = RpcClient::connect(&config)?;
    let mut call = |method: &str, name: &str| {
        client.call(
            &format!("service.{method}"),
            &json!({ "name": name }),
            CALL_TIMEOUT,
        )
    };
    match &args.action {
        ServiceAction::List => {
            let reply = call("List", "")?;
            for name in reply["services"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                println!("{name}");
            }
            Ok(0)
        }
        ServiceAction::Status { name } => {
            let reply = call("Describe", name.as_deref().unwrap_or_default())?;
            let processes = reply.as_array().cloned().unwrap_or_default();
            print!("{}", status_table(&processes));
            let all_up = processes
                .iter()
                .all(|p| matches!(p["state"].as_str(), Some("running" | "starting")));
            Ok(if all_up { 0 } else { 3 })
        }
        ServiceAction::Start { name } => call("Start", name).map(|_| 0),
        ServiceAction::Stop { name } => call("Stop", name).map(|_| 0),
        ServiceAction::Restart { name } => call("Restart", name).map(|_| 0),
    }
}

/// One line per process: NAME STATE PID UPTIME RESTARTS LAST-EXIT, columns aligned.
fn status_table(processes: &[Value]) -> String {
    let mut rows = vec![["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"]
        .map(str::to_owned)
        .to_vec()];
    for process in processes {
        let text = |key: &str| process[key].as_str().unwrap_or_default().to_owned();
        let number = |key: &str| process[key].as_u64().unwrap_or(0);
        let state = match text("message") {
            message
                if message.is_empty()
                    || matches!(text("state").as_str(), "running" | "starting") =>
            {
                text("state")
            }
            message => format!("{} ({message})", text("state")),
        };
        rows.push(vec![
            text("name"),
            state,
            number("pid").to_string(),
            uptime(number("uptime_sec")),
            number("restarts").to_string(),
            process["last_exit"].as_str().unwrap_or("-").to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// `1h02m03s`, `4m05s`, `6s`, `-` for none.
fn uptime(seconds: u64) -> String {
    match seconds {
        0 => "-".into(),
        s if s >= 3600 => format!("{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_aligned() {
        let table = status_table(&[
            json!({"name": "nginx", "state": "running", "pid": 52001, "uptime_sec": 3723, "restarts": 0, "last_exit": null, "message": ""}),
            json!({"name": "redis", "state": "backoff", "pid": 7, "uptime_sec": 0, "restarts": 3, "last_exit": "signal: killed", "message": "restarting in 1s (signal: killed)"}),
        ]);
        assert_eq!(
            table,
            "NAME   STATE                                        PID    UPTIME    RESTARTS  LAST EXIT\n\
             nginx  running                                      52001  1h02m03s  0         -\n\
             redis  backoff (restarting in 1s (signal: killed))  7      -         3         signal: killed\n"
        );
    }
}
