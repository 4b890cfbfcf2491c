//! The `memory` driver: a map in the server's memory, lost at exit. A key with an expiry is
//! gone from its deadline on (reads check it; each call first drops what has expired, in
//! deadline order, so the work is proportional to what expires, not to the map's size), at
//! the precision the client sent, not rounded down to whole seconds as rr does.
//! MExpire keeps the value of the key it re-arms, ignores missing keys and deletes a key
//! whose new time is not in the future (rr overwrote the value, created missing keys and
//! crashed on a past time).

use super::rfc3339::{self, UnixNanos};
use super::{Item, Timeout};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    /// The expiry as the client sent it ("" for none): what TTL reports.
    timeout: String,
    expires: Option<UnixNanos>,
}

/// The keys and, for those with an expiry, an index by deadline. Invariant: `deadlines`
/// holds `(at, key)` exactly for the entries whose `expires` is `Some(at)` (kept eagerly:
/// an overwrite or delete takes its old deadline out, so the index never outgrows the map).
#[derive(Debug, Default)]
struct Map {
    entries: HashMap<String, Entry>,
    deadlines: BTreeSet<(UnixNanos, String)>,
}

impl Map {
    /// Drops every entry whose deadline is not after `now`, earliest first; gives how many
    /// index entries it visited (those it dropped).
    fn sweep(&mut self, now: UnixNanos) -> usize {
        let mut visited = 0;
        while let Some(first) = self.deadlines.first() {
            if first.0 > now {
                break;
            }
            let (at, key) = self.deadlines.pop_first().expect("first() was Some");
            visited += 1;
            let removed = self.entries.remove(&key);
            debug_assert!(
                removed.is_some_and(|entry| entry.expires == Some(at)),
                "the deadline index names only live expiries"
            );
        }
        visited
    }

    fn live(&self, key: &str, now: UnixNanos) -> Option<&Entry> {
        self.entries
            .get(key)
            .filter(|entry| entry.expires.is_none_or(|at| at > now))
    }

    fn insert(&mut self, key: String, entry: Entry) {
        self.remove(&key);
        if let Some(at) = entry.expires {
            self.deadlines.insert((at, key.clone()));
        }
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            if let Some(at) = old.expires {
                self.deadlines.remove(&(at, key.to_owned()));
            }
        }
    }

    /// Re-arms an existing key's expiry.
    fn rearm(&mut self, key: &str, timeout: String, at: UnixNanos) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let old = entry.expires.replace(at);
        entry.timeout = timeout;
        if let Some(old) = old {
            self.deadlines.remove(&(old, key.to_owned()));
        }
        self.deadlines.insert((at, key.to_owned()));
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.deadlines.clear();
    }
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
    /// The map, with what expired by `now` dropped.
    fn map(&self, now: UnixNanos) -> MutexGuard<'_, Map> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.sweep(now);
        map
    }

    /// The keys that exist.
    pub fn has(&self, keys: &[String]) -> Vec<String> {
        let now = now();
        let map = self.map(now);
        keys.iter()
            .filter(|key| map.live(key, now).is_some())
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
            map.insert(
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
            .filter_map(|key| Some((key.clone(), map.live(key, now)?.value.clone())))
            .collect()
    }

    /// New expiry times for existing keys (see the module's notes).
    pub fn mexpire(&self, items: Vec<(String, String, UnixNanos)>) {
        let now = now();
        let mut map = self.map(now);
        for (key, timeout, at) in items {
            if map.live(&key, now).is_none() {
                continue;
            }
            if at <= now {
                map.remove(&key);
            } else {
                map.rearm(&key, timeout, at);
            }
        }
    }

    /// Each existing key with its expiry as sent ("" for none: present, as rr's memory
    /// driver reports it).
    pub fn ttl(&self, keys: &[String]) -> Vec<(String, String)> {
        let now = now();
        let map = self.map(now);
        keys.iter()
            .filter_map(|key| Some((key.clone(), map.live(key, now)?.timeout.clone())))
            .collect()
    }

    /// Removes the keys; missing ones are no error.
    pub fn delete(&self, keys: &[String]) {
        let mut map = self.map(now());
        for key in keys {
            map.remove(key);
        }
    }

    /// Removes every key.
    pub fn clear(&self) {
        self.map(now()).clear();
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

    fn entry(value: u8, expires: Option<UnixNanos>) -> Entry {
        Entry {
            value: vec![value],
            timeout: String::new(),
            expires,
        }
    }

    #[test]
    fn a_sweep_visits_what_expired_not_the_whole_map() {
        let mut map = Map::default();
        for n in 0..100_000 {
            let expires = (n % 2 == 0).then_some(1_000_000 + UnixNanos::from(n));
            map.insert(format!("live{n}"), entry(1, expires));
        }
        for n in 0..10 {
            map.insert(format!("old{n}"), entry(2, Some(100 + n)));
        }
        assert_eq!(map.sweep(50), 0, "nothing due yet: nothing visited");
        assert_eq!(map.sweep(500), 10, "the ten expired, and only them");
        assert_eq!(map.entries.len(), 100_000);
        assert_eq!(map.deadlines.len(), 50_000);
        assert_eq!(map.sweep(600), 0);
        // Overwritten and deleted keys leave nothing in the index.
        map.insert("live0".into(), entry(3, None));
        map.remove("live2");
        map.rearm("live4", String::new(), 2_000_000);
        assert_eq!(map.deadlines.len(), 49_998);
        assert!(map.live("live0", 10_000_000).is_some());
    }

    /// One step of the property test: the clock moves on by `advance`, then one operation.
    #[derive(Debug, Clone)]
    enum Step {
        Set(u8, u8, Option<u8>),
        Delete(u8),
        Rearm(u8, u8),
        Clear,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = (u8, Step)> {
        use proptest::prelude::*;
        let key = 0u8..8;
        let operation = prop_oneof![
            6 => (key.clone(), any::<u8>(), proptest::option::of(1u8..40)).prop_map(|(k, v, t)| Step::Set(k, v, t)),
            2 => key.clone().prop_map(Step::Delete),
            2 => (key, 1u8..40).prop_map(|(k, t)| Step::Rearm(k, t)),
            1 => Just(Step::Clear),
        ];
        (0u8..30, operation)
    }

    proptest::proptest! {
        /// Against a naive model (a map whose reads compare each deadline with the clock):
        /// the same keys live at every step, a sweep drops exactly what the model says has
        /// expired, and the index holds one deadline per expiring entry.
        #[test]
        fn expiry_matches_the_naive_model(steps in proptest::collection::vec(step(), 1..200)) {
            let mut map = Map::default();
            let mut model: HashMap<String, (u8, Option<UnixNanos>)> = HashMap::new();
            let mut now: UnixNanos = 0;
            for (advance, operation) in steps {
                now += UnixNanos::from(advance);
                let due = model.values().filter(|(_, at)| at.is_some_and(|at| at <= now)).count();
                proptest::prop_assert_eq!(map.sweep(now), due);
                model.retain(|_, (_, at)| at.is_none_or(|at| at > now));
                match operation {
                    Step::Set(key, value, ttl) => {
                        let at = ttl.map(|ttl| now + UnixNanos::from(ttl));
                        map.insert(key.to_string(), entry(value, at));
                        model.insert(key.to_string(), (value, at));
                    }
                    Step::Delete(key) => {
                        map.remove(&key.to_string());
                        model.remove(&key.to_string());
                    }
                    Step::Rearm(key, ttl) => {
                        let at = now + UnixNanos::from(ttl);
                        map.rearm(&key.to_string(), String::new(), at);
                        if let Some(entry) = model.get_mut(&key.to_string()) {
                            entry.1 = Some(at);
                        }
                    }
                    Step::Clear => {
                        map.clear();
                        model.clear();
                    }
                }
                for key in 0u8..8 {
                    let key = key.to_string();
                    let expected = model.get(&key).filter(|(_, at)| at.is_none_or(|at| at > now)).map(|(value, _)| vec![*value]);
                    proptest::prop_assert_eq!(map.live(&key, now).map(|entry| entry.value.clone()), expected);
                }
                let expiring = map.entries.values().filter(|entry| entry.expires.is_some()).count();
                proptest::prop_assert_eq!(map.deadlines.len(), expiring);
            }
        }
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
