//! A map kept as a sorted `Vec`: label sets and header matches hold one or two entries, for
//! which a `BTreeMap` allocates a whole node (eleven slots). Reads, serde and `Debug` behave as
//! `BTreeMap`'s do: keys in order, a repeated key keeps its last value.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ordered map for a handful of entries, stored as a sorted `Vec` without spare capacity.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SmallMap<K, V> {
    /// Sorted by key, keys unique.
    entries: Vec<(K, V)>,
}

/// Iterator over `(&key, &value)` in key order.
pub type Iter<'a, K, V> = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&(K, V)) -> (&K, &V)>;

fn pair<K, V>((k, v): &(K, V)) -> (&K, &V) {
    (k, v)
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    /// An empty map (allocates nothing).
    pub fn new() -> Self {
        Self::default()
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value of `key`.
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// Builds the map from entries in any order; a repeated key keeps its last value (as
    /// inserting them one by one into a `BTreeMap` does).
    fn from_entries(mut entries: Vec<(K, V)>) -> Self {
        // Stable: among equal keys the last one given stays last.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unique: Vec<(K, V)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            match unique.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => unique.push((k, v)),
            }
        }
        unique.shrink_to_fit();
        SmallMap { entries: unique }
    }
}

impl<K, V> SmallMap<K, V> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, sorted by key.
    pub fn as_slice(&self) -> &[(K, V)] {
        &self.entries
    }

    /// Entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        self.entries.iter().map(pair as fn(&(K, V)) -> (&K, &V))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SmallMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a, K, V> IntoIterator for &'a SmallMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K, V> IntoIterator for SmallMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SmallMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self::from_entries(iter.into_iter().collect())
    }
}

impl<K: Ord, V> Extend<(K, V)> for SmallMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        // Sorted once rather than inserted one by one: a large map from a hostile config must
        // not cost the square of its size. The new entries come last, so they win.
        let mut entries = std::mem::take(&mut self.entries);
        entries.extend(iter);
        *self = Self::from_entries(entries);
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for SmallMap<K, V> {
    fn from(entries: [(K, V); N]) -> Self {
        Self::from_entries(Vec::from(entries))
    }
}

impl<K, V> From<BTreeMap<K, V>> for SmallMap<K, V> {
    fn from(map: BTreeMap<K, V>) -> Self {
        // Already sorted and unique.
        SmallMap {
            entries: map.into_iter().collect(),
        }
    }
}

impl<K: Ord, V> From<SmallMap<K, V>> for BTreeMap<K, V> {
    fn from(map: SmallMap<K, V>) -> Self {
        map.entries.into_iter().collect()
    }
}

impl<K: Serialize, V: Serialize> Serialize for SmallMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de, K, V> Deserialize<'de> for SmallMap<K, V>
where
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);

        impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
        where
            K: Deserialize<'de> + Ord,
            V: Deserialize<'de>,
        {
            type Value = SmallMap<K, V>;

            // The words serde uses for a `BTreeMap`, so errors read the same.
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = access.next_entry()? {
                    entries.push(entry);
                }
                Ok(SmallMap::from_entries(entries))
            }
        }

        d.deserialize_map(MapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_a_btreemap() {
        let small: Result<SmallMap<String, u32>, _> =
            serde_json::from_str(r#"{"b": 2, "a": 1, "c": 3, "a": 4}"#);
        let tree: Result<BTreeMap<String, u32>, _> =
            serde_json::from_str(r#"{"b": 2, "a": 1, "c": 3, "a": 4}"#);
        let (small, tree) = (small.unwrap(), tree.unwrap());
        assert_eq!(BTreeMap::from(small.clone()), tree);
        assert_eq!(format!("{small:?}"), format!("{tree:?}"));
        assert_eq!(
            serde_json::to_string(&small).unwrap(),
            serde_json::to_string(&tree).unwrap()
        );
        assert_eq!(small.get("a"), Some(&4));
        assert_eq!(small.len(), 3);
    }

    #[test]
    fn errors_read_like_a_btreemap() {
        let small = serde_json::from_str::<SmallMap<String, u32>>(r#"{"a": "x"}"#);
        let tree = serde_json::from_str::<BTreeMap<String, u32>>(r#"{"a": "x"}"#);
        assert_eq!(
            small.unwrap_err().to_string(),
            tree.unwrap_err().to_string()
        );
        let small = serde_json::from_str::<SmallMap<String, u32>>("[1]");
        let tree = serde_json::from_str::<BTreeMap<String, u32>>("[1]");
        assert_eq!(
            small.unwrap_err().to_string(),
            tree.unwrap_err().to_string()
        );
    }

    #[test]
    fn insert_keeps_order() {
        let mut m = SmallMap::new();
        assert_eq!(m.insert("b", 1), None);
        assert_eq!(m.insert("a", 2), None);
        assert_eq!(m.insert("b", 3), Some(1));
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(&"a", &2), (&"b", &3)]);
        assert_eq!(m.remove("a"), Some(2));
        assert!(!m.contains_key("a"));
    }

    #[test]
    fn extend_lets_the_new_entries_win_as_a_btreemap_does() {
        let mut small: SmallMap<&str, u32> = SmallMap::from([("b", 1), ("a", 2)]);
        let mut tree: BTreeMap<&str, u32> = BTreeMap::from([("b", 1), ("a", 2)]);
        let more = [("c", 3), ("b", 4), ("c", 5)];
        small.extend(more);
        tree.extend(more);
        assert_eq!(BTreeMap::from(small), tree);
    }
}
