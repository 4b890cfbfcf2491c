//! The redial (spec jobs-amqp §7): a watcher per connection that notices its failure, and
//! the loop that replaces a failed link, dialing with back-off while the RPCs go on (the
//! link's lock is held only to take the old link out and to put the new one in).

use super::link::{Link, ANSWER_WITHIN};
use super::Inner;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The first wait between redials; each next one is 1.5 times longer, up to a minute.
const REDIAL_FIRST: Duration = Duration::from_millis(500);
const REDIAL_MAX: Duration = Duration::from_secs(60);

pub type Events = Pin<Box<dyn futures_core::Stream<Item = lapin::Event> + Send>>;

/// Waits for an error on the connection of dial `generation`; when its link is no longer
/// healthy (the connection or a channel it needs failed), redials.
pub async fn watch(inner: Arc<Inner>, mut events: Events, generation: u64) {
    while let Some(event) = poll_fn(|cx| events.as_mut().poll_next(cx)).await {
        let lapin::Event::Error(error) = event else {
            continue;
        };
        if inner.stopped.load(Ordering::Acquire) {
            return;
        }
        {
            let link = inner.link.lock().await;
            match link.as_ref() {
                Some(link) if link.generation != generation => return,
                // A throw-away channel failed (a passive declare of a missing queue).
                Some(link) if link.healthy() => continue,
                _ => {}
            }
        }
        redial(&inner, generation, &error.to_string()).await;
        return;
    }
}

/// Replaces the link of dial `generation` (unless another redial did already): the old
/// one is taken out (its deliveries still queued are dropped: the broker delivers them
/// again) and closed, then dials are tried with back-off (500 ms, ×1.5, jittered, at most a
/// minute apart) until one succeeds or the pipeline stops. Past `redial_timeout` the error
/// is logged as rr logs it and a new round begins: the pipeline is kept, not destroyed.
/// The link's lock is held only to take the old link out and to put the new one in: Stat,
/// Push, Pause, Resume and Destroy answer meanwhile (rr holds it throughout).
pub async fn redial(inner: &Arc<Inner>, generation: u64, error: &str) {
    let old = {
        let mut link = inner.link.lock().await;
        if inner.stopped.load(Ordering::Acquire)
            || link
                .as_ref()
                .is_none_or(|link| link.generation != generation)
        {
            return;
        }
        inner.live_generation.store(0, Ordering::Release);
        link.take()
    };
    tracing::error!(target: "jobs", %error, pipeline = %inner.name, driver = "amqp", "pipeline connection was closed, redialing");
    let dropped = inner.drop_deliveries_of(generation);
    if dropped > 0 {
        tracing::info!(target: "jobs", pipeline = %inner.name, dropped, "deliveries of the closed connection were dropped, the broker redelivers them");
    }
    if let Some(old) = old {
        // Closed even when a stop comes meanwhile (bounded by CLOSE_WITHIN): a connection
        // left open would keep its unacknowledged deliveries from the broker.
        old.abandon().await;
    }
    let mut round = Instant::now();
    let mut wait = REDIAL_FIRST;
    loop {
        let Some(dialed) = inner.until_stopped(Link::dial(inner)).await else {
            return;
        };
        let failed = match dialed {
            Ok(new) => match install(inner, new).await {
                Ok(()) => {
                    if inner.consuming.load(Ordering::Acquire) {
                        tracing::info!(target: "jobs", pipeline = %inner.name, "consumer restored successfully");
                    }
                    tracing::info!(target: "jobs", pipeline = %inner.name, driver = "amqp", "connection was successfully restored");
                    return;
                }
                Err(Installed::Stopped) => return,
                Err(Installed::Closed) => "the connection closed while it was dialed".to_owned(),
            },
            Err(error) => error,
        };
        tracing::warn!(target: "jobs", pipeline = %inner.name, error = %failed, "redial failed");
        if inner
            .options
            .redial_timeout
            .is_some_and(|limit| round.elapsed() >= limit)
        {
            tracing::error!(target: "jobs", pipeline = %inner.name, driver = "amqp", "backoff operation failed, pipeline will be recreated");
            round = Instant::now();
            wait = REDIAL_FIRST;
        }
        if inner
            .until_stopped(tokio::time::sleep(jittered(wait)))
            .await
            .is_none()
        {
            return;
        }
        wait = wait.mul_f64(1.5).min(REDIAL_MAX);
    }
}

/// Why a dialed link was not put in place.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// The pipeline stopped while it was dialed (the link is closed).
    Stopped,
    /// Its connection or a channel failed before it was in place.
    Closed,
}

/// Puts a dialed `link` in place (the first dial, a redial), its deliveries live from now
/// on; consuming is first brought in line with the pipeline's flag, which a Pause or a
/// Resume during the dial may have changed.
///
/// # Errors
/// The pipeline stopped meanwhile; the link failed before it was in place (its watcher,
/// which found no link of its own, did not redial).
pub async fn install(inner: &Arc<Inner>, mut link: Link) -> Result<(), Installed> {
    let mut slot = inner.link.lock().await;
    if inner.stopped.load(Ordering::Acquire) {
        drop(slot);
        link.close(inner).await;
        return Err(Installed::Stopped);
    }
    let wanted = inner.consuming.load(Ordering::Acquire);
    if wanted != link.consuming {
        let bring = async {
            if wanted {
                link.consume(inner).await
            } else {
                link.cancel(inner).await
            }
        };
        // Bounded: Stat, Pause and Resume wait for this lock.
        let brought = tokio::time::timeout(ANSWER_WITHIN, bring)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {ANSWER_WITHIN:?}")));
        if let Err(error) = brought {
            tracing::warn!(target: "jobs", pipeline = %inner.name, %error, "consuming could not follow a pause or resume made while dialing");
        }
    }
    if !link.healthy() {
        drop(slot);
        link.abandon().await;
        return Err(Installed::Closed);
    }
    inner
        .live_generation
        .store(link.generation, Ordering::Release);
    *slot = Some(link);
    Ok(())
}

/// `wait` ±50 %.
fn jittered(wait: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = rustix::rand::getrandom(&mut byte, rustix::rand::GetRandomFlags::empty());
    wait.mul_f64(0.5 + f64::from(byte[0]) / 255.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half() {
        for _ in 0..100 {
            let wait = jittered(Duration::from_secs(2));
            assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(3));
        }
    }
}
