//! `.rr.yaml` → typed sections with rr's defaults (spec config-cli-rpc §1, http §5,
//! pool-server §2, §9): env expansion, `-o` overrides, the version check, weak typing, errors
//! that name the key path and the line, and warnings for keys nothing reads.

mod expand;
mod logs_section;
mod sections;
pub mod values;
pub mod yaml;

pub use expand::expand;
pub use logs_section::{FileLoggerOptions, LogChannel, LogsSection};
pub use sections::{HttpSection, PoolSection, ServerSection, StatusSection, Uploads};
pub use values::ConfigError;

use std::path::Path;
use std::time::Duration;
use values::Reader;
use yaml::{Node, Value};

/// Top-level sections with a ringrunner plugin; their unknown keys are reported.
const IMPLEMENTED_SECTIONS: [&str; 6] = ["server", "http", "status", "logs", "rpc", "endure"];

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

/// The loaded configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `version` as written.
    pub version: String,
    /// `server`, when present.
    pub server: Option<ServerSection>,
    /// `http`, when present.
    pub http: Option<HttpSection>,
    /// `status`, when present.
    pub status: Option<StatusSection>,
    /// `logs` (defaults when absent).
    pub logs: LogsSection,
    /// `rpc.listen`, when set.
    pub rpc_listen: Option<String>,
    /// `endure.grace_period` (30 s default): the shutdown deadline.
    pub grace_period: Duration,
    /// Things to log once the logger runs: unknown keys, unsupported options, the 2.7 notice.
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
        let text = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
            path: path.display().to_string(),
            reason: go_io_error(&error),
        })?;
        Self::load(&text, overrides, env)
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
        let reader = Reader::new(&root);
        let rpc_listen = reader.string("rpc.listen")?;
        let server = if reader.has("server") {
            Some(ServerSection::read(&reader, env)?)
        } else {
            None
        };
        let http = if reader.has("http") {
            Some(HttpSection::read(&reader, &mut warnings)?)
        } else {
            None
        };
        let status = if reader.has("status") {
            Some(StatusSection::read(&reader)?)
        } else {
            None
        };
        let logs = LogsSection::read(&reader, &mut warnings)?;
        let grace_period = reader
            .duration("endure.grace_period")?
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(30));
        for key in [
            "endure.print_graph",
            "endure.log_level",
            "endure.watchdog_sec",
        ] {
            let _ = reader.has(key);
        }
        for section in IMPLEMENTED_SECTIONS {
            for (path, line) in reader.unknown_keys(section) {
                let hint = reader
                    .closest_known(&path)
                    .map(|known| format!(" (did you mean {known}?)"))
                    .unwrap_or_default();
                warnings.push(format!(
                    "unknown configuration key {path} (line {line}), ignored{hint}"
                ));
            }
        }
        if let Value::Map(entries) = &root.value {
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
                        && !IMPLEMENTED_SECTIONS.contains(key)
                        && RR_SECTIONS.contains(key)
                })
                .collect();
            if !others.is_empty() {
                warnings.push(format!(
                    "sections without a ringrunner plugin yet, ignored: {}",
                    others.join(", ")
                ));
            }
        }
        Ok(Self {
            version,
            server,
            http,
            status,
            logs,
            rpc_listen,
            grace_period,
            warnings,
        })
    }
}

impl Config {
    /// Adds `vars` (a dotenv file's) to what the processes the server starts inherit: below
    /// `server.env` and `server.on_init.env`, which win over them as over the environment.
    pub fn inherit_env(&mut self, vars: &[(String, String)]) {
        let Some(server) = self.server.as_mut() else {
            return;
        };
        prepend_inherited(&mut server.env, vars);
        if let Some(on_init) = server.on_init.as_mut() {
            prepend_inherited(&mut on_init.command.env, vars);
        }
    }
}

/// Puts the `vars` that `own` does not set in front of it (later entries win).
fn prepend_inherited<T: From<String> + PartialEq<str>>(
    own: &mut Vec<(T, T)>,
    vars: &[(String, String)],
) {
    let mut merged: Vec<(T, T)> = vars
        .iter()
        .filter(|(key, _)| !own.iter().any(|(known, _)| known == key.as_str()))
        .map(|(key, value)| (key.clone().into(), value.clone().into()))
        .collect();
    merged.append(own);
    *own = merged;
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
        let text = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
            path: path.clone(),
            reason: go_io_error(&error),
        })?;
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

/// An I/O error as Go words it (`no such file or directory`).
fn go_io_error(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests;
