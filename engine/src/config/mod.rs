//! `.rr.yaml` as a document (spec config-cli-rpc §1): YAML with line numbers, env
//! expansion, `-o` overrides, includes, the version check, and a typed reader whose errors
//! name the key path and the line. Sections are the plugins' to read (`plugins::configure`);
//! this module knows none of them, and warns about the keys they left unread.

mod expand;
pub mod values;
pub mod yaml;

pub use expand::expand;
pub use values::ConfigError;

use std::path::Path;
use values::Reader;
use yaml::{Node, Value};

/// Top-level sections RoadRunner knows (its plugins and the config's own keys): a section
/// outside this list is most likely a typo.
const RR_SECTIONS: [&str; 29] = [
    "version",
    "include",
    "envfile",
    "server",
    "http",
    "status",
    "logs",
    "rpc",
    "endure",
    "reload",
    "metrics",
    "jobs",
    "amqp",
    "beanstalk",
    "sqs",
    "boltdb",
    "kafka",
    "nats",
    "redis",
    "kv",
    "service",
    "tcp",
    "temporal",
    "grpc",
    "centrifuge",
    "fileserver",
    "otel",
    "lock",
    "headers",
];

/// Why a config could not be loaded. The texts of rr where rr has one.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("open {path}: {reason}")]
    Read {
        /// As given.
        path: String,
        /// The OS error in Go's words.
        reason: String,
    },
    /// YAML syntax.
    #[error("config_plugin_init: {0}")]
    Syntax(#[from] yaml::YamlError),
    /// No `version`.
    #[error("rr configuration file should contain a version e.g: version: 3")]
    MissingVersion,
    /// `version` is not a string.
    #[error(
        "config_plugin_init: version should be a string: `version: \"3\"`, actual type is: {0}"
    )]
    VersionType(&'static str),
    /// An included file's `version` differs from the root's.
    #[error("version in included file must be the same as in root")]
    IncludeVersion,
    /// An included file has no string `version`.
    #[error("rr configuration file should contain a version e.g: version: 2.7")]
    IncludeMissingVersion,
    /// A bad `-o` argument.
    #[error("{0}")]
    Override(String),
    /// A value of the wrong type or form.
    #[error("config_plugin_init: {0}")]
    Value(#[from] ConfigError),
}

/// The loaded configuration: the document after expansion, overrides and includes.
#[derive(Debug, Clone)]
pub struct Config {
    /// `version` as written.
    pub version: String,
    /// The document.
    pub root: Node,
    /// Things to log once the logger runs (the 2.7 notice).
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads and loads the file at `path`.
    ///
    /// # Errors
    /// [`LoadError`] with rr's text.
    pub fn load_file(
        path: &Path,
        overrides: &[String],
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LoadError> {
        Self::load(&read_file(path)?, overrides, env)
    }

    /// Loads a config from its text (steps 3–7 of spec §1.3). Included files are read
    /// relative to the current directory (rr's: the config file's own).
    ///
    /// # Errors
    /// [`LoadError`] with rr's text.
    pub fn load(
        text: &str,
        overrides: &[String],
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LoadError> {
        let mut root = yaml::parse(text)?;
        root.map_strings(&mut |value| expand(value, env));
        for argument in overrides {
            let (key, value) = parse_override(argument)?;
            let value = expand(&value, env);
            root.set_path(
                &key.to_lowercase(),
                Node {
                    value: Value::Str(value),
                    line: 0,
                },
            );
        }
        let mut warnings = Vec::new();
        let version = match root.get("version").map(|node| &node.value) {
            None | Some(Value::Null) => return Err(LoadError::MissingVersion),
            Some(Value::Str(version)) => version.clone(),
            Some(other) => return Err(LoadError::VersionType(other.go_type_name())),
        };
        if version == "2.7" {
            warnings.push("please, update your configuration version from version: '2.7' to version: '3', see changes here: https://docs.roadrunner.dev/docs/general/compatibility#v3.0-configuration-and-rr-v2023.x.x".into());
        }
        apply_includes(&mut root, &version, env)?;
        Ok(Self {
            version,
            root,
            warnings,
        })
    }

    /// A config for client subcommands (`rr workers`, `rr reset`): as [`Config::load`],
    /// but a missing `version` is taken as `3` (rr's clients refuse it; Laravel Octane's
    /// reload runs them against the empty `.rr.yaml` it touches).
    ///
    /// # Errors
    /// As [`Config::load`], less the missing version.
    pub fn load_for_client(
        text: &str,
        overrides: &[String],
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LoadError> {
        match Self::load(text, overrides, env) {
            Err(LoadError::MissingVersion) => {
                let mut overrides = overrides.to_vec();
                overrides.push("version=3".into());
                Self::load(text, &overrides, env)
            }
            other => other,
        }
    }
}

/// Notes (logged at debug, as rr ignores them silently) for the keys no plugin read inside
/// the `owned` sections, each with the likely meaning of a typo.
#[must_use]
pub fn unknown_key_notes(reader: &Reader<'_>, owned: &[&str]) -> Vec<String> {
    let mut notes = Vec::new();
    for section in owned {
        for (path, line) in reader.unknown_keys(section) {
            let hint = reader
                .closest_known(&path)
                .map(|known| format!(" (did you mean {known}?)"))
                .unwrap_or_default();
            notes.push(format!(
                "unknown configuration key {path} (line {line}), ignored{hint}"
            ));
        }
    }
    notes
}

/// Warnings for the top-level sections no plugin read: sections rr does not know (with the
/// likely meaning of a typo), and rr's sections that have no ringrunner plugin yet.
#[must_use]
pub fn unread_warnings(root: &Node, owned: &[&str]) -> Vec<String> {
    let mut warnings = Vec::new();
    let Value::Map(entries) = &root.value else {
        return warnings;
    };
    for (key, node) in entries {
        if RR_SECTIONS.contains(&key.as_str()) {
            continue;
        }
        let closest = RR_SECTIONS
            .iter()
            .map(|known| (values::edit_distance(key, known), *known))
            .min()
            .filter(|(distance, _)| *distance <= 2 && *distance * 2 < key.len());
        let hint = closest
            .map(|(_, known)| format!(" (did you mean {known}?)"))
            .unwrap_or_default();
        warnings.push(format!(
            "unknown section {key} (line {}), ignored{hint}",
            node.line
        ));
    }
    let others: Vec<&str> = entries
        .iter()
        .map(|(key, _)| key.as_str())
        .filter(|key| {
            !["version", "include"].contains(key)
                && !owned.contains(key)
                && RR_SECTIONS.contains(key)
        })
        .collect();
    if !others.is_empty() {
        warnings.push(format!(
            "sections without a ringrunner plugin yet, ignored: {}",
            others.join(", ")
        ));
    }
    warnings
}

/// `include: [path, …]` (spec §1.7): after `-o`, each file's top-level keys replace the
/// root's wholesale, in list order; an included file's own `include` is ignored.
fn apply_includes(
    root: &mut Node,
    version: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), LoadError> {
    let paths: Vec<String> = match root.get("include").map(|node| &node.value) {
        Some(Value::Seq(items)) => items
            .iter()
            .filter_map(|item| match &item.value {
                Value::Str(path) => Some(path.clone()),
                _ => None,
            })
            .collect(),
        Some(Value::Str(list)) => list.split(',').map(|p| p.trim().to_owned()).collect(),
        _ => return Ok(()),
    };
    for path in paths.iter().filter(|path| !path.is_empty()) {
        let text = read_file(Path::new(path))?;
        let mut included = yaml::parse(&text)?;
        included.map_strings(&mut |value| expand(value, env));
        match included.get("version").map(|node| &node.value) {
            Some(Value::Str(theirs)) if theirs == version => {}
            Some(Value::Str(_)) => return Err(LoadError::IncludeVersion),
            _ => return Err(LoadError::IncludeMissingVersion),
        }
        let (Value::Map(theirs), Value::Map(ours)) = (included.value, &mut root.value) else {
            continue;
        };
        for (key, node) in theirs.into_iter().filter(|(key, _)| key != "include") {
            match ours.iter_mut().find(|(known, _)| *known == key) {
                Some((_, slot)) => *slot = node,
                None => ours.push((key, node)),
            }
        }
    }
    Ok(())
}

/// rr's `-o key.path=value` (spec §2.2).
fn parse_override(argument: &str) -> Result<(String, String), LoadError> {
    let trimmed = argument.trim_start_matches([' ', '"', '\'']);
    let Some((key, value)) = trimmed.split_once('=') else {
        return Err(LoadError::Override(format!("invalid flag `{argument}`")));
    };
    let key = key.trim_matches([' ', '\n', '\t']);
    let mut value = value.trim_matches([' ', '\n', '\t']).to_owned();
    if key.is_empty() {
        return Err(LoadError::Override("key should not be empty".into()));
    }
    if value.is_empty() {
        return Err(LoadError::Override("value should not be empty".into()));
    }
    for quote in ['"', '\'', '`'] {
        if value.starts_with(quote) {
            let inner = value
                .trim_start_matches(quote)
                .trim_end_matches(quote)
                .replace(&format!("\\{quote}"), &quote.to_string());
            value = inner;
            break;
        }
    }
    Ok((key.to_owned(), value))
}

/// A config file's text, or rr's `open <path>: <reason>` error.
///
/// # Errors
/// [`LoadError::Read`] when the file cannot be read.
pub fn read_file(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|error| LoadError::Read {
        path: path.display().to_string(),
        reason: go_io_error(&error),
    })
}

/// An I/O error as Go words it (`no such file or directory`).
#[must_use]
pub fn go_io_error(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => error.to_string(),
    }
}
