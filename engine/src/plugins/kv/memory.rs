//! The `memory` driver: a map in the server's memory, lost at exit. A key with an expiry is
//! gone from its deadline on (reads check it; a sweep at most once a second drops what
//! expired), at the precision the client sent, not rounded down to whole seconds as rr does.
//! MExpire keeps the value of the key it re-arms, ignores missing keys and deletes a key
//! whose new time is not in the future (rr overwrote the value, created missing keys and
//! crashed on a past time).

use super::rfc3339::{self, UnixNanos};
use super::{Item, Timeout};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    /// The expiry as the client sent it ("" for none): what TTL reports.
    timeout: String,
    expires: Option<UnixNanos>,
}

#[derive(Debug, Default)]
struct Map {
    entries: HashMap<String, Entry>,
    next_sweep: UnixNanos,
}

/// A memory storage.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    map: Mutex<Map>,
}

/// Now, as Unix nanoseconds.
pub fn now() -> UnixNanos {
    UnixNanos::from(crate::clock::unix_now().as_nanos() as u64)
}

impl MemoryStorage {
    /// The map, with what expired by `now` dropped (at most one sweep a second).
    fn map(&self, now: UnixNanos) -> MutexGuard<'_, Map> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if now >= map.next_sweep {
            map.entries
                .retain(|_, entry| entry.expires.is_none_or(|at| at > now));
            map.next_sweep = now + 1_000_000_000;
        }
        map
    }

    fn live<'a>(map: &'a Map, key: &str, now: UnixNanos) -> Option<&'a Entry> {
        map.entries
            .get(key)
            .filter(|entry| entry.expires.is_none_or(|at| at > now))
    }

    /// The keys that exist.
    pub fn has(&self, keys: &[String]) -> Vec<String> {
        let now = now();
        let map = self.map(now);
        keys.iter()
            .filter(|key| Self::live(&map, key, now).is_some())
            .cloned()
            .collect()
    }

    /// Stores each item (its timeout already checked).
    pub fn set(&self, items: Vec<(Item, Timeout)>) {
        let now = now();
        let mut map = self.map(now);
        for (item, timeout) in items {
            let (timeout, expires) = match timeout {
                Timeout::At(at) if at > now => (item.timeout, Some(at)),
                Timeout::At(_) => {
                    tracing::warn!(target: "kv", key = %item.key, "incorrect TTL time, saving without it");
                    (String::new(), None)
                }
                Timeout::None => (String::new(), None),
            };
            map.entries.insert(
                item.key,
                Entry {
                    value: item.value,
                    timeout,
                    expires,
                },
            );
        }
    }

    /// The values of the keys that exist.
    pub fn mget(&self, keys: &[String]) -> Vec<(String, Vec<u8>)> {
        let now = now();
        let map = self.map(now);
        keys.iter()
            .filter_map(|key| Some((key.clone(), Self::live(&map, key, now)?.value.clone())))
            .collect()
    }

    /// New expiry times for existing keys (see the module's notes).
    pub fn mexpire(&self, items: Vec<(String, String, UnixNanos)>) {
        let now = now();
        let mut map = self.map(now);
        for (key, timeout, at) in items {
            if Self::live(&map, &key, now).is_none() {
                continue;
            }
            if at <= now {
                map.entries.remove(&key);
            } else if let Some(entry) = map.entries.get_mut(&key) {
                entry.timeout = timeout;
                entry.expires = Some(at);
            }
        }
    }

    /// Each existing key with its expiry as sent ("" for none: present, as rr's memory
    /// driver reports it).
    pub fn ttl(&self, keys: &[String]) -> Vec<(String, String)> {
        let now = now();
        let map = self.map(now);
        keys.iter()
            .filter_map(|key| Some((key.clone(), Self::live(&map, key, now)?.timeout.clone())))
            .collect()
    }

    /// Removes the keys; missing ones are no error.
    pub fn delete(&self, keys: &[String]) {
        let mut map = self.map(now());
        for key in keys {
            map.entries.remove(key);
        }
    }

    /// Removes every key.
    pub fn clear(&self) {
        self.map(now()).entries.clear();
    }
}

/// Reads an item's timeout: none, or a time.
///
/// # Errors
/// Go's parse error for a malformed time.
pub fn timeout_of(item: &Item) -> Result<Timeout, String> {
    if item.timeout.is_empty() {
        Ok(Timeout::None)
    } else {
        rfc3339::parse(&item.timeout).map(Timeout::At)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, value: &str, timeout: &str) -> (Item, Timeout) {
        let item = Item {
            key: key.into(),
            value: value.into(),
            timeout: timeout.into(),
        };
        let timeout = timeout_of(&item).unwrap();
        (item, timeout)
    }

    #[test]
    fn expiry_mexpire_and_ttl_follow_the_fixed_rules() {
        let storage = MemoryStorage::default();
        let soon = rfc3339::format(crate::clock::unix_seconds() + 100);
        storage.set(vec![
            item("a", "1", ""),
            item("b", "2", &soon),
            item("old", "3", "2000-01-01T00:00:00Z"),
        ]);
        assert_eq!(
            storage.has(&["a".into(), "b".into(), "old".into(), "x".into()]),
            vec!["a", "b", "old"]
        );
        let ttl = storage.ttl(&["a".into(), "b".into(), "old".into()]);
        assert_eq!(
            ttl,
            vec![
                ("a".into(), String::new()),
                ("b".into(), soon.clone()),
                ("old".into(), String::new())
            ]
        );
        let later = rfc3339::format(crate::clock::unix_seconds() + 200);
        let at = rfc3339::parse(&later).unwrap();
        storage.mexpire(vec![
            ("a".into(), later.clone(), at),
            ("missing".into(), later.clone(), at),
        ]);
        assert_eq!(
            storage.mget(&["a".into(), "missing".into()]),
            vec![("a".into(), b"1".to_vec())]
        );
        assert_eq!(storage.ttl(&["a".into()]), vec![("a".into(), later)]);
        storage.mexpire(vec![("b".into(), "2000-01-01T00:00:00Z".into(), 0)]);
        assert!(storage.has(&["b".into()]).is_empty());
        // A deadline a moment away expires (rr rounded it down to "no expiry").
        let (mut near, _) = item("near", "v", "");
        near.timeout = "soon".into();
        storage.set(vec![(near, Timeout::At(now() + 30_000_000))]);
        assert_eq!(storage.has(&["near".into()]).len(), 1);
        // The event is the clock passing the deadline: nothing to wait on but the clock.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !storage.has(&["near".into()]).is_empty() {
            assert!(std::time::Instant::now() < deadline, "near never expired");
            std::thread::park_timeout(std::time::Duration::from_millis(5));
        }
        storage.clear();
        assert!(storage.has(&["a".into()]).is_empty());
    }
}
