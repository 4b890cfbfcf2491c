//! Giving memory back to the OS after a large request. mimalloc (the global allocator of
//! the `rr` binary) purges freed pages lazily, when the freeing thread allocates again after
//! a delay: a shard that served one 50 MB reply and then sat idle kept ~150 MB resident.

use crate::runtime::ShardContext;
use std::rc::Rc;

/// Buffers past this size are not kept after a request; freeing one is worth a collect.
pub const LARGE_REQUEST_BYTES: usize = 1 << 20;

/// Returns the pages this thread freed to the OS now (a forced `mi_collect`). Costs tens of
/// microseconds, so only after a request that moved more than [`LARGE_REQUEST_BYTES`].
/// Harmless when the process runs another allocator (tests): mimalloc's own heap for this
/// thread is then empty.
pub fn release_freed_pages() {
    // SAFETY: `mi_collect` takes no pointer and may be called from any thread at any time;
    // it only walks and purges the calling thread's own mimalloc heap.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// How long after a large request the shard collects a second time.
const SECOND_COLLECT_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// [`release_freed_pages`] now, and once more a little later on this shard. mimalloc lets
/// one thread purge at a time and a collect that finds another thread purging returns
/// without purging: when two shards end large requests at the same moment, one of them
/// can leave a whole body's pages resident until its next large allocation (seen in CI:
/// one 40 MiB body held for ten seconds of small requests). The second collect, after the
/// other thread's purge is long done, returns them; one at a time per shard, so a stream of
/// large requests schedules no more than one every 100 ms. Must run on `shard`'s loop.
pub fn release_freed_pages_now_and_later(shard: &Rc<ShardContext>) {
    release_freed_pages();
    if shard.late_collect_pending().replace(true) {
        return;
    }
    let shard = Rc::clone(shard);
    tokio::task::spawn_local(async move {
        tokio::time::sleep(SECOND_COLLECT_AFTER).await;
        shard.late_collect_pending().set(false);
        release_freed_pages();
    });
}
