//! The `service` section (spec service §1 and §8): rr's keys, and the extension keys for
//! PID-file daemons, signals, restart policies, start limits and ordering.

use crate::config::values::Reader;
use crate::config::yaml::Value;
use crate::config::ConfigError;
use rustix::process::Signal;
use std::path::PathBuf;
use std::time::Duration;

/// When a process that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Never (rr without `remain_after_exit`).
    No,
    /// After any exit (rr's `remain_after_exit: true`).
    Always,
    /// After a non-zero exit, a death by a signal rr did not send, or an `exec_timeout`.
    OnFailure,
}

/// One service, as configured or created over RPC.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Its name.
    pub name: String,
    /// The command line (split on spaces when spawned).
    pub command: String,
    /// Identical processes.
    pub process_num: usize,
    /// A run's maximum time (SIGKILL after).
    pub exec_timeout: Option<Duration>,
    /// When to start again after an exit.
    pub restart: Restart,
    /// Delay before a restart.
    pub restart_sec: u64,
    /// The most the delay grows to in a crash loop (0: fixed).
    pub restart_max_sec: u64,
    /// Grace time between the stop signal and SIGKILL.
    pub timeout_stop: Duration,
    /// Output under the logger `service.<name>`.
    pub name_in_log: bool,
    /// Added environment, keys upper-cased, values expanded.
    pub env: Vec<(String, String)>,
    /// Run as this uid and gid.
    pub credentials: Option<(u32, u32)>,
    /// PID-file mode.
    pub pid_file: Option<PathBuf>,
    /// Output to this file instead of the log.
    pub log_file: Option<PathBuf>,
    /// Working directory.
    pub working_dir: Option<PathBuf>,
    /// The graceful stop signal.
    pub stop_signal: Signal,
    /// Signal the whole process group.
    pub kill_group: bool,
    /// A run shorter than this is a quick failure (backoff, start limit; PID-file instant
    /// exit check).
    pub start_secs: Duration,
    /// Automatic starts allowed per `start_limit_interval` (0: no limit).
    pub start_limit_burst: u32,
    /// The start limit's window.
    pub start_limit_interval: Duration,
    /// How long a forking daemon gets to write its PID file.
    pub pid_file_timeout: Duration,
    /// Start order ascending, stop order descending.
    pub priority: i64,
}

impl ServiceSpec {
    /// A spec with rr's defaults for `name` running `command`.
    #[must_use]
    pub fn new(name: &str, command: &str) -> Self {
        Self {
            name: name.to_owned(),
            command: command.to_owned(),
            process_num: 1,
            exec_timeout: None,
            restart: Restart::No,
            restart_sec: 30,
            restart_max_sec: 0,
            timeout_stop: Duration::from_secs(5),
            name_in_log: false,
            env: Vec::new(),
            credentials: None,
            pid_file: None,
            log_file: None,
            working_dir: None,
            stop_signal: Signal::INT,
            kill_group: false,
            start_secs: Duration::ZERO,
            start_limit_burst: 0,
            start_limit_interval: Duration::from_secs(10),
            pid_file_timeout: Duration::from_secs(5),
            priority: 0,
        }
    }

    /// Reads `service.<name>`; `env` expands values against `lookup`.
    ///
    /// # Errors
    /// A missing command, a value of the wrong type, an unknown signal, a `pid_file` with
    /// more than one process, an unknown user: each naming the service and the key.
    pub fn read(
        reader: &Reader<'_>,
        name: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let key = |k: &str| format!("service.{name}.{k}");
        let error = |k: &str, message: String| ConfigError {
            line: reader.node(&key(k)).map_or(0, |n| n.line),
            path: key(k),
            message,
        };
        let command = reader.string(&key("command"))?.unwrap_or_default();
        if command.trim().is_empty() {
            return Err(error(
                "command",
                format!("service {name}: command is required"),
            ));
        }
        let mut spec = Self::new(name, &command);
        spec.process_num = signed(reader, &key("process_num"))?
            .filter(|n| *n > 0)
            .map_or(1, |n| usize::try_from(n).unwrap_or(1));
        spec.exec_timeout = reader
            .duration(&key("exec_timeout"))?
            .filter(|d| !d.is_zero());
        let remain = reader.bool(&key("remain_after_exit"))?.unwrap_or(false);
        spec.restart = match reader.string(&key("restart"))?.as_deref() {
            None => {
                if remain {
                    Restart::Always
                } else {
                    Restart::No
                }
            }
            Some("no") => Restart::No,
            Some("always") => Restart::Always,
            Some("on-failure") => Restart::OnFailure,
            Some(other) => {
                return Err(error(
                    "restart",
                    format!(
                        "service {name}: restart must be no, always or on-failure, not {other:?}"
                    ),
                ))
            }
        };
        spec.restart_sec = reader
            .unsigned(&key("restart_sec"))?
            .filter(|s| *s > 0)
            .unwrap_or(30);
        spec.restart_max_sec = reader.unsigned(&key("restart_max_sec"))?.unwrap_or(0);
        spec.timeout_stop = reader
            .seconds(&key("timeout_stop_sec"))?
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(5));
        spec.name_in_log = reader.bool(&key("service_name_in_log"))?.unwrap_or(false);
        spec.env = reader
            .string_map(&key("env"))?
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_uppercase(),
                    crate::config::expand(&v, &|var: &str| Some(lookup(var).unwrap_or_default())),
                )
            })
            .collect();
        let user = reader.string(&key("user"))?.filter(|u| !u.is_empty());
        let group = reader.string(&key("group"))?.filter(|g| !g.is_empty());
        if let Some(user) = &user {
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            let (uid, mut gid) =
                crate::plugins::server::user_credentials(user, &passwd).map_err(|message| {
                    error(
                        "user",
                        format!(
                            "service {name}: {}",
                            message.replace(
                                "server.user: running workers",
                                "user: running the service"
                            )
                        ),
                    )
                })?;
            if let Some(group) = &group {
                gid = group_id(group).ok_or_else(|| {
                    error("group", format!("service {name}: unknown group {group:?}"))
                })?;
            }
            spec.credentials = Some((uid, gid));
        }
        let path = |k: &str| -> Result<Option<PathBuf>, ConfigError> {
            Ok(reader
                .string(&key(k))?
                .filter(|p| !p.is_empty())
                .map(PathBuf::from))
        };
        spec.working_dir = path("working_dir")?;
        let in_dir = |p: PathBuf| match (&spec.working_dir, p.is_relative()) {
            (Some(dir), true) => dir.join(p),
            _ => p,
        };
        spec.pid_file = path("pid_file")?.map(in_dir);
        spec.log_file = path("log_file")?.map(in_dir);
        if spec.pid_file.is_some() && spec.process_num > 1 {
            return Err(error(
                "pid_file",
                format!("service {name}: pid_file requires process_num: 1"),
            ));
        }
        if let Some(signal) = reader.string(&key("stop_signal"))? {
            spec.stop_signal = parse_signal(&signal).ok_or_else(|| {
                error(
                    "stop_signal",
                    format!("service {name}: invalid stop_signal: {signal}"),
                )
            })?;
        }
        spec.kill_group = match reader.string(&key("kill_mode"))?.as_deref() {
            None | Some("process") => false,
            Some("group") => true,
            Some(other) => {
                return Err(error(
                    "kill_mode",
                    format!("service {name}: kill_mode must be process or group, not {other:?}"),
                ))
            }
        };
        let default_start = if spec.pid_file.is_some() {
            Duration::from_millis(200)
        } else {
            Duration::ZERO
        };
        spec.start_secs = reader
            .duration(&key("start_secs"))?
            .unwrap_or(default_start);
        spec.start_limit_burst =
            u32::try_from(reader.unsigned(&key("start_limit_burst"))?.unwrap_or(0))
                .unwrap_or(u32::MAX);
        spec.start_limit_interval = reader
            .seconds(&key("start_limit_interval_sec"))?
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(10));
        spec.pid_file_timeout = reader
            .seconds(&key("pid_file_timeout_sec"))?
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(5));
        spec.priority = signed(reader, &key("priority"))?.unwrap_or(0);
        Ok(spec)
    }
}

/// A signed integer (the reader's `unsigned` refuses negative priorities).
fn signed(reader: &Reader<'_>, path: &str) -> Result<Option<i64>, ConfigError> {
    let Some(node) = reader.node(path) else {
        return Ok(None);
    };
    match &node.value {
        Value::Int(value) => Ok(Some(*value)),
        Value::Str(text) => text.trim().parse().map(Some).map_err(|_| ConfigError {
            path: path.to_owned(),
            line: node.line,
            message: format!("expected an integer, got {text:?}"),
        }),
        other => Err(ConfigError {
            path: path.to_owned(),
            line: node.line,
            message: format!("expected an integer, got {}", other.go_type_name()),
        }),
    }
}

/// `SIGTERM`, `TERM`, `term` or a number.
#[must_use]
pub fn parse_signal(text: &str) -> Option<Signal> {
    const NAMED: [(&str, Signal); 10] = [
        ("HUP", Signal::HUP),
        ("INT", Signal::INT),
        ("QUIT", Signal::QUIT),
        ("KILL", Signal::KILL),
        ("USR1", Signal::USR1),
        ("USR2", Signal::USR2),
        ("TERM", Signal::TERM),
        ("CONT", Signal::CONT),
        ("STOP", Signal::STOP),
        ("WINCH", Signal::WINCH),
    ];
    let upper = text.trim().to_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Ok(number) = bare.parse::<i32>() {
        return NAMED
            .iter()
            .map(|(_, signal)| *signal)
            .find(|signal| signal.as_raw() == number);
    }
    NAMED
        .iter()
        .find(|(name, _)| *name == bare)
        .map(|(_, signal)| *signal)
}

/// A group name or number from /etc/group.
fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == group).then(|| fields.nth(1)?.parse().ok())?
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        for text in ["SIGTERM", "TERM", "term", "15"] {
            assert_eq!(parse_signal(text), Some(Signal::TERM), "{text}");
        }
        assert_eq!(parse_signal("SIGQUIT"), Some(Signal::QUIT));
        assert_eq!(parse_signal("SIGFOO"), None);
        assert_eq!(parse_signal("99"), None);
    }
}
