//! Trace and span ids: one small generator state per shard, seeded once from the kernel's
//! random source at start (splitmix64: ids must be unique, not secret). Each shard only
//! touches its own cache line, so there is no contention and no global state.

use std::sync::atomic::{AtomicU64, Ordering};

/// splitmix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Fills `bytes` from the kernel's random source (getrandom); a failure, which Linux only
/// reports for an interrupted call, is retried.
pub fn fill_random(bytes: &mut [u8]) {
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(read) => filled += read,
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => {
                // Never on Linux ≥ 3.17 (the kernel ringrunner needs); keep distinct ids
                // all the same by mixing in the clock.
                tracing::warn!(target: "otel", %error, "getrandom failed; ids seeded from the clock");
                let nanos = crate::clock::unix_now().as_nanos().to_le_bytes();
                for (index, byte) in bytes[filled..].iter_mut().enumerate() {
                    *byte = nanos[index % nanos.len()] ^ (index as u8);
                }
                return;
            }
        }
    }
}

/// One shard's generator state, alone on its cache line.
#[derive(Debug)]
#[repr(align(64))]
struct ShardState(AtomicU64);

/// The generators of every shard.
#[derive(Debug)]
pub struct IdSource {
    shards: Box<[ShardState]>,
}

impl IdSource {
    /// One generator per shard, each seeded from the kernel.
    #[must_use]
    pub fn new(shards: usize) -> Self {
        let shards = (0..shards.max(1))
            .map(|_| {
                let mut seed = [0u8; 8];
                fill_random(&mut seed);
                ShardState(AtomicU64::new(u64::from_le_bytes(seed)))
            })
            .collect();
        Self { shards }
    }

    /// The next 64 random bits of `shard`'s generator (only that shard's thread calls it
    /// with its index, so the load and store never race).
    pub fn next_u64(&self, shard: usize) -> u64 {
        let state = &self.shards[shard % self.shards.len()].0;
        let next = state.load(Ordering::Relaxed).wrapping_add(GAMMA);
        state.store(next, Ordering::Relaxed);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A span id (never all zero).
    pub fn span_id(&self, shard: usize) -> [u8; 8] {
        loop {
            let id = self.next_u64(shard);
            if id != 0 {
                return id.to_be_bytes();
            }
        }
    }

    /// A trace id (never all zero).
    pub fn trace_id(&self, shard: usize) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_u64(shard).to_be_bytes());
        id[8..].copy_from_slice(&self.span_id(shard));
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_do_not_repeat_within_or_across_shards() {
        let ids = IdSource::new(2);
        let mut seen = HashSet::new();
        for round in 0..10_000 {
            assert!(seen.insert(ids.span_id(round % 2)));
        }
        assert_ne!(ids.trace_id(0), ids.trace_id(0));
    }
}
