//! `/api/graph`: the traffic graph with its configured routes; `?host=` keeps the routes, edges
//! and nodes of one service (by its host or a virtual host naming it), `limit`/`offset` page
//! the configured routes (one per route of every virtual host: tens of thousands at scale),
//! with the edges of the routes on the page and the nodes they join.

use std::collections::HashSet;

use sluice_config::host::{covers, strip_port};
use sluice_telemetry::graph::RouteRef;

use crate::query::Query;
use crate::AdminState;

/// The `/api/graph` document for `query`.
pub(crate) fn graph(state: &AdminState, query: &Query) -> Vec<u8> {
    let graph = state.telemetry.graph();
    let concerns = |host: &str, r: &RouteRef| {
        covers(host, strip_port(r.group().1)) || r.any_service(|s| covers(host, s))
    };
    let mut total_routes = 0;
    let mut asked = query.clone();
    // Routes are chosen (filtered, paged) before the graph is made: the edges configured for
    // the others are never built.
    let mut g = graph.snapshot_selecting(|routes| {
        let matching: Vec<_> = match query.host.as_deref() {
            Some(host) => routes
                .iter()
                .filter(|r| concerns(host, r))
                .cloned()
                .collect(),
            None => routes.to_vec(),
        };
        total_routes = matching.len();
        asked = query.or_first_page(total_routes);
        asked.page(matching)
    });
    let query = &asked;
    if !query.is_set() {
        return serde_json::to_vec(&g).unwrap_or_default();
    }
    if let Some(host) = query.host.as_deref() {
        g.edges
            .retain(|e| covers(host, &e.service) || covers(host, strip_port(&e.virtual_host)));
    }
    if query.pages() {
        // A page of routes comes with their edges, not every edge with traffic.
        let routes: HashSet<(&str, &str, &str)> = g
            .routes
            .iter()
            .map(|r| (&*r.source, &*r.virtual_host, r.route.as_str()))
            .collect();
        // An edge's source is the node id, `source:` and the route's source.
        g.edges.retain(|e| {
            let source = e.source.strip_prefix("source:").unwrap_or(&e.source);
            routes.contains(&(source, e.virtual_host.as_str(), e.route.as_str()))
        });
    }
    // The nodes the edges kept join (and, for a host, that service's own nodes).
    let ends: HashSet<&str> = g
        .edges
        .iter()
        .flat_map(|e| [e.source.as_str(), e.target.as_str()])
        .collect();
    let keep: Vec<bool> = g
        .nodes
        .iter()
        .map(|n| {
            ends.contains(n.id.as_str())
                || query
                    .host
                    .as_deref()
                    .zip(n.service.as_deref())
                    .is_some_and(|(h, s)| covers(h, s))
        })
        .collect();
    let mut keep = keep.into_iter();
    g.nodes.retain(|_| keep.next().unwrap_or(false));
    let mut doc = serde_json::to_value(&g).unwrap_or_default();
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(
            "query".into(),
            serde_json::json!({
                "host": query.host,
                "limit": query.limit,
                "offset": query.offset,
                "totalRoutes": total_routes,
            }),
        );
    }
    serde_json::to_vec(&doc).unwrap_or_default()
}
