//! The running plugins: started in registry order (a failure stops what started, in
//! reverse), stopped in reverse order, killed at a forced exit.

use super::{Directory, Lifecycle, Plugin, Service, StartContext};
use crate::runtime::Shards;
use std::sync::Arc;

/// The services of a running server.
#[derive(Debug)]
pub struct Running {
    directory: Arc<Directory>,
}

impl Running {
    /// Starts `plugins` in order. Call it off the shards.
    ///
    /// # Errors
    /// The first plugin's start error; what had started is stopped first.
    pub fn start(
        plugins: Vec<Box<dyn Plugin>>,
        shards: &Arc<Shards>,
        lifecycle: &Arc<Lifecycle>,
    ) -> Result<Self, String> {
        let directory = Arc::new(Directory::default());
        let mut started: Vec<Arc<dyn Service>> = Vec::with_capacity(plugins.len());
        for plugin in plugins {
            let ctx = StartContext {
                shards,
                lifecycle,
                started: &started,
                directory: &directory,
            };
            match plugin.start(&ctx) {
                Ok(service) => started.push(service),
                Err(error) => {
                    lifecycle.begin_stop();
                    for service in started.into_iter().rev() {
                        shards.block_on(0, move |_| service.stop());
                    }
                    return Err(error);
                }
            }
        }
        directory.fill(started);
        Ok(Self { directory })
    }

    /// The services, in start order.
    #[must_use]
    pub fn services(&self) -> &[Arc<dyn Service>] {
        self.directory.services()
    }

    /// Stops every service gracefully, in reverse start order, each on shard 0.
    pub async fn stop(&self, shards: &Shards) {
        for service in self.services().iter().rev() {
            let service = Arc::clone(service);
            let _ = shards.run_on(0, move |_| service.stop()).await;
        }
    }

    /// SIGKILLs every worker of every pool now (a forced exit).
    pub fn kill_all(&self) {
        for service in self.services() {
            service.kill();
        }
    }
}
