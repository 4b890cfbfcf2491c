//! The `logs` section (spec config-cli-rpc §5): the root logger, per-logger channels and
//! rotated log files, with rr's defaults. The container installs the logger from it before
//! any plugin starts (every plugin logs), so the plugin's own start has nothing left to do.

use super::writer::LogCounters;
use crate::config::values::{ConfigError, Reader};
use crate::plugins::metrics::exposition::{Family, Kind};
use crate::plugins::{Plugin, SectionContext, Service, StartContext};
use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

/// One logger's options (spec config-cli-rpc §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChannel {
    /// `development`, `production`, `raw`, `off`, or another word (the fallback style).
    pub mode: String,
    /// `debug` … `fatal`; empty = the mode's default.
    pub level: String,
    /// `console` or `json`; empty = the mode's.
    pub encoding: String,
    /// Sinks: `stdout`, `stderr` or file paths.
    pub output: Vec<String>,
    /// Appended to each entry (`\n`).
    pub line_ending: String,
    /// `file_logger_options`: when set, replaces `output` with a size-rotated JSON file.
    pub file: Option<FileLoggerOptions>,
}

/// `logs.file_logger_options` (spec config-cli-rpc §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLoggerOptions {
    /// The file (default `<tmpdir>/rr-lumberjack.log`; rr's default, the temp dir itself, is
    /// a quirk we fix).
    pub log_output: PathBuf,
    /// Bytes before rotation (`max_size` MB, default 100).
    pub max_size: u64,
    /// Days rotated files are kept (default 24; 0 keeps them forever).
    pub max_age_days: u64,
    /// Rotated files kept (default 10; 0 keeps all).
    pub max_backups: usize,
    /// gzip rotated files.
    pub compress: bool,
}

/// `logs`.
#[derive(Debug, Clone)]
pub struct LogsSection {
    /// The root logger.
    pub root: LogChannel,
    /// Per-logger options (`server`, `http`, …).
    pub channels: Vec<(String, LogChannel)>,
    /// What the log installed from this section loses (dropped lines, failed writes);
    /// the running plugin exports them to the metrics plugin.
    pub counters: Arc<LogCounters>,
}

/// Sections are equal by their settings; the counters are state, not configuration.
impl PartialEq for LogsSection {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root && self.channels == other.channels
    }
}

impl Eq for LogsSection {}

impl Default for LogsSection {
    fn default() -> Self {
        Self {
            root: LogChannel {
                mode: "development".into(),
                level: "debug".into(),
                encoding: String::new(),
                output: vec!["stderr".into()],
                line_ending: "\n".into(),
                file: None,
            },
            channels: Vec::new(),
            counters: Arc::default(),
        }
    }
}

impl LogsSection {
    pub(super) fn read(
        reader: &Reader<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        if !reader.has("logs") {
            return Ok(Self::default());
        }
        let root = Self::channel(reader, "logs", "development")?;
        let mut channels = Vec::new();
        if let Some(node) = reader.node("logs.channels") {
            if let crate::config::yaml::Value::Map(entries) = &node.value {
                for (name, _) in entries {
                    let channel = Self::channel(reader, &format!("logs.channels.{name}"), "")?;
                    channels.push((name.clone(), channel));
                }
            }
        }
        let _ = reader.has("logs.err_output");
        if root.file.as_ref().is_some_and(|file| file.compress) {
            warnings.push(
                "logs.file_logger_options.compress is not supported; rotated files stay plain"
                    .into(),
            );
        }
        Ok(Self {
            root,
            channels,
            counters: Arc::default(),
        })
    }

    fn channel(
        reader: &Reader<'_>,
        prefix: &str,
        default_mode: &str,
    ) -> Result<LogChannel, ConfigError> {
        let key = |name: &str| format!("{prefix}.{name}");
        let _ = reader.has(&key("err_output"));
        let file = if reader.has(&key("file_logger_options")) {
            let option = |name: &str| key(&format!("file_logger_options.{name}"));
            Some(FileLoggerOptions {
                log_output: reader
                    .string(&option("log_output"))?
                    .filter(|path| !path.is_empty())
                    .map_or_else(
                        || std::env::temp_dir().join("rr-lumberjack.log"),
                        PathBuf::from,
                    ),
                max_size: reader
                    .unsigned(&option("max_size"))?
                    .filter(|&mb| mb > 0)
                    .unwrap_or(100)
                    .saturating_mul(1024 * 1024),
                max_age_days: reader.unsigned(&option("max_age"))?.unwrap_or(24),
                max_backups: reader
                    .unsigned(&option("max_backups"))?
                    .map_or(10, |n| usize::try_from(n).unwrap_or(usize::MAX)),
                compress: reader.bool(&option("compress"))?.unwrap_or(false),
            })
        } else {
            None
        };
        Ok(LogChannel {
            line_ending: reader
                .string(&key("line_ending"))?
                .filter(|ending| !ending.is_empty())
                .unwrap_or_else(|| "\n".into()),
            file,
            mode: reader
                .string(&key("mode"))?
                .unwrap_or_else(|| default_mode.into())
                .to_lowercase(),
            level: reader
                .string(&key("level"))?
                .unwrap_or_default()
                .to_lowercase(),
            encoding: reader
                .string(&key("encoding"))?
                .unwrap_or_default()
                .to_lowercase(),
            output: reader
                .strings(&key("output"))?
                .filter(|o| !o.is_empty())
                .unwrap_or_else(|| vec!["stderr".into()]),
        })
    }
}

/// The registry's entry: `logs` is always configured (rr's defaults when absent).
pub const ENTRY: crate::plugins::Entry = crate::plugins::Entry {
    section: "logs",
    configure: |ctx: &mut SectionContext<'_>| {
        Ok(Some(Box::new(LogsSection::read(ctx.reader, ctx.warnings)?)))
    },
};

impl Plugin for LogsSection {
    fn name(&self) -> &'static str {
        "logs"
    }

    fn start(self: Box<Self>, _ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        Ok(Arc::new(*self))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Service for LogsSection {
    fn name(&self) -> &'static str {
        "logs"
    }

    /// What the log lost: `rr_logs_dropped_lines_total`, `rr_logs_dropped_bytes_total`,
    /// `rr_logs_write_errors_total` (ours: rr has no such series).
    fn collect(&self, families: &mut Vec<Family>) {
        let losses = self.counters.read();
        for (name, help, value) in [
            (
                "rr_logs_dropped_lines_total",
                "Log lines dropped because the log output did not keep up.",
                losses.dropped_lines,
            ),
            (
                "rr_logs_dropped_bytes_total",
                "Bytes of the log lines dropped because the log output did not keep up.",
                losses.dropped_bytes,
            ),
            (
                "rr_logs_write_errors_total",
                "Writes to a log output that failed; the lines they carried are lost.",
                losses.write_errors,
            ),
        ] {
            families.push(Family::single(name, help, Kind::Counter, value as f64));
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
