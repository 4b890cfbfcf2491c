//! The `reload` plugin (spec devops § reload): resets a plugin's workers when a watched file
//! changes, as `rr reset <plugin>` does. rr polls every file every `interval`; ours listens
//! to inotify on a thread of its own (`watcher.rs`) and resets each affected plugin once per
//! burst, one `interval` after the burst's first event.

#[cfg(test)]
mod config_tests;
mod watcher;

use super::{Directory, Lifecycle, Plugin, SectionContext, Service, StartContext};
use crate::config::yaml::Value;
use crate::config::ConfigError;
use crate::runtime::Shards;
use std::any::Any;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The registry's entry.
pub const ENTRY: super::Entry = super::Entry {
    section: "reload",
    configure,
};

/// rr's default `interval`, and its floor.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// One service's watch: `services.<name>` with the global patterns appended.
#[derive(Debug, Clone)]
pub struct WatchedService {
    /// The plugin to reset (`http`, `jobs`, ...).
    pub name: String,
    /// Absolute directories to watch.
    pub dirs: Vec<PathBuf>,
    /// Subdirectories too, and those created later.
    pub recursive: bool,
    /// Absolute paths whose files (and, recursive, subtrees) are left out.
    pub ignore: Vec<PathBuf>,
    /// Substrings of a file's base name that make it watched.
    pub patterns: Vec<String>,
}

impl WatchedService {
    /// rr's filter: a base name containing any pattern (substring match, so `.php` also
    /// matches `a.php.bak`).
    #[must_use]
    pub fn matches(&self, base_name: &str) -> bool {
        self.patterns
            .iter()
            .any(|pattern| base_name.contains(pattern.as_str()))
    }

    /// True when `path` is an ignored path or lies below one.
    #[must_use]
    pub fn ignores(&self, path: &Path) -> bool {
        self.ignore.iter().any(|ignored| path.starts_with(ignored))
    }
}

/// The `reload` section as rr reads it.
#[derive(Debug, Clone)]
pub struct ReloadSection {
    /// The debounce delay (rr: also its poll period).
    pub interval: Duration,
    /// The services to watch, in config order.
    pub services: Vec<WatchedService>,
}

fn configure(ctx: &mut SectionContext<'_>) -> Result<Option<Box<dyn Plugin>>, ConfigError> {
    if ctx.reader.node("reload").is_none() {
        return Ok(None);
    }
    let reader = ctx.reader;
    let interval = reader
        .duration("reload.interval")?
        .unwrap_or(DEFAULT_INTERVAL);
    let global_patterns = reader
        .strings("reload.patterns")?
        .unwrap_or_else(|| vec![".php".to_owned()]);
    let names: Vec<String> = match reader.node("reload.services").map(|node| &node.value) {
        Some(Value::Map(entries)) => entries.iter().map(|(name, _)| name.clone()).collect(),
        _ => Vec::new(),
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let absolute = |paths: Vec<String>| -> Vec<PathBuf> {
        paths.into_iter().map(|path| cwd.join(path)).collect()
    };
    let mut services = Vec::with_capacity(names.len());
    for name in names {
        let key = |field: &str| format!("reload.services.{name}.{field}");
        let mut patterns = reader.strings(&key("patterns"))?.unwrap_or_default();
        patterns.extend(global_patterns.iter().cloned());
        services.push(WatchedService {
            dirs: absolute(reader.strings(&key("dirs"))?.unwrap_or_default()),
            recursive: reader.bool(&key("recursive"))?.unwrap_or(false),
            ignore: absolute(reader.strings(&key("ignore"))?.unwrap_or_default()),
            patterns,
            name,
        });
    }
    Ok(Some(Box::new(ReloadSection { interval, services })))
}

impl Plugin for ReloadSection {
    fn name(&self) -> &'static str {
        "reload"
    }

    /// Starts the watcher thread; fails as rr's Serve does on an interval under a second.
    fn start(self: Box<Self>, ctx: &StartContext<'_>) -> Result<Arc<dyn Service>, String> {
        if self.interval < DEFAULT_INTERVAL {
            return Err("reload interval is too fast".into());
        }
        let (stop_reader, stop_writer) =
            rustix::pipe::pipe().map_err(|error| format!("reload: pipe: {error}"))?;
        let resets = Resets {
            shards: Arc::clone(ctx.shards),
            directory: Arc::clone(ctx.directory),
            lifecycle: Arc::clone(ctx.lifecycle),
        };
        let watcher = watcher::Watcher::new(*self, stop_reader)
            .map_err(|error| format!("reload: inotify: {error}"))?;
        std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || watcher.run(&resets))
            .map_err(|error| format!("reload: thread: {error}"))?;
        Ok(Arc::new(ReloadPlugin {
            stop_writer: Mutex::new(Some(stop_writer)),
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What the watcher thread resets with: the pools, reached through the directory and run
/// on shard 0 as `resetter.Reset` is.
#[derive(Debug)]
pub struct Resets {
    shards: Arc<Shards>,
    directory: Arc<Directory>,
    lifecycle: Arc<Lifecycle>,
}

impl Resets {
    /// Resets plugin `name` as `rr reset` does, blocking the (watcher) thread until done;
    /// false when there is nothing to reset or the server is stopping.
    fn reset(&self, name: &str) -> bool {
        if self.lifecycle.is_stopping() {
            return false;
        }
        let directory = Arc::clone(&self.directory);
        let owned_name = name.to_owned();
        let done = self.shards.run_on(0, move |_| async move {
            let Some(service) = directory.find(&owned_name) else {
                return false;
            };
            if let Some(pool) = service.pool() {
                pool.reset().await;
            } else if let Some(reset) = service.reset() {
                reset.await;
            } else {
                return false;
            }
            true
        });
        done.blocking_recv().unwrap_or(false)
    }
}

/// The running plugin: dropping the pipe's write end stops the watcher thread.
#[derive(Debug)]
pub struct ReloadPlugin {
    stop_writer: Mutex<Option<OwnedFd>>,
}

impl Service for ReloadPlugin {
    fn name(&self) -> &'static str {
        "reload"
    }

    fn stop(self: Arc<Self>) -> super::LocalFuture<'static, ()> {
        // The thread is not joined: it may be waiting on a reset that runs on this shard.
        self.stop_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Box::pin(async {})
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
