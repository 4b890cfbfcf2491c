//! Typed reads of config values with rr's weak typing (spec config-cli-rpc §1.6): errors name
//! the key path and the line, and every key read is recorded so unknown ones can be reported.

use super::yaml::{Node, Value};
use std::cell::RefCell;
use std::collections::HashSet;
use std::time::Duration;

/// A config value of the wrong type or form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{}: {message}", line_suffix(*.line))]
pub struct ConfigError {
    /// Dotted key path.
    pub path: String,
    /// Line in the file; 0 when the value came from `-o` or the key is missing.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn line_suffix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" (line {line})")
    }
}

/// Reads typed values out of the document and remembers which keys were read.
#[derive(Debug)]
pub struct Reader<'a> {
    root: &'a Node,
    read: RefCell<HashSet<String>>,
}

impl<'a> Reader<'a> {
    /// A reader over `root`.
    #[must_use]
    pub fn new(root: &'a Node) -> Self {
        Self {
            root,
            read: RefCell::new(HashSet::new()),
        }
    }

    /// The whole document.
    #[must_use]
    pub fn root(&self) -> &'a Node {
        self.root
    }

    /// The node at `path`, recorded as known; YAML `null` counts as absent.
    #[must_use]
    pub fn node(&self, path: &str) -> Option<&'a Node> {
        self.read.borrow_mut().insert(path.to_owned());
        self.root
            .get_path(path)
            .filter(|node| node.value != Value::Null)
    }

    /// True when the key exists (even with an empty value).
    #[must_use]
    pub fn has(&self, path: &str) -> bool {
        self.read.borrow_mut().insert(path.to_owned());
        self.root.get_path(path).is_some()
    }

    fn error(node: &Node, path: &str, message: String) -> ConfigError {
        ConfigError {
            path: path.to_owned(),
            line: node.line,
            message,
        }
    }

    /// The value at `path` converted by `convert`; a value it refuses is an error naming the
    /// key, the line and `expected`.
    fn typed<T>(
        &self,
        path: &str,
        expected: &str,
        convert: impl Fn(&Value) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(node) = self.node(path) else {
            return Ok(None);
        };
        convert(&node.value).map(Some).ok_or_else(|| {
            Self::error(
                node,
                path,
                format!("expected {expected}, got {}", describe(&node.value)),
            )
        })
    }

    /// A string; numbers and bools are accepted as their text.
    ///
    /// # Errors
    /// A list or a map.
    pub fn string(&self, path: &str) -> Result<Option<String>, ConfigError> {
        self.typed(path, "a string", scalar_text)
    }

    /// A bool; `"true"`, `"1"`, … accepted.
    ///
    /// # Errors
    /// Anything else.
    pub fn bool(&self, path: &str) -> Result<Option<bool>, ConfigError> {
        self.typed(path, "a bool", |value| match value {
            Value::Bool(b) => Some(*b),
            Value::Int(n) => Some(*n != 0),
            Value::Str(text) => match text.to_ascii_lowercase().as_str() {
                "true" | "1" | "t" | "yes" | "on" => Some(true),
                "false" | "0" | "f" | "no" | "off" | "" => Some(false),
                _ => None,
            },
            _ => None,
        })
    }

    /// A non-negative integer; `"8"` accepted.
    ///
    /// # Errors
    /// Anything else, negative numbers included.
    pub fn unsigned(&self, path: &str) -> Result<Option<u64>, ConfigError> {
        self.typed(path, "a non-negative integer", |value| match value {
            Value::Int(n) => u64::try_from(*n).ok(),
            Value::Str(text) => text.trim().parse().ok(),
            Value::Float(f) if f.fract() == 0.0 && *f >= 0.0 => Some(*f as u64),
            _ => None,
        })
    }

    /// A Go duration (`1m30s`, `1.5s`); a bare integer is nanoseconds, as in rr.
    ///
    /// # Errors
    /// Anything that does not parse.
    pub fn duration(&self, path: &str) -> Result<Option<Duration>, ConfigError> {
        self.typed(
            path,
            "a duration such as 60s or 1m30s",
            |value| match value {
                Value::Int(n) => u64::try_from(*n).ok().map(Duration::from_nanos),
                Value::Str(text) => parse_go_duration(text.trim()),
                _ => None,
            },
        )
    }

    /// A whole number of seconds, where rr's option is an integer of seconds
    /// (`status.check_timeout`, `jobs.timeout`, `timeout_stop_sec`): `10` or `"10"` is ten
    /// seconds, and a Go duration string (`10s`, `1m30s`) is read as the duration it says.
    ///
    /// # Errors
    /// Anything else.
    pub fn seconds(&self, path: &str) -> Result<Option<Duration>, ConfigError> {
        self.typed(
            path,
            "a number of seconds or a duration such as 10s",
            |value| match value {
                Value::Int(n) => u64::try_from(*n).ok().map(Duration::from_secs),
                Value::Float(f) if *f >= 0.0 && f.is_finite() => Some(Duration::from_secs_f64(*f)),
                Value::Str(text) => {
                    let text = text.trim();
                    text.parse::<u64>()
                        .ok()
                        .map(Duration::from_secs)
                        .or_else(|| parse_go_duration(text))
                }
                _ => None,
            },
        )
    }

    /// A list of strings; a string is split on commas (rr's weak typing), and an empty map
    /// (`consume: {}`) is an empty list, as mapstructure decodes it.
    ///
    /// # Errors
    /// A map with entries, or a list with non-scalar items.
    pub fn strings(&self, path: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(node) = self.node(path) else {
            return Ok(None);
        };
        match &node.value {
            Value::Str(text) => Ok(Some(
                text.split(',')
                    .map(str::to_owned)
                    .filter(|s| !s.is_empty())
                    .collect(),
            )),
            Value::Seq(items) => items
                .iter()
                .map(|item| match &item.value {
                    Value::Str(text) => Ok(text.clone()),
                    Value::Int(n) => Ok(n.to_string()),
                    Value::Float(f) => Ok(f.to_string()),
                    Value::Bool(b) => Ok(b.to_string()),
                    other => Err(Self::error(
                        item,
                        path,
                        format!(
                            "expected a list of strings, got an item {}",
                            describe(other)
                        ),
                    )),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Value::Map(entries) if entries.is_empty() => Ok(Some(Vec::new())),
            other => Err(Self::error(
                node,
                path,
                format!("expected a list of strings, got {}", describe(other)),
            )),
        }
    }

    /// A map of strings (keys as written, lower-cased by the loader).
    ///
    /// # Errors
    /// Not a map, or a non-scalar value.
    ///
    /// A list of one-key maps (`env: [- KEY: value]`, as the Symfony bundle's config writes
    /// it) is merged into one map, later keys winning: mapstructure's weak typing, which rr
    /// decodes with, does the same.
    pub fn string_map(&self, path: &str) -> Result<Vec<(String, String)>, ConfigError> {
        let Some(node) = self.node(path) else {
            return Ok(Vec::new());
        };
        let not_a_map = |node: &Node| {
            Self::error(
                node,
                path,
                format!("expected a map, got {}", describe(&node.value)),
            )
        };
        let mut merged: Vec<&(String, Node)> = Vec::new();
        match &node.value {
            Value::Map(entries) => merged.extend(entries),
            Value::Seq(items) => {
                for item in items {
                    let Value::Map(entries) = &item.value else {
                        return Err(not_a_map(item));
                    };
                    for entry in entries {
                        merged.retain(|(key, _)| *key != entry.0);
                        merged.push(entry);
                    }
                }
            }
            _ => return Err(not_a_map(node)),
        }
        merged
            .into_iter()
            .map(|(key, value)| {
                let text = match &value.value {
                    Value::Null => Some(String::new()),
                    other => scalar_text(other),
                };
                text.map(|text| (key.clone(), text)).ok_or_else(|| {
                    Self::error(
                        value,
                        &format!("{path}.{key}"),
                        format!("expected a string, got {}", describe(&value.value)),
                    )
                })
            })
            .collect()
    }

    /// Every key path read so far, sorted: the keys this reader's callers know, which the
    /// configuration reference documents (a test checks each appears there).
    #[must_use]
    pub fn read_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.read.borrow().iter().cloned().collect();
        paths.sort_unstable();
        paths
    }

    /// The known key closest to the unknown `path` among its siblings (a typo's likely
    /// meaning): at most two edits away, and fewer than half the key's length.
    #[must_use]
    pub fn closest_known(&self, path: &str) -> Option<String> {
        let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
        let read = self.read.borrow();
        read.iter()
            .filter_map(|known| {
                let (known_parent, known_key) = known.rsplit_once('.').unwrap_or(("", known));
                (known_parent == parent).then_some(known_key)
            })
            .map(|known_key| (edit_distance(key, known_key), known_key))
            .filter(|(distance, _)| *distance <= 2 && *distance * 2 < key.len().max(2))
            .min()
            .map(|(_, known_key)| {
                if parent.is_empty() {
                    known_key.to_owned()
                } else {
                    format!("{parent}.{known_key}")
                }
            })
    }

    /// Keys under `section` that nothing read, with their lines, in document order.
    #[must_use]
    pub fn unknown_keys(&self, section: &str) -> Vec<(String, usize)> {
        let read = self.read.borrow();
        let mut unknown = Vec::new();
        if let Some(node) = self.root.get_path(section) {
            collect_unknown(&read, node, section, &mut unknown);
        }
        unknown
    }
}

/// Levenshtein distance over chars.
#[must_use]
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn collect_unknown(
    read: &HashSet<String>,
    node: &Node,
    path: &str,
    out: &mut Vec<(String, usize)>,
) {
    let Value::Map(entries) = &node.value else {
        return;
    };
    for (key, child) in entries {
        let child_path = format!("{path}.{key}");
        if read.contains(&child_path) {
            continue;
        }
        let prefix = format!("{child_path}.");
        if read.iter().any(|known| known.starts_with(&prefix)) {
            collect_unknown(read, child, &child_path, out);
        } else {
            out.push((child_path, child.line));
        }
    }
}

/// A scalar as text (weak typing: numbers and bools are accepted where a string is wanted).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Str(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A value as an error message quotes it: long strings are cut, so an error never prints
/// a whole file's worth of text.
fn describe(value: &Value) -> String {
    const QUOTED_CHARS_MAX: usize = 80;
    match value {
        Value::Str(text) if text.chars().count() > QUOTED_CHARS_MAX => {
            let head: String = text.chars().take(QUOTED_CHARS_MAX).collect();
            format!("{head:?}… ({} bytes)", text.len())
        }
        Value::Str(text) => format!("{text:?}"),
        Value::Int(n) => n.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Seq(_) => "a list".into(),
        Value::Map(_) => "a map".into(),
    }
}

/// Go's `time.ParseDuration` for non-negative values.
#[must_use]
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * nanos_per_unit;
    }
    (total.is_finite() && total < u64::MAX as f64).then(|| Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::super::yaml::parse;
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration("10x"), None);
    }

    #[test]
    fn seconds_take_numbers_and_go_durations_and_lists_take_an_empty_map() {
        let doc = parse(
            "a:\n  n: 10\n  s: \"15\"\n  d: 1m30s\n  f: 1.5\n  bad: soon\n  none: {}\n  some: {x: 1}\n",
        )
        .unwrap();
        let reader = Reader::new(&doc);
        assert_eq!(
            reader.seconds("a.n").unwrap(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            reader.seconds("a.s").unwrap(),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            reader.seconds("a.d").unwrap(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            reader.seconds("a.f").unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(reader.seconds("a.missing").unwrap(), None);
        let error = reader.seconds("a.bad").unwrap_err();
        assert!(error.to_string().contains("a.bad (line 6)"), "{error}");
        assert_eq!(reader.strings("a.none").unwrap(), Some(Vec::new()));
        assert!(reader.strings("a.some").is_err());
    }

    #[test]
    fn weak_typing_and_errors_with_lines() {
        let doc =
            parse("a:\n  n: \"8\"\n  bad: abc\n  d: 60\n  list: x,y\n  flag: \"true\"\n").unwrap();
        let reader = Reader::new(&doc);
        assert_eq!(reader.unsigned("a.n").unwrap(), Some(8));
        let error = reader.unsigned("a.bad").unwrap_err();
        assert_eq!(
            error.to_string(),
            "a.bad (line 3): expected a non-negative integer, got \"abc\""
        );
        assert_eq!(
            reader.duration("a.d").unwrap(),
            Some(Duration::from_nanos(60))
        );
        assert_eq!(
            reader.strings("a.list").unwrap(),
            Some(vec!["x".into(), "y".into()])
        );
        assert_eq!(reader.bool("a.flag").unwrap(), Some(true));
        assert_eq!(reader.unsigned("a.missing").unwrap(), None);
    }

    #[test]
    fn unknown_keys_are_listed_with_lines() {
        let doc = parse("http:\n  address: x\n  adress: y\n  pool:\n    num_workers: 1\n    typo: 2\n  other: 3\n").unwrap();
        let reader = Reader::new(&doc);
        let _ = reader.string("http.address");
        let _ = reader.unsigned("http.pool.num_workers");
        assert_eq!(
            reader.read_paths(),
            vec![
                "http.address".to_owned(),
                "http.pool.num_workers".to_owned()
            ]
        );
        assert_eq!(
            reader.unknown_keys("http"),
            vec![
                ("http.adress".to_owned(), 3),
                ("http.pool.typo".to_owned(), 6),
                ("http.other".to_owned(), 7)
            ]
        );
    }
}
