//! One event as one line in a channel's shape: rr's console layout (timestamp, level,
//! logger, message, the fields as a JSON object), its JSON object, or raw, written straight
//! into one buffer.

use super::writer::LossReport;
use super::{Channel, Style, LOGGER_FIELD};
use std::fmt::Write as _;
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing::{Event, Level};

fn level_text(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        _ => "debug",
    }
}

fn level_upper(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

/// Appends text to a line as the inside of a JSON string (no allocation).
struct JsonEscaped<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for JsonEscaped<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        for c in text.chars() {
            match c {
                '"' => self.0.extend_from_slice(b"\\\""),
                '\\' => self.0.extend_from_slice(b"\\\\"),
                '\n' => self.0.extend_from_slice(b"\\n"),
                '\r' => self.0.extend_from_slice(b"\\r"),
                '\t' => self.0.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut utf8 = [0u8; 4];
                    self.0
                        .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        Ok(())
    }
}

/// Appends text to a line as is (console and raw lines).
struct Plain<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Plain<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// Everything before the message: the timestamp, level and logger in the channel's shape.
pub(super) fn write_prefix(line: &mut Vec<u8>, channel: &Channel, level: Level, logger: &str) {
    let now = crate::clock::unix_now();
    if channel.json {
        let ts = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        let _ = write!(
            line,
            "{{\"level\":\"{}\",\"ts\":{ts},\"logger\":\"",
            level_text(level)
        );
        let _ = JsonEscaped(line).write_str(logger);
        line.extend_from_slice(b"\",\"msg\":\"");
    } else if channel.style != Style::Raw {
        let c = crate::clock::civil(now.as_secs());
        let _ = write!(
            line,
            "{}-{:02}-{:02}T{:02}:{:02}:{:02}+0000\t",
            c.year, c.month, c.day, c.hour, c.minute, c.second,
        );
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
                "\x1b[{code}m{}\x1b[0m\t\x1b[32m{logger:<12}\x1b[0m\t",
                level_upper(level)
            );
        } else {
            let _ = write!(line, "{}\t{logger:<12}\t", level_upper(level));
        }
    }
}

pub(super) fn write_message(
    line: &mut Vec<u8>,
    channel: &Channel,
    message: std::fmt::Arguments<'_>,
) {
    if channel.json {
        let _ = JsonEscaped(line).write_fmt(message);
    } else {
        let _ = Plain(line).write_fmt(message);
    }
}

/// Closes the line: the JSON object, or the fields' object after a tab; the line ending.
pub(super) fn write_suffix(line: &mut Vec<u8>, channel: &Channel, fields_open: bool) {
    if channel.json || fields_open {
        line.push(b'}');
    }
    line.extend_from_slice(channel.line_ending.as_bytes());
}

/// First pass over an event's fields: the message only.
struct MessageVisitor<'a> {
    line: &'a mut Vec<u8>,
    channel: &'a Channel,
}

impl Visit for MessageVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            write_message(self.line, self.channel, format_args!("{value:?}"));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            write_message(self.line, self.channel, format_args!("{value}"));
        }
    }
}

/// Second pass: every other field as a JSON member, in the order the event has them.
struct FieldsVisitor<'a> {
    line: &'a mut Vec<u8>,
    /// Members follow the message inside the line's own object (JSON lines).
    inline: bool,
    /// A `{` is open (console and raw lines).
    open: bool,
}

impl FieldsVisitor<'_> {
    fn key(&mut self, field: &Field) {
        if self.inline || self.open {
            self.line.push(b',');
        } else {
            self.line.extend_from_slice(b"\t{");
            self.open = true;
        }
        self.line.push(b'"');
        let _ = JsonEscaped(self.line).write_str(field.name());
        self.line.extend_from_slice(b"\":");
    }
}

impl Visit for FieldsVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "message" | LOGGER_FIELD) {
            return;
        }
        self.key(field);
        self.line.push(b'"');
        let _ = write!(JsonEscaped(self.line), "{value:?}");
        self.line.push(b'"');
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if matches!(field.name(), "message" | LOGGER_FIELD) {
            return;
        }
        self.key(field);
        self.line.push(b'"');
        let _ = JsonEscaped(self.line).write_str(value);
        self.line.push(b'"');
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(Plain(self.line), "{value}");
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(Plain(self.line), "{value}");
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(Plain(self.line), "{value}");
        } else {
            self.line.extend_from_slice(b"null");
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(Plain(self.line), "{value}");
    }
}

/// One event as one line in the channel's shape.
pub(super) fn format_line(channel: &Channel, event: &Event<'_>, logger: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    write_prefix(&mut line, channel, *event.metadata().level(), logger);
    event.record(&mut MessageVisitor {
        line: &mut line,
        channel,
    });
    if channel.json {
        line.push(b'"');
    }
    let mut fields = FieldsVisitor {
        line: &mut line,
        inline: channel.json,
        open: false,
    };
    event.record(&mut fields);
    let open = fields.open;
    write_suffix(&mut line, channel, open);
    line
}

/// The report of lines the log lost (dropped from a full queue, or failed to write), as a
/// warning of the `logs` logger in the channel's shape, the counts as fields.
pub(super) fn format_loss_report(channel: &Channel, report: &LossReport<'_>) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    write_prefix(&mut line, channel, Level::WARN, "logs");
    write_message(
        &mut line,
        channel,
        format_args!("log lines lost: the log output fell behind or failed"),
    );
    line.extend_from_slice(if channel.json { b"\"," } else { b"\t{" });
    let lost = report.lost;
    let _ = write!(
        line,
        "\"dropped_lines\":{},\"dropped_bytes\":{},\"write_errors\":{}",
        lost.dropped_lines, lost.dropped_bytes, lost.write_errors
    );
    if let Some(error) = report.last_error {
        line.extend_from_slice(b",\"error\":\"");
        let _ = JsonEscaped(&mut line).write_str(error);
        line.push(b'"');
    }
    write_suffix(&mut line, channel, true);
    line
}
