//! The clusters of a snapshot by name: one list sorted by name, searched by halves.
//!
//! A `BTreeMap<String, _>` kept each name twice (its key beside the cluster's own) in nodes
//! mostly a third empty: 3.3 MB at 10,000 services, for a lookup made only at compile time and
//! by the admin API.

use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::cluster::Cluster;

/// Every cluster of a snapshot, ordered by name.
#[derive(Debug, Clone, Default)]
pub struct ClusterMap {
    by_name: Box<[Arc<Cluster>]>,
}

impl ClusterMap {
    /// The map of `clusters`; of clusters sharing a name, the last one given is kept.
    pub fn new(mut clusters: Vec<Arc<Cluster>>) -> Self {
        // Stable: the clusters of one name stay in the order given.
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        let mut kept: Vec<Arc<Cluster>> = Vec::with_capacity(clusters.len());
        for c in clusters {
            match kept.last_mut() {
                Some(last) if last.name == c.name => *last = c,
                _ => kept.push(c),
            }
        }
        ClusterMap {
            by_name: kept.into_boxed_slice(),
        }
    }

    /// The cluster named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.by_name
            .binary_search_by(|c| c.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.by_name[i])
    }

    /// Whether a cluster is named `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// How many clusters there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there is no cluster.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The clusters in name order.
    pub fn values(&self) -> std::slice::Iter<'_, Arc<Cluster>> {
        self.by_name.iter()
    }

    /// The names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.by_name.iter().map(|c| c.name.as_str())
    }

    /// Names and clusters in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<Cluster>)> {
        self.by_name.iter().map(|c| (c.name.as_str(), c))
    }
}

impl std::ops::Index<&str> for ClusterMap {
    type Output = Arc<Cluster>;

    /// The cluster named `name`; panics when there is none (tests and lookups of known names).
    fn index(&self, name: &str) -> &Arc<Cluster> {
        match self.get(name) {
            Some(c) => c,
            None => panic!("no cluster named {name}"),
        }
    }
}

/// A JSON object by name, as the map it replaces was written.
impl Serialize for ClusterMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (name, c) in self.iter() {
            map.serialize_entry(name, c)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, port: u16) -> Arc<Cluster> {
        let mut c = Cluster::black_hole(&sluice_lb::StateStore::new());
        c.name = name.into();
        c.port = port;
        Arc::new(c)
    }

    #[test]
    fn lookups_find_each_name_and_the_last_of_a_repeated_one() {
        let map = ClusterMap::new(vec![
            cluster("outbound|80||b", 1),
            cluster("outbound|80||a", 1),
            cluster("outbound|80||b", 2),
            cluster("outbound|80|v1|a", 1),
        ]);
        assert_eq!(
            map.keys().collect::<Vec<_>>(),
            ["outbound|80|v1|a", "outbound|80||a", "outbound|80||b"]
        );
        assert_eq!(map.get("outbound|80||b").map(|c| c.port), Some(2));
        assert!(map.contains_key("outbound|80|v1|a"));
        assert!(map.get("outbound|80||c").is_none());
        assert_eq!(map["outbound|80||a"].name, "outbound|80||a");
        let json = serde_json::to_value(&map).unwrap_or_default();
        assert_eq!(json["outbound|80||b"]["port"], 2);
    }
}
