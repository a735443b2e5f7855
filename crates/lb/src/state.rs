//! Balancer state that must outlive a config snapshot: split and round-robin positions, and
//! per-endpoint state (in-flight requests, outlier ejections).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::BuildHasher as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

use crate::endpoint::EndpointState;

/// Hands out shared state by key, so that a recompiled snapshot continues where the old one was.
///
/// Entries are held weakly: state lives as long as some snapshot (or in-flight request) holds it,
/// and a key nobody holds any more starts afresh. Only consulted while compiling, never on the
/// request path.
#[derive(Debug, Default)]
pub struct StateStore {
    counters: Mutex<WeakMap<AtomicU64>>,
    endpoints: Mutex<Endpoints>,
}

/// Endpoint states, with a buffer to spell a (cluster, address) key in, so a lookup allocates
/// nothing (a reload at 10,000 services looks up tens of thousands of endpoints, nearly all of
/// them there already).
#[derive(Debug, Default)]
struct Endpoints {
    map: WeakMap<EndpointState>,
    key: String,
}

impl StateStore {
    /// A new, empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter for `key`, shared with any live snapshot that already uses it.
    pub fn counter(&self, key: &str) -> Arc<AtomicU64> {
        lock(&self.counters).get_or_insert_with(key, || AtomicU64::new(0))
    }

    /// The state of endpoint `address` (`host:port`) in cluster `cluster`, shared with any live
    /// snapshot that already uses it (so ejections and in-flight counts survive reloads).
    pub fn endpoint(&self, cluster: &str, address: &str) -> Arc<EndpointState> {
        let mut endpoints = lock(&self.endpoints);
        let Endpoints { map, key } = &mut *endpoints;
        key.clear();
        // The cluster's length first: no two (cluster, address) pairs spell the same key,
        // whatever characters the names hold.
        let _ = write!(key, "{}:{cluster}{address}", cluster.len());
        map.get_or_insert_with(key, || EndpointState::new(address))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A map of weak references by name that forgets dead entries when it has doubled since the
/// last sweep, so it does not grow with every reload and pruning stays amortised O(1).
///
/// A name is kept as 128 bits of two hashes of it, seeded at random per store, not as text: at
/// 10,000 services the names (cluster and address, route and scope) were about 80 bytes each,
/// 70,000 of them. Two names share state only if both 64-bit hashes agree, which for names not
/// chosen against this process's seeds is as likely as a random 128-bit collision.
#[derive(Debug)]
struct WeakMap<V> {
    map: HashMap<[u64; 2], Weak<V>, foldhash::fast::RandomState>,
    seeds: [foldhash::quality::RandomState; 2],
    prune_at: usize,
}

impl<V> Default for WeakMap<V> {
    fn default() -> Self {
        WeakMap {
            map: HashMap::default(),
            seeds: Default::default(),
            prune_at: 1024,
        }
    }
}

impl<V> WeakMap<V> {
    fn get_or_insert_with(&mut self, name: &str, make: impl FnOnce() -> V) -> Arc<V> {
        let key = self.seeds.each_ref().map(|s| s.hash_one(name));
        if let Some(v) = self.map.get(&key).and_then(Weak::upgrade) {
            return v;
        }
        if self.map.len() >= self.prune_at {
            self.map.retain(|_, w| w.strong_count() > 0);
            self.prune_at = (self.map.len() * 2).max(1024);
        }
        let v = Arc::new(make());
        self.map.insert(key, Arc::downgrade(&v));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn counters_are_shared_while_alive() {
        let store = StateStore::new();
        let a = store.counter("r1");
        a.fetch_add(5, Ordering::Relaxed);
        let b = store.counter("r1");
        assert_eq!(b.load(Ordering::Relaxed), 5);
        drop(a);
        drop(b);
        assert_eq!(store.counter("r1").load(Ordering::Relaxed), 0);
    }

    #[test]
    fn endpoints_are_keyed_by_cluster_and_address() {
        let store = StateStore::new();
        let a = store.endpoint("outbound|80||a", "10.0.0.1:80");
        let _guard = a.start_request();
        assert_eq!(
            store.endpoint("outbound|80||a", "10.0.0.1:80").in_flight(),
            1
        );
        assert_eq!(
            store
                .endpoint("outbound|80|v1|a", "10.0.0.1:80")
                .in_flight(),
            0
        );
        assert_eq!(a.address(), "10.0.0.1:80");
        // One key spells both names: no pair reads as another, whatever their characters.
        let b = store.endpoint("outbound|80||a:", "1");
        let _b_guard = b.start_request();
        assert_eq!(store.endpoint("outbound|80||a", ":1").in_flight(), 0);
        assert_eq!(store.endpoint("outbound|80||a:", "1").in_flight(), 1);
    }

    /// The two hashes of a name are seeded apart: a key is 128 bits, not one hash twice.
    #[test]
    fn a_key_is_two_independent_hashes() {
        let m = WeakMap::<()>::default();
        let key = m
            .seeds
            .each_ref()
            .map(|s| s.hash_one("outbound|80||a10.0.0.1:80"));
        assert_ne!(key[0], key[1]);
    }

    #[test]
    fn dead_entries_are_pruned() {
        let store = StateStore::new();
        for i in 0..5000 {
            drop(store.endpoint("c", &format!("10.0.0.{i}:80")));
        }
        let live = store.endpoint("c", "keep:80");
        assert!(lock(&store.endpoints).map.map.len() <= 2048);
        assert!(Arc::ptr_eq(&live, &store.endpoint("c", "keep:80")));
    }
}
