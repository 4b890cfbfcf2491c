//! Which events reach the logger, decided once per call site.

use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// Our events up to the most verbose channel's level; a dependency's (h2's frames, lapin's,
/// rustls's: a target that is a module path not ours) only from WARN, as their debug events
/// are per frame and would drown ours. It looks at metadata only, so each call site is
/// decided once (always or never), and the level hint lets `tracing` drop a filtered event
/// (and `tracing::enabled!` answer false) before any call site is consulted: a record that
/// is built only when it will be written costs nothing at `level: error`.
#[derive(Debug, Clone, Copy)]
pub(super) struct LogFilter {
    max: Level,
}

impl LogFilter {
    pub(super) fn new(max: Level) -> Self {
        Self { max }
    }

    fn wants(self, metadata: &Metadata<'_>) -> bool {
        let level = *metadata.level();
        let target = metadata.target();
        level <= self.max
            && (level <= Level::WARN || !target.contains("::") || target.starts_with("ringrunner"))
    }
}

impl<S> Filter<S> for LogFilter {
    fn enabled(&self, metadata: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        self.wants(metadata)
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.wants(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tracing_subscriber::layer::Layer;
    use tracing_subscriber::prelude::*;

    /// A layer that counts the events it is given.
    struct Count(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> Layer<S> for Count {
        fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs `emit` under a subscriber filtered at `max`; returns how many events got through.
    fn passed(max: Level, emit: impl FnOnce()) -> usize {
        let seen = Arc::new(AtomicUsize::new(0));
        let layer = Count(seen.clone()).with_filter(LogFilter::new(max));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
        seen.load(Ordering::Relaxed)
    }

    #[test]
    fn filtered_events_are_not_even_enabled() {
        let passed = passed(Level::ERROR, || {
            // The access log's guard: false at `level: error`, so its record is never built.
            assert!(!tracing::enabled!(target: "http", Level::INFO));
            assert!(tracing::enabled!(target: "http", Level::ERROR));
            tracing::info!(target: "http", "dropped");
            tracing::error!(target: "http", "kept");
        });
        assert_eq!(passed, 1);
    }

    #[test]
    fn a_dependency_s_events_pass_only_from_warn() {
        let passed = passed(Level::DEBUG, || {
            tracing::debug!(target: "http", "ours");
            tracing::debug!(target: "ringrunner::pool", "ours");
            tracing::trace!(target: "http", "too verbose");
            tracing::debug!(target: "h2::codec", "a dependency's frame");
            tracing::warn!(target: "h2::codec", "a dependency's warning");
        });
        assert_eq!(passed, 3);
    }
}
