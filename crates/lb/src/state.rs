//! Balancer state that must outlive a config snapshot (split and round-robin positions).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

/// Hands out shared counters by key, so that a recompiled snapshot continues where the old one was.
///
/// Only consulted while compiling, never on the request path.
#[derive(Debug, Default)]
pub struct StateStore {
    counters: Mutex<HashMap<String, Weak<AtomicU64>>>,
}

impl StateStore {
    /// A new, empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter for `key`, shared with any live snapshot that already uses it.
    pub fn counter(&self, key: &str) -> Arc<AtomicU64> {
        let mut map = match self.counters.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = map.get(key).and_then(Weak::upgrade) {
            return c;
        }
        // Forget counters no snapshot holds any more, so the map does not grow with every reload.
        if map.len() > 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let c = Arc::new(AtomicU64::new(0));
        map.insert(key.to_string(), Arc::downgrade(&c));
        c
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
}
