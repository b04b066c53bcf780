//! A small in-process cache whose entries expire after [`TTL`]: what the hot paths
//! read on every call but rarely changes (tenants, API-key lookups, plans). A
//! change made through this process drops the entry at once (the owner calls
//! [`Expiring::retain`]); other replicas see it within [`TTL`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a cached entry is used without re-reading it.
pub const TTL: Duration = Duration::from_secs(2);

/// Entries kept at most; past it the map is emptied (keys of a flood of unknown
/// tokens are never cached, so this bounds memory, not correctness).
const MAX_ENTRIES: usize = 10_000;

/// A map whose entries expire after [`TTL`].
pub struct Expiring<K, V> {
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Hash + Eq, V: Clone> Expiring<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Expiring { map: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, (Instant, V)>> {
        // A panic while holding the lock leaves a map of whole entries: still usable.
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value, if put less than [`TTL`] ago.
    pub fn get(&self, key: &K) -> Option<V> {
        self.lock().get(key).filter(|(at, _)| at.elapsed() < TTL).map(|(_, v)| v.clone())
    }

    /// Stores the value as read now.
    pub fn put(&self, key: K, value: V) {
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, (Instant::now(), value));
    }

    /// Drops the entries `keep` refuses.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.lock().retain(|k, (_, v)| keep(k, v));
    }
}

impl<K: Hash + Eq, V: Clone> Default for Expiring<K, V> {
    fn default() -> Self {
        Self::new()
    }
}
