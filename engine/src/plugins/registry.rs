//! The plugin registry: which plugins exist, in start order, and the reading of a config
//! into configured plugins, with warnings for what no plugin read.

use super::Plugin;
use crate::config::values::{ConfigError, Reader};
use crate::config::{Config, LoadError};
use std::time::Duration;

/// What a plugin's `configure` gives: the configured plugin, or `None` when the config does
/// not ask for it.
pub type ConfigureResult = Result<Option<Box<dyn Plugin>>, ConfigError>;

/// A plugin's line in the registry.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The top-level section it owns.
    pub section: &'static str,
    /// Reads its section; `None` when the config does not ask for the plugin.
    pub configure: fn(&mut SectionContext<'_>) -> ConfigureResult,
}

/// What a plugin's `configure` reads from.
pub struct SectionContext<'a> {
    /// The whole document; a plugin reads its own section (and, like rr's, may peek at
    /// another's key, as `server` reads `rpc.listen`).
    pub reader: &'a Reader<'a>,
    /// Variables for `$VAR` expansion (the environment, then the dotenv file).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// A dotenv file's variables, inherited by the processes the server starts.
    pub inherited_env: &'a [(String, String)],
    /// Things to log once the logger runs.
    pub warnings: &'a mut Vec<String>,
}

impl std::fmt::Debug for SectionContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SectionContext")
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// Every plugin, in start order: the logger first, `server` before the plugins that run
/// workers, `rpc` before them too (workers may call it while booting), `status` last.
pub const REGISTRY: &[Entry] = &[
    super::logs::ENTRY,
    super::server::ENTRY,
    super::rpc::ENTRY,
    super::otel::ENTRY,
    super::http::ENTRY,
    super::tcp::ENTRY,
    super::grpc::ENTRY,
    super::centrifuge::ENTRY,
    super::jobs::ENTRY,
    super::jobs::AMQP_ENTRY,
    super::status::ENTRY,
    super::metrics::ENTRY,
    super::kv::ENTRY,
    super::lock::ENTRY,
    super::reload::ENTRY,
    super::service::ENTRY,
    super::temporal::ENTRY,
];

/// The sections the container itself reads.
const CONTAINER_SECTIONS: [&str; 1] = ["endure"];

/// Plugins that run workers from the `server` section. Without that section rr's container
/// disables them (a plugin whose dependency is off is off): they are left out here too, with
/// a warning, and their listeners stay silent.
const SERVER_DEPENDENTS: [&str; 5] = ["http", "tcp", "jobs", "grpc", "centrifuge"];

/// The plugins a config asks for, ready to start.
#[derive(Debug)]
pub struct Configured {
    /// In start order.
    pub plugins: Vec<Box<dyn Plugin>>,
    /// `endure.grace_period` (30 s default): the shutdown deadline.
    pub grace_period: Duration,
    /// The config's warnings, then the plugins': unsupported options, sections left out.
    pub warnings: Vec<String>,
    /// What is logged at debug: keys no plugin read (rr ignores them silently).
    pub notes: Vec<String>,
    /// Every key path the plugins and the container read, sorted (the configuration
    /// reference's checklist: `engine/tests/docs_config_keys.rs`).
    pub read_keys: Vec<String>,
}

impl Configured {
    /// The configured plugin of type `T`.
    #[must_use]
    pub fn get<T: Plugin>(&self) -> Option<&T> {
        self.plugins
            .iter()
            .find_map(|plugin| plugin.as_any().downcast_ref::<T>())
    }

    /// Leaves out, with a warning each, the plugins that run workers when there is no
    /// `server` section to run them from: rr starts without them and their listeners stay
    /// silent.
    pub fn drop_server_dependents_without_server(&mut self) {
        if self.has("server") {
            return;
        }
        self.plugins.retain(|plugin| {
            let needs_server = SERVER_DEPENDENTS.contains(&plugin.name());
            if needs_server {
                let name = plugin.name();
                tracing::warn!(
                    "{name} section without a server section (server.command): the {name} \
                     plugin is not started, as rr disables it"
                );
            }
            !needs_server
        });
    }

    /// True when a plugin called `name` is configured.
    #[must_use]
    pub fn has(&self, name: &str) -> bool {
        self.plugins.iter().any(|plugin| plugin.name() == name)
    }
}

/// Reads every plugin's section from `config`.
///
/// # Errors
/// The first section with a bad value, as `config_plugin_init: <key> (line N): …`.
pub fn configure(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
    inherited_env: &[(String, String)],
) -> Result<Configured, LoadError> {
    let reader = Reader::new(&config.root);
    let mut warnings = config.warnings.clone();
    let mut plugins = Vec::new();
    for entry in REGISTRY {
        let mut ctx = SectionContext {
            reader: &reader,
            env,
            inherited_env,
            warnings: &mut warnings,
        };
        if let Some(plugin) = (entry.configure)(&mut ctx)? {
            plugins.push(plugin);
        }
    }

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
    let owned: Vec<&str> = REGISTRY
        .iter()
        .map(|entry| entry.section)
        .chain(CONTAINER_SECTIONS)
        .collect();
    let notes = crate::config::unknown_key_notes(&reader, &owned);
    warnings.extend(crate::config::unread_warnings(&config.root, &owned));
    Ok(Configured {
        plugins,
        grace_period,
        warnings,
        notes,
        read_keys: reader.read_paths(),
    })
}
