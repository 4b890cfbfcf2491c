//! `rr workers [plugin…] [-i]` (spec config-cli-rpc §2.4, §4): the workers of each plugin as
//! rr's table; `-i` redraws it every second until Ctrl+C.

use super::humanize::{ago, comma, si_bytes};
use super::rpc_client::RpcClient;
use super::{load_config, Cli, ConfigUse};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

/// How long an informer call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// `rr workers` arguments.
#[derive(Debug, clap::Args)]
pub struct WorkersArgs {
    /// Plugins to show (all that have workers when none is named).
    pub plugins: Vec<String>,
    /// Redraw every second until interrupted.
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
}

/// Runs `rr workers`.
pub(super) fn run(cli: &Cli, args: &WorkersArgs) -> Result<(), String> {
    let (config, _) = load_config(cli, ConfigUse::Client)?;
    let mut client = RpcClient::connect(&config)?;
    let colour = std::io::stdout().is_terminal();
    if !args.interactive {
        print!("{}", render(&mut client, &args.plugins, colour)?);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        loop {
            let table = render(&mut client, &args.plugins, colour)?;
            // Clear the screen, draw from the top-left corner.
            print!("\x1b[2J\x1b[1;1H{table}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = interrupt.recv() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
            }
        }
    })
}

/// The tables of every plugin asked for (all with workers when `plugins` is empty).
fn render(client: &mut RpcClient, plugins: &[String], colour: bool) -> Result<String, String> {
    let names: Vec<String> = if plugins.is_empty() {
        let listed = client
            .call("informer.List", &json!(true), CALL_TIMEOUT)
            .map_err(|error| format!("failed to get list of plugins: {error}"))?;
        let mut names = super::rpc_client::string_list(&listed);
        names.sort();
        names
    } else {
        plugins.to_vec()
    };
    let mut out = String::new();
    for name in &names {
        let services = name == "service";
        let rows = match client.call("informer.Workers", &json!(name), CALL_TIMEOUT) {
            Ok(reply) if services => service_rows(&reply),
            Ok(reply) => worker_rows(&reply, colour),
            Err(error) => vec![failed_row(name, &error)],
        };
        if rows.is_empty() {
            continue;
        }
        let title = if colour {
            format!("\x1b[33m{name}\x1b[0m")
        } else {
            name.clone()
        };
        let _ = writeln!(out, "Workers of [{title}]:");
        let header: &[&str] = if services {
            &["PID", "MEMORY", "CPU %", "COMMAND"]
        } else {
            &["PID", "STATUS", "EXECS", "MEMORY", "CPU %", "CREATED"]
        };
        out.push_str(&table(header, &rows));
    }
    for name in &names {
        let Ok(Value::Array(jobs)) = client.call("informer.Jobs", &json!(name), CALL_TIMEOUT)
        else {
            continue;
        };
        if jobs.is_empty() {
            continue;
        }
        let _ = writeln!(out, "Jobs of [{name}]:");
        out.push_str(&table(
            &[
                "STATUS", "PIPELINE", "DRIVER", "QUEUE", "ACTIVE", "DELAYED", "RESERVED",
            ],
            &job_rows(&jobs),
        ));
    }
    Ok(out)
}

/// A cell: its text, and the text with colour codes (when they differ).
type Row = Vec<(String, Option<String>)>;

fn worker_rows(reply: &Value, colour: bool) -> Vec<Row> {
    let Some(workers) = reply.get("workers").and_then(Value::as_array) else {
        return Vec::new();
    };
    let now_ns = crate::clock::unix_seconds().saturating_mul(1_000_000_000);
    let mut workers: Vec<&Value> = workers.iter().collect();
    workers.sort_by_key(|worker| worker["pid"].as_u64().unwrap_or(0));
    workers
        .into_iter()
        .map(|worker| {
            let number = |key: &str| worker[key].as_u64().unwrap_or(0);
            let status = worker["statusStr"].as_str().unwrap_or("").to_owned();
            let painted = colour.then(|| paint_status(&status)).flatten();
            vec![
                (number("pid").to_string(), None),
                (status, painted),
                (comma(number("numExecs")), None),
                (si_bytes(number("memoryUsage")), None),
                (
                    format!("{:.2}", worker["CPUPercent"].as_f64().unwrap_or(0.0)),
                    None,
                ),
                (
                    ago(now_ns.saturating_sub(number("created")) / 1_000_000_000),
                    None,
                ),
            ]
        })
        .collect()
}

/// The `service` plugin's processes: rr's `PID | MEMORY | CPU % | COMMAND`.
fn service_rows(reply: &Value) -> Vec<Row> {
    let Some(workers) = reply.get("workers").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut workers: Vec<&Value> = workers.iter().collect();
    workers.sort_by_key(|worker| worker["pid"].as_u64().unwrap_or(0));
    workers
        .into_iter()
        .map(|worker| {
            vec![
                (worker["pid"].as_u64().unwrap_or(0).to_string(), None),
                (si_bytes(worker["memoryUsage"].as_u64().unwrap_or(0)), None),
                (
                    format!("{:.2}", worker["CPUPercent"].as_f64().unwrap_or(0.0)),
                    None,
                ),
                (
                    worker["command"].as_str().unwrap_or_default().to_owned(),
                    None,
                ),
            ]
        })
        .collect()
}

/// rr's colours for a status: ready cyan, working green, inactive/invalid yellow,
/// stopped/errored red.
fn paint_status(status: &str) -> Option<String> {
    let code = match status {
        "ready" => "36",
        "working" => "32",
        "inactive" | "invalid" => "33",
        "stopped" | "errored" => "31",
        _ => return None,
    };
    Some(format!("\x1b[{code}m{status}\x1b[0m"))
}

fn failed_row(name: &str, error: &str) -> Row {
    let mut row = vec![
        ("0".to_owned(), None),
        (
            format!("failed to receive information about {name} plugin: {error}"),
            None,
        ),
    ];
    row.extend((0..4).map(|_| ("ERROR".to_owned(), None)));
    row
}

fn job_rows(jobs: &[Value]) -> Vec<Row> {
    let mut jobs: Vec<&Value> = jobs.iter().collect();
    jobs.sort_by(|a, b| a["pipeline"].as_str().cmp(&b["pipeline"].as_str()));
    jobs.into_iter()
        .map(|job| {
            let text = |key: &str| match &job[key] {
                Value::String(text) => text.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let status = if job["ready"].as_bool().unwrap_or(false) {
                "READY"
            } else {
                "PAUSED/STOPPED"
            };
            [
                status.to_owned(),
                text("pipeline"),
                text("driver"),
                text("queue"),
                text("active"),
                text("delayed"),
                text("reserved"),
            ]
            .into_iter()
            .map(|cell| (cell, None))
            .collect()
        })
        .collect()
}

/// A left-aligned table in light box-drawing lines.
pub(super) fn table(header: &[&str], rows: &[Row]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|(text, _)| text.chars().count())
                .chain([header[column].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule = |left: &str, middle: &str, right: &str| {
        let bars: Vec<String> = widths.iter().map(|width| "─".repeat(width + 2)).collect();
        format!("{left}{}{right}\n", bars.join(middle))
    };
    let line = |cells: Vec<(&str, &str)>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|((text, shown), width)| {
                let pad = width.saturating_sub(text.chars().count());
                format!(" {shown}{} ", " ".repeat(pad))
            })
            .collect();
        format!("│{}│\n", padded.join("│"))
    };
    let mut out = rule("┌", "┬", "┐");
    out.push_str(&line(header.iter().map(|h| (*h, *h)).collect()));
    out.push_str(&rule("├", "┼", "┤"));
    for row in rows {
        out.push_str(&line(
            row.iter()
                .map(|(text, painted)| (text.as_str(), painted.as_deref().unwrap_or(text)))
                .collect(),
        ));
    }
    out.push_str(&rule("└", "┴", "┘"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_table_has_rr_s_columns_and_cells() {
        let now_ns = crate::clock::unix_seconds() * 1_000_000_000;
        let reply = json!({"workers": [
            {"pid": 4313, "status": 2, "numExecs": 1529, "created": now_ns - 200_000_000_000u64,
             "memoryUsage": 28_000_000, "CPUPercent": 0.91, "command": "", "statusStr": "working"},
            {"pid": 4312, "status": 1, "numExecs": 1532, "created": now_ns - 200_000_000_000u64,
             "memoryUsage": 27_262_976, "CPUPercent": 0.87, "command": "", "statusStr": "ready"},
        ]});
        let text = table(
            &["PID", "STATUS", "EXECS", "MEMORY", "CPU %", "CREATED"],
            &worker_rows(&reply, false),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(
            lines[1],
            "│ PID  │ STATUS  │ EXECS │ MEMORY │ CPU % │ CREATED       │"
        );
        assert_eq!(
            lines[3],
            "│ 4312 │ ready   │ 1,532 │ 27 MB  │ 0.87  │ 3 minutes ago │"
        );
        assert!(lines[4].starts_with("│ 4313 │ working │ 1,529 │ 28 MB "));
        assert!(worker_rows(&json!({"workers": null}), false).is_empty());
    }
}
