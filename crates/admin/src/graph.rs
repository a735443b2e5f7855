//! `/api/graph`: the traffic graph with its configured routes; `?host=` keeps the routes, edges
//! and nodes of one service (by its host or a virtual host naming it), `limit`/`offset` page
//! the configured routes (one per route of every virtual host: tens of thousands at scale),
//! with the edges of the routes on the page and the nodes they join.

use sluice_config::host::{covers, strip_port};

use crate::query::Query;
use crate::AdminState;

/// The `/api/graph` document for `query`.
pub(crate) fn graph(state: &AdminState, query: &Query) -> Vec<u8> {
    let graph = state.telemetry.graph();
    let mut g = graph.snapshot();
    let query = &query.or_first_page(g.routes.len());
    if !query.is_set() {
        return serde_json::to_vec(&g).unwrap_or_default();
    }
    if let Some(host) = query.host.as_deref() {
        let named = |service: &str| covers(host, service);
        let vhost = |vh: &str| covers(host, strip_port(vh));
        g.routes.retain(|r| {
            vhost(&r.virtual_host)
                || r.destinations.iter().any(|d| named(&d.service))
                || r.mirrors.iter().any(|m| named(&m.service))
        });
        g.edges
            .retain(|e| named(&e.service) || vhost(&e.virtual_host));
        let ends: std::collections::HashSet<&str> = g
            .edges
            .iter()
            .flat_map(|e| [e.source.as_str(), e.target.as_str()])
            .collect();
        let keep: Vec<bool> = g
            .nodes
            .iter()
            .map(|n| ends.contains(n.id.as_str()) || n.service.as_deref().is_some_and(named))
            .collect();
        let mut keep = keep.into_iter();
        g.nodes.retain(|_| keep.next().unwrap_or(false));
    }
    let total_routes = g.routes.len();
    g.routes = query.page(std::mem::take(&mut g.routes));
    if query.pages() {
        // A page of routes comes with their edges and the nodes those join, not every edge.
        let routes: std::collections::HashSet<(String, &str, &str)> = g
            .routes
            .iter()
            .map(|r| {
                (
                    format!("source:{}", r.source),
                    r.virtual_host.as_str(),
                    r.route.as_str(),
                )
            })
            .collect();
        g.edges.retain(|e| {
            routes.contains(&(e.source.clone(), e.virtual_host.as_str(), e.route.as_str()))
        });
        let ends: std::collections::HashSet<&str> = g
            .edges
            .iter()
            .flat_map(|e| [e.source.as_str(), e.target.as_str()])
            .collect();
        let keep: Vec<bool> = g
            .nodes
            .iter()
            .map(|n| ends.contains(n.id.as_str()))
            .collect();
        let mut keep = keep.into_iter();
        g.nodes.retain(|_| keep.next().unwrap_or(false));
    }
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
