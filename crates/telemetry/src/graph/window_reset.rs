//! Which routes a reload changed, so their observed split restarts from the reload instead of
//! mixing requests sent under the old weights with requests sent under the new ones.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::view::RouteRef;

/// A route's identity in the graph: (source, virtual host, route name).
pub(super) type Group = (String, String, String);

fn group_of(r: &RouteRef) -> Group {
    let (source, virtual_host, route) = r.group();
    (source.into(), virtual_host.into(), route.into())
}

/// The routes whose destinations, weights or mirrors differ between `old` and `new`, including
/// routes that appear or disappear; a reload that keeps a route as it was leaves its window alone.
/// Both lists are in (source, virtual host, route) order: one pass, no copies of the routes
/// that stay (a route an incremental build kept reads the same virtual host).
pub(super) fn changed_groups(old: &[RouteRef], new: &[RouteRef]) -> BTreeSet<Group> {
    let mut changed = BTreeSet::new();
    let (mut o, mut n) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some(a), None) => {
                changed.insert(group_of(a));
                o.next();
            }
            (None, Some(b)) => {
                changed.insert(group_of(b));
                n.next();
            }
            // Read from the same virtual host an incremental build kept: nothing to compare.
            (Some(a), Some(b)) if a.same(b) => {
                o.next();
                n.next();
            }
            (Some(a), Some(b)) => match a.group().cmp(&b.group()) {
                Ordering::Less => {
                    changed.insert(group_of(a));
                    o.next();
                }
                Ordering::Greater => {
                    changed.insert(group_of(b));
                    n.next();
                }
                Ordering::Equal => {
                    if a.view() != b.view() {
                        changed.insert(group_of(b));
                    }
                    o.next();
                    n.next();
                }
            },
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::graph::{ConfiguredDestination, ConfiguredRoute};
    use std::sync::Arc;

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
        let given = |r: ConfiguredRoute| RouteRef::Given(Arc::new(r));
        let (old, new) = (old.map(given), new.map(given));
        let names: Vec<String> = changed_groups(&old, &new)
            .into_iter()
            .map(|g| g.2)
            .collect();
        assert_eq!(names, ["a", "gone", "new"]);
        assert!(changed_groups(&new, &new).is_empty());
    }
}
