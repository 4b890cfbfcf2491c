//! The small runtime the AMQP client runs on (one tokio worker thread, `amqp`): the shards
//! stay io_uring, and a shard awaits a task of this runtime through its join handle.

use std::future::Future;

/// The runtime, shut down in the background when dropped (a shard thread may drop the last
/// handle, and a runtime dropped inside another would block it).
#[derive(Debug)]
pub struct AmqpRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl AmqpRuntime {
    /// Starts its thread.
    ///
    /// # Errors
    /// The thread or its epoll instance could not be made.
    pub fn start() -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("amqp")
            .enable_all()
            .build()
            .map_err(|error| format!("amqp runtime: {error}"))?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// A handle to spawn on.
    #[must_use]
    pub fn handle(&self) -> tokio::runtime::Handle {
        match &self.runtime {
            Some(runtime) => runtime.handle().clone(),
            None => unreachable!("the runtime lives until drop"),
        }
    }

    /// Runs `future` to completion from a thread outside every runtime (the start of
    /// `rr serve`).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match &self.runtime {
            Some(runtime) => runtime.block_on(future),
            None => unreachable!("the runtime lives until drop"),
        }
    }
}

impl Drop for AmqpRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs `future` on the runtime behind `handle` and waits for it from wherever the caller
/// runs (a shard's loop).
///
/// # Errors
/// The future's; a task that panicked or was cancelled by the runtime's shutdown.
pub async fn on<T, F>(handle: &tokio::runtime::Handle, future: F) -> Result<T, String>
where
    T: Send + 'static,
    F: Future<Output = Result<T, String>> + Send + 'static,
{
    match handle.spawn(future).await {
        Ok(result) => result,
        Err(error) => Err(format!("amqp task: {error}")),
    }
}
