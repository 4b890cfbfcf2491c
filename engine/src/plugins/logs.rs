//! The `logs` plugin (spec config-cli-rpc §5) on `tracing`: rr's modes (development,
//! production, raw, off, fallback), levels, console/json encodings, outputs and per-logger
//! channels. Events map to rr's logger names by their target.

use super::log_file::RotatingFile;
use crate::config::{LogChannel, LogsSection};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// rr's line shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Development,
    Production,
    Raw,
    Off,
}

/// Where a channel writes.
type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// One logger's settings.
struct Channel {
    style: Style,
    json: bool,
    /// ANSI colours on the level and logger name (console lines only).
    colour: bool,
    level: Level,
    line_ending: String,
    sinks: Vec<Sink>,
}

/// rr's rule for colours: stdout is a terminal, `NO_COLOR` is unset, `TERM` is not `dumb`.
fn colour_wanted() -> bool {
    rustix::termios::isatty(std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var_os("TERM").is_none_or(|term| term != "dumb")
}

/// The layer that formats and writes every event.
pub struct RrLogLayer {
    root: Channel,
    channels: HashMap<String, Channel>,
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

fn open_sink(name: &str, files: &mut HashMap<String, Sink>) -> Result<Sink, String> {
    if let Some(sink) = files.get(name) {
        return Ok(Arc::clone(sink));
    }
    let sink: Sink = match name {
        "stdout" => Arc::new(Mutex::new(Box::new(std::io::stdout()))),
        "stderr" => Arc::new(Mutex::new(Box::new(std::io::stderr()))),
        path => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|error| format!("logs: open {path}: {error}"))?;
            Arc::new(Mutex::new(Box::new(file)))
        }
    };
    files.insert(name.to_owned(), Arc::clone(&sink));
    Ok(sink)
}

fn channel(
    config: &LogChannel,
    files: &mut HashMap<String, Sink>,
    colour: bool,
) -> Result<Channel, String> {
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
    let (json, sinks) = match &config.file {
        Some(options) => {
            let path = options.log_output.display().to_string();
            let sink: Sink = match files.get(&path) {
                Some(sink) => Arc::clone(sink),
                None => {
                    let file = RotatingFile::open(options.clone())
                        .map_err(|error| format!("logs: open {path}: {error}"))?;
                    let sink: Sink = Arc::new(Mutex::new(Box::new(file)));
                    files.insert(path, Arc::clone(&sink));
                    sink
                }
            };
            (true, vec![sink])
        }
        None => (
            json,
            config
                .output
                .iter()
                .map(|output| open_sink(output, files))
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(Channel {
        style,
        json,
        colour: colour && !json && style == Style::Development,
        level: parse_level(&config.level, style),
        line_ending: config.line_ending.clone(),
        sinks,
    })
}

impl RrLogLayer {
    /// Builds the layer from the `logs` section.
    ///
    /// # Errors
    /// An output file that cannot be opened.
    pub fn new(logs: &LogsSection) -> Result<Self, String> {
        let mut files = HashMap::new();
        let colour = colour_wanted();
        let root = channel(&logs.root, &mut files, colour)?;
        let mut channels = HashMap::new();
        for (name, config) in &logs.channels {
            channels.insert(name.clone(), channel(config, &mut files, colour)?);
        }
        Ok(Self { root, channels })
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

#[derive(Default)]
struct Fields {
    message: String,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.extra
                .insert(field.name().into(), format!("{value:?}").into());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.extra.insert(field.name().into(), value.into());
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.extra.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.extra.insert(field.name().into(), value.into());
    }
}

fn level_text(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        _ => "debug",
    }
}

fn format_line(channel: &Channel, level: Level, logger: &str, fields: Fields) -> String {
    let now = crate::clock::unix_now();
    let mut line = String::with_capacity(128 + fields.message.len());
    if channel.json {
        let mut object = serde_json::Map::new();
        object.insert("level".into(), level_text(level).into());
        let ts = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        object.insert("ts".into(), ts.into());
        object.insert("logger".into(), logger.into());
        object.insert("msg".into(), fields.message.into());
        object.extend(fields.extra);
        line.push_str(&serde_json::Value::Object(object).to_string());
    } else if channel.style == Style::Raw {
        line.push_str(&fields.message);
        if !fields.extra.is_empty() {
            let _ = write!(line, "\t{}", serde_json::Value::Object(fields.extra));
        }
    } else {
        let c = crate::clock::civil(now.as_secs());
        let _ = write!(
            line,
            "{}-{:02}-{:02}T{:02}:{:02}:{:02}+0000\t",
            c.year, c.month, c.day, c.hour, c.minute, c.second,
        );
        let level_upper = level_text(level).to_uppercase();
        if channel.colour {
            // zap's capital colour level encoder, and a green logger name.
            let code = match level {
                Level::ERROR => 31,
                Level::WARN => 33,
                Level::INFO => 34,
                _ => 35,
            };
            let _ = write!(
                line,
                "\x1b[{code}m{level_upper}\x1b[0m\t\x1b[32m{logger:<12}\x1b[0m\t{}",
                fields.message
            );
        } else {
            let _ = write!(line, "{level_upper}\t{logger:<12}\t{}", fields.message);
        }
        if !fields.extra.is_empty() {
            let _ = write!(line, "\t{}", serde_json::Value::Object(fields.extra));
        }
    }
    line.push_str(&channel.line_ending);
    line
}

impl<S: Subscriber> Layer<S> for RrLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let logger = logger_name(metadata.target());
        let channel = self.channels.get(logger).unwrap_or(&self.root);
        if channel.style == Style::Off || *metadata.level() > channel.level {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = format_line(channel, *metadata.level(), logger, fields);
        for sink in &channel.sinks {
            if let Ok(mut sink) = sink.lock() {
                let _ = sink.write_all(line.as_bytes());
                let _ = sink.flush();
            }
        }
    }
}

/// Installs the logger for the process.
///
/// # Errors
/// An output that cannot be opened, or a logger already installed.
pub fn install(logs: &LogsSection) -> Result<(), String> {
    let layer = RrLogLayer::new(logs)?;
    let max = tracing_subscriber::filter::LevelFilter::from_level(layer.max_level());
    tracing_subscriber::registry()
        .with(layer.with_filter(max))
        .try_init()
        .map_err(|error| error.to_string())
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

    #[test]
    fn lines_in_each_mode() {
        let channel = |mode: &str, encoding: &str| {
            channel(
                &LogChannel {
                    mode: mode.into(),
                    level: String::new(),
                    encoding: encoding.into(),
                    output: Vec::new(),
                    line_ending: "\n".into(),
                    file: None,
                },
                &mut HashMap::new(),
                false,
            )
            .unwrap()
        };
        let fields = || {
            let mut fields = Fields {
                message: "worker is allocated".into(),
                ..Fields::default()
            };
            fields.extra.insert("pid".into(), 4312.into());
            fields
        };
        let dev = format_line(
            &channel("development", ""),
            Level::DEBUG,
            "server",
            fields(),
        );
        let parts: Vec<&str> = dev.trim_end().split('\t').collect();
        assert_eq!(
            parts[1..],
            [
                "DEBUG",
                "server      ",
                "worker is allocated",
                "{\"pid\":4312}"
            ]
        );
        assert!(parts[0].ends_with("+0000"));
        let prod = format_line(&channel("production", ""), Level::WARN, "server", fields());
        let json: serde_json::Value = serde_json::from_str(&prod).unwrap();
        assert_eq!(json["level"], "warn");
        assert_eq!(json["logger"], "server");
        assert_eq!(json["pid"], 4312);
        assert!(json["ts"].as_u64().unwrap() > 1_600_000_000_000_000_000);
        let raw = format_line(&channel("raw", ""), Level::INFO, "server", fields());
        assert_eq!(raw, "worker is allocated\t{\"pid\":4312}\n");
        assert_eq!(channel("production", "").level, Level::INFO);
        assert_eq!(channel("development", "").level, Level::DEBUG);
        let mut coloured = channel("development", "");
        coloured.colour = true;
        let line = format_line(&coloured, Level::ERROR, "http", fields());
        assert!(
            line.contains("\t\x1b[31mERROR\x1b[0m\t\x1b[32mhttp        \x1b[0m\t"),
            "{line:?}"
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
            file: Some(crate::config::FileLoggerOptions {
                log_output: path.clone(),
                max_size: 1 << 20,
                max_age_days: 1,
                max_backups: 1,
                compress: false,
            }),
        };
        let channel = channel(&config, &mut HashMap::new(), true).unwrap();
        assert!(channel.json && !channel.colour);
        let line = format_line(&channel, Level::INFO, "rr", Fields::default());
        assert!(line.ends_with("}\r\n"), "{line:?}");
        for sink in &channel.sinks {
            sink.lock().unwrap().write_all(line.as_bytes()).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
