//! Read-mostly handle caches: lock-free lookups on the request path, copy-on-write inserts.
//!
//! A request looks its metric handles up by a precomputed 64-bit hash; the map lives behind an
//! `ArcSwap`, so a lookup is an atomic load plus a probe (no lock, no refcount change). A miss
//! (a new label combination, rare and bounded) takes a writer mutex, clones the map, inserts and
//! publishes it: O(series) once per new series, which is why this only suits bounded key sets.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

/// FxHash (rustc's hasher): a multiply-rotate per word, a few ns for the small keys used here.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }

    /// Hashes a string's length and its first and last 8 bytes only. Names (hosts, routes,
    /// clusters) differ in length, prefix or suffix; lookups compare whole keys anyway, so a
    /// rare collision costs a second comparison, never a wrong answer. Hashing a 40-byte host
    /// in full costs ~25 ns here, this ~3 ns.
    #[inline]
    pub(crate) fn write_str_sampled(&mut self, s: &str) {
        let b = s.as_bytes();
        self.add(b.len() as u64);
        if b.len() <= 16 {
            self.write(b);
        } else {
            self.write(b.get(..8).unwrap_or(b));
            self.write(b.get(b.len() - 8..).unwrap_or(b));
        }
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Hasher for keys that already are hashes.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Buckets<K, V> = HashMap<u64, Vec<(K, V)>, BuildHasherDefault<IdentityHasher>>;

/// A hash-addressed map with lock-free reads and copy-on-write inserts.
pub(crate) struct CowMap<K, V> {
    map: ArcSwap<Buckets<K, V>>,
    write: Mutex<()>,
}

impl<K, V> std::fmt::Debug for CowMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CowMap({} buckets)", self.map.load().len())
    }
}

impl<K, V> Default for CowMap<K, V> {
    fn default() -> Self {
        CowMap {
            map: ArcSwap::from_pointee(HashMap::default()),
            write: Mutex::new(()),
        }
    }
}

impl<K: Clone, V: Clone> CowMap<K, V> {
    /// Runs `f` on the value whose key has `hash` and satisfies `eq`, without locking.
    #[inline]
    pub(crate) fn with<R>(
        &self,
        hash: u64,
        eq: impl Fn(&K) -> bool,
        f: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        let map = self.map.load();
        let bucket = map.get(&hash)?;
        bucket.iter().find(|(k, _)| eq(k)).map(|(_, v)| f(v))
    }

    /// Runs `f` on the value (or `None`) under one map load, without locking.
    #[inline]
    pub(crate) fn find<R>(
        &self,
        hash: u64,
        eq: impl Fn(&K) -> bool,
        f: impl FnOnce(Option<&V>) -> R,
    ) -> R {
        let map = self.map.load();
        f(map
            .get(&hash)
            .and_then(|b| b.iter().find(|(k, _)| eq(k)))
            .map(|(_, v)| v))
    }

    /// The value for the key, inserting `make()` when absent (slow path: clones the map).
    pub(crate) fn get_or_insert_with(
        &self,
        hash: u64,
        eq: impl Fn(&K) -> bool,
        make: impl FnOnce() -> (K, V),
    ) -> V {
        let _writer = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.map.load_full();
        if let Some(v) = current
            .get(&hash)
            .and_then(|b| b.iter().find(|(k, _)| eq(k)))
            .map(|(_, v)| v.clone())
        {
            return v;
        }
        let mut next: Buckets<K, V> = (*current).clone();
        let (k, v) = make();
        next.entry(hash).or_default().push((k, v.clone()));
        self.map.store(Arc::new(next));
        v
    }

    /// Every value, in no particular order.
    pub(crate) fn values(&self) -> Vec<V> {
        self.map
            .load()
            .values()
            .flat_map(|b| b.iter().map(|(_, v)| v.clone()))
            .collect()
    }
}

/// Sampled FxHash of a list of names (see [`FxHasher::write_str_sampled`]).
#[inline]
pub(crate) fn names_hash(names: &[&str]) -> u64 {
    let mut h = FxHasher::default();
    for n in names {
        h.write_str_sampled(n);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_then_lookup_without_lock() {
        let m: CowMap<String, u32> = CowMap::default();
        let h = names_hash(&["a"]);
        assert_eq!(m.with(h, |k| k == "a", |v| *v), None);
        assert_eq!(m.get_or_insert_with(h, |k| k == "a", || ("a".into(), 1)), 1);
        assert_eq!(m.get_or_insert_with(h, |k| k == "a", || ("a".into(), 2)), 1);
        // Same hash, different key: both live in one bucket.
        m.get_or_insert_with(h, |k| k == "b", || ("b".into(), 3));
        assert_eq!(m.with(h, |k| k == "b", |v| *v), Some(3));
        let mut all = m.values();
        all.sort();
        assert_eq!(all, vec![1, 3]);
    }

    #[test]
    fn sampled_hash_sees_prefix_suffix_and_length() {
        let h = |s: &str| names_hash(&[s]);
        assert_ne!(h("outbound|9080|v1|a"), h("outbound|9080|v2|a"));
        assert_ne!(
            h("reviews.default.svc.cluster.local"),
            h("ratings.default.svc.cluster.local")
        );
        assert_ne!(h("app-backend.0"), h("app-backend.1"));
        assert_ne!(
            h("abcdefgh12345678abcdefgh"),
            h("abcdefgh123456789abcdefgh")
        );
        // Same length, prefix and suffix: a collision, resolved by the key comparison.
        assert_eq!(h("abcdefghXXabcdefgh"), h("abcdefghYYabcdefgh"));
        assert_ne!(names_hash(&["ab", "c"]), names_hash(&["a", "bc"]));
    }
}
