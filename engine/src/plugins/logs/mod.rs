//! The `logs` plugin (spec config-cli-rpc §5) on `tracing`: rr's modes (development,
//! production, raw, off, fallback), levels, console/json encodings, outputs and per-logger
//! channels. Events map to rr's logger names by their target.
//!
//! A line is formatted on the thread that logs, straight into one buffer (its only
//! allocation), and handed to the log thread ([`LogQueue`]), which writes it: logging never
//! waits on an output, so a shard never blocks on a full pipe.

mod config;
mod file;
mod filter;
mod line;
pub mod writer;

pub use config::{FileLoggerOptions, LogChannel, LogsSection, ENTRY};
use file::RotatingFile;
#[cfg(test)]
use line::write_prefix;
use line::{format_line, format_loss_report};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use writer::{LogQueue, LossReporting, OutputMask, OUTPUTS_MAX};

/// rr's line shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Development,
    Production,
    Raw,
    Off,
}

/// One logger's settings.
#[derive(Debug, Clone)]
struct Channel {
    style: Style,
    json: bool,
    /// ANSI colours on the level and logger name (console lines only).
    colour: bool,
    level: Level,
    line_ending: String,
    outputs: OutputMask,
}

/// rr's rule for colours: stdout is a terminal, `NO_COLOR` is unset, `TERM` is not `dumb`.
fn colour_wanted() -> bool {
    rustix::termios::isatty(std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var_os("TERM").is_none_or(|term| term != "dumb")
}

/// The layer that formats every event and queues it for the log thread.
pub struct RrLogLayer {
    root: Channel,
    channels: HashMap<String, Channel>,
    queue: Arc<LogQueue>,
}

impl std::fmt::Debug for RrLogLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RrLogLayer").finish_non_exhaustive()
    }
}

fn parse_level(level: &str, style: Style) -> Level {
    match level {
        "debug" => Level::DEBUG,
        "info" => Level::INFO,
        "warn" | "warning" => Level::WARN,
        "error" | "dpanic" | "panic" | "fatal" => Level::ERROR,
        _ if style == Style::Development => Level::DEBUG,
        _ => Level::INFO,
    }
}

/// The outputs of a configuration, each opened once however many channels name it.
#[derive(Default)]
struct Outputs {
    names: Vec<String>,
    writers: Vec<Box<dyn Write + Send>>,
}

impl Outputs {
    /// The bit of output `name`, opened by `open` the first time.
    fn bit(
        &mut self,
        name: &str,
        open: impl FnOnce() -> Result<Box<dyn Write + Send>, String>,
    ) -> Result<OutputMask, String> {
        if let Some(index) = self.names.iter().position(|known| known == name) {
            return Ok(1 << index);
        }
        if self.names.len() == OUTPUTS_MAX {
            return Err(format!("logs: more than {OUTPUTS_MAX} distinct outputs"));
        }
        self.writers.push(open()?);
        self.names.push(name.to_owned());
        Ok(1 << (self.names.len() - 1))
    }

    fn named(&mut self, name: &str) -> Result<OutputMask, String> {
        self.bit(name, || {
            Ok(match name {
                "stdout" => Box::new(std::io::stdout()),
                "stderr" => Box::new(std::io::stderr()),
                path => Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|error| format!("logs: open {path}: {error}"))?,
                ),
            })
        })
    }
}

fn channel(config: &LogChannel, outputs: &mut Outputs, colour: bool) -> Result<Channel, String> {
    let style = match config.mode.as_str() {
        "production" => Style::Production,
        "raw" => Style::Raw,
        "off" | "none" => Style::Off,
        // development, and rr's "fallback" style for any other word, look alike.
        _ => Style::Development,
    };
    let json = match config.encoding.as_str() {
        "json" => true,
        "console" => false,
        _ => style == Style::Production,
    };
    // A rotated file replaces `output` and is always JSON, as rr writes it.
    let (json, mask) = match &config.file {
        Some(options) => {
            let path = options.log_output.display().to_string();
            let bit = outputs.bit(&path, || {
                let file = RotatingFile::open(options.clone())
                    .map_err(|error| format!("logs: open {path}: {error}"))?;
                Ok(Box::new(file))
            })?;
            (true, bit)
        }
        None => {
            let mut mask = 0;
            for name in &config.output {
                mask |= outputs.named(name)?;
            }
            (json, mask)
        }
    };
    Ok(Channel {
        style,
        json,
        colour: colour && !json && style == Style::Development,
        level: parse_level(&config.level, style),
        line_ending: config.line_ending.clone(),
        outputs: mask,
    })
}

impl RrLogLayer {
    /// Builds the layer from the `logs` section and starts its log thread.
    ///
    /// # Errors
    /// An output file that cannot be opened, or the thread cannot start.
    pub fn new(logs: &LogsSection) -> Result<Self, String> {
        let mut outputs = Outputs::default();
        let colour = colour_wanted();
        let root = channel(&logs.root, &mut outputs, colour)?;
        let mut channels = HashMap::new();
        for (name, config) in &logs.channels {
            channels.insert(name.clone(), channel(config, &mut outputs, colour)?);
        }
        // Losses are reported in the root logger's shape, to its outputs and to stderr
        // where the root logger does not write (the failing output may be the root's).
        let stderr_is_root = outputs
            .names
            .iter()
            .position(|name| name == "stderr")
            .is_some_and(|index| root.outputs & (1 << index) != 0);
        let reporter = root.clone();
        let reporting = LossReporting {
            report_to: root.outputs,
            warn_to: (!stderr_is_root)
                .then(|| Box::new(std::io::stderr()) as Box<dyn Write + Send>),
            format: Box::new(move |report| format_loss_report(&reporter, report)),
        };
        let queue = LogQueue::start(outputs.writers, reporting, Arc::clone(&logs.counters))
            .map_err(|error| format!("logs: start the log thread: {error}"))?;
        Ok(Self {
            root,
            channels,
            queue: Arc::new(queue),
        })
    }

    /// The most verbose level any channel wants.
    #[must_use]
    pub fn max_level(&self) -> Level {
        std::iter::once(&self.root)
            .chain(self.channels.values())
            .filter(|c| c.style != Style::Off)
            .map(|c| c.level)
            .max()
            .unwrap_or(Level::ERROR)
    }

    /// The queue the layer writes to (to flush it at exit).
    #[must_use]
    pub fn queue(&self) -> Arc<LogQueue> {
        Arc::clone(&self.queue)
    }
}

/// rr's logger name for an event target.
fn logger_name(target: &str) -> &str {
    if let Some(rest) = target.strip_prefix("ringrunner::") {
        return match rest.split("::").next() {
            Some("pool" | "worker") => "server",
            Some("plugins") => rest.split("::").nth(1).unwrap_or("rr"),
            _ => "rr",
        };
    }
    if target.contains("::") {
        "rr"
    } else {
        target
    }
}

/// A string field with this name names the event's logger (`service.mailer`, as rr names a
/// service's logger with `service_name_in_log`) instead of its target; it is not written as
/// a member.
pub const LOGGER_FIELD: &str = "logger";

/// Reads the `logger` field of an event that has one.
struct LoggerVisitor(Option<String>);

impl Visit for LoggerVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == LOGGER_FIELD {
            self.0 = Some(format!("{value:?}"));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == LOGGER_FIELD {
            self.0 = Some(value.to_owned());
        }
    }
}

impl<S: Subscriber> Layer<S> for RrLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        // Only events declaring the field pay for reading it.
        let named = metadata.fields().field(LOGGER_FIELD).and_then(|_| {
            let mut visitor = LoggerVisitor(None);
            event.record(&mut visitor);
            visitor.0
        });
        let logger = named
            .as_deref()
            .unwrap_or_else(|| logger_name(metadata.target()));
        // `service.mailer` takes the `service` channel unless it has one of its own.
        let channel = self
            .channels
            .get(logger)
            .or_else(|| {
                self.channels
                    .get(logger.split('.').next().unwrap_or(logger))
            })
            .unwrap_or(&self.root);
        if channel.style == Style::Off || *metadata.level() > channel.level {
            return;
        }
        self.queue
            .push(format_line(channel, event, logger), channel.outputs);
    }
}

/// What `install` leaves the caller: the queue, to flush before the process exits.
#[derive(Debug, Clone)]
pub struct LogFlusher(Arc<LogQueue>);

impl LogFlusher {
    /// Writes out what is queued, waiting at most `timeout` (an output nobody reads cannot
    /// hold the exit).
    pub fn flush(&self, timeout: Duration) {
        self.0.flush(timeout);
    }
}

/// Installs the logger for the process.
///
/// # Errors
/// An output that cannot be opened, or a logger already installed.
pub fn install(logs: &LogsSection) -> Result<LogFlusher, String> {
    let layer = RrLogLayer::new(logs)?;
    let flusher = LogFlusher(layer.queue());
    let filter = filter::LogFilter::new(layer.max_level());
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .map_err(|error| error.to_string())?;
    Ok(flusher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_map_to_rr_logger_names() {
        assert_eq!(logger_name("server"), "server");
        assert_eq!(logger_name("ringrunner::pool::exec"), "server");
        assert_eq!(logger_name("ringrunner::plugins::http::conn"), "http");
        assert_eq!(logger_name("ringrunner::cli"), "rr");
    }

    /// Logs `emit`'s events through a layer whose root channel is `config` writing to a
    /// fresh file, and returns the file's lines.
    fn logged(mut config: LogChannel, emit: impl FnOnce()) -> Vec<String> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "rr-logs-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        if config.file.is_none() {
            config.output = vec![path.display().to_string()];
        }
        let logs = LogsSection {
            root: config,
            channels: Vec::new(),
            counters: Arc::default(),
        };
        let layer = RrLogLayer::new(&logs).unwrap();
        let queue = layer.queue();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
        assert!(queue.flush(Duration::from_secs(5)));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        text.lines().map(str::to_owned).collect()
    }

    fn config(mode: &str, level: &str) -> LogChannel {
        LogChannel {
            mode: mode.into(),
            level: level.into(),
            encoding: String::new(),
            output: Vec::new(),
            line_ending: "\n".into(),
            file: None,
        }
    }

    #[test]
    fn lines_in_each_mode() {
        let emit =
            || tracing::debug!(target: "server", pid = 4312, path = "a\"b", "worker is allocated");
        let dev = logged(config("development", ""), emit);
        let parts: Vec<&str> = dev[0].split('\t').collect();
        assert_eq!(
            parts[1..],
            [
                "DEBUG",
                "server      ",
                "worker is allocated",
                "{\"pid\":4312,\"path\":\"a\\\"b\"}"
            ]
        );
        assert!(parts[0].ends_with("+0000"));
        let prod = logged(config("production", "debug"), || {
            tracing::warn!(target: "server", pid = 4312, elapsed = 1.5, ok = true, "a \"quoted\"\nline");
        });
        let json: serde_json::Value = serde_json::from_str(&prod[0]).unwrap();
        assert_eq!(json["level"], "warn");
        assert_eq!(json["logger"], "server");
        assert_eq!(json["msg"], "a \"quoted\"\nline");
        assert_eq!(json["pid"], 4312);
        assert_eq!(json["elapsed"], 1.5);
        assert_eq!(json["ok"], true);
        assert!(json["ts"].as_u64().unwrap() > 1_600_000_000_000_000_000);
        let raw = logged(config("raw", "debug"), emit);
        assert_eq!(
            raw,
            ["worker is allocated\t{\"pid\":4312,\"path\":\"a\\\"b\"}"]
        );
        let quiet = logged(config("production", ""), emit);
        assert!(quiet.is_empty(), "production defaults to info: {quiet:?}");
        let off = logged(config("off", "debug"), emit);
        assert!(off.is_empty());
    }

    #[test]
    fn a_logger_field_names_the_logger_and_is_not_a_member() {
        let lines = logged(config("production", "debug"), || {
            tracing::info!(target: "service", logger = "service.mailer", service = "mailer", "sent");
        });
        let json: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(json["logger"], "service.mailer");
        assert_eq!(json["service"], "mailer");
        assert_eq!(lines[0].matches("\"logger\"").count(), 1, "{}", lines[0]);
    }

    #[test]
    fn colours_follow_zap_s_capital_colour_encoder() {
        let outputs = &mut Outputs::default();
        let coloured = channel(&config("development", ""), outputs, true).unwrap();
        assert!(coloured.colour);
        let mut line = Vec::new();
        write_prefix(&mut line, &coloured, Level::ERROR, "http");
        let line = String::from_utf8(line).unwrap();
        assert!(
            line.ends_with("\t\x1b[31mERROR\x1b[0m\t\x1b[32mhttp        \x1b[0m\t"),
            "{line:?}"
        );
        assert!(
            !channel(&config("production", ""), outputs, true)
                .unwrap()
                .colour
        );
    }

    #[test]
    fn a_rotated_file_replaces_output_and_takes_json() {
        let dir = std::env::temp_dir().join(format!("rr-logs-file-{}", std::process::id()));
        let path = dir.join("nested/rr.log");
        let config = LogChannel {
            mode: "development".into(),
            level: "info".into(),
            encoding: "console".into(),
            output: vec!["stdout".into()],
            line_ending: "\r\n".into(),
            file: Some(FileLoggerOptions {
                log_output: path.clone(),
                max_size: 1 << 20,
                max_age_days: 1,
                max_backups: 1,
                compress: false,
            }),
        };
        logged(config, || tracing::info!(target: "rr", "rotated"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\r\n"), "{text:?}");
        let json: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(json["msg"], "rotated");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
