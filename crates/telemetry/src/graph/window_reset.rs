//! Which routes a reload changed, so their observed split restarts from the reload instead of
//! mixing requests sent under the old weights with requests sent under the new ones.

use std::collections::{BTreeMap, BTreeSet};

use super::view::ConfiguredRoute;

/// A route's identity in the graph: (source, virtual host, route name).
pub(super) type Group = (String, String, String);

fn group_of(r: &ConfiguredRoute) -> Group {
    (r.source.clone(), r.virtual_host.clone(), r.route.clone())
}

/// The routes whose destinations, weights or mirrors differ between `old` and `new`, including
/// routes that appear or disappear; a reload that keeps a route as it was leaves its window alone.
pub(super) fn changed_groups(old: &[ConfiguredRoute], new: &[ConfiguredRoute]) -> BTreeSet<Group> {
    let before: BTreeMap<Group, &ConfiguredRoute> = old.iter().map(|r| (group_of(r), r)).collect();
    let after: BTreeMap<Group, &ConfiguredRoute> = new.iter().map(|r| (group_of(r), r)).collect();
    let mut changed = BTreeSet::new();
    for (g, r) in &after {
        if before.get(g).is_none_or(|o| o != r) {
            changed.insert(g.clone());
        }
    }
    changed.extend(before.keys().filter(|g| !after.contains_key(*g)).cloned());
    changed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::graph::ConfiguredDestination;

    fn route(name: &str, weights: &[(&str, u32)]) -> ConfiguredRoute {
        ConfiguredRoute {
            source: "mesh".into(),
            virtual_host: "app-backend:9080".into(),
            route: name.into(),
            destinations: weights
                .iter()
                .map(|(s, w)| ConfiguredDestination {
                    service: "app-backend".into(),
                    subset: Some((*s).into()),
                    weight: *w,
                })
                .collect(),
            mirrors: Vec::new(),
        }
    }

    #[test]
    fn only_routes_whose_split_changed_are_reset() {
        let old = [
            route("a", &[("v1", 90), ("v2", 10)]),
            route("b", &[("v1", 100)]),
            route("gone", &[("v1", 100)]),
        ];
        let new = [
            route("a", &[("v1", 50), ("v2", 50)]),
            route("b", &[("v1", 100)]),
            route("new", &[("v2", 100)]),
        ];
        let names: Vec<String> = changed_groups(&old, &new)
            .into_iter()
            .map(|g| g.2)
            .collect();
        assert_eq!(names, ["a", "gone", "new"]);
        assert!(changed_groups(&new, &new).is_empty());
    }
}
