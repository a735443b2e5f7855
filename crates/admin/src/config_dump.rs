//! `/config_dump`: the active objects, diagnostics and registry, and the last rejected reload;
//! `?host=` keeps what concerns one host, `limit`/`offset` page the objects and the registry's
//! services.

use std::collections::{BTreeMap, HashSet};

use serde_json::json;
use sluice_model::{Resource, ResourceRef, Spec};

use crate::query::Query;
use crate::AdminState;

/// The `/config_dump` document for `query`.
pub(crate) fn config_dump(state: &AdminState, query: &Query) -> serde_json::Value {
    let snap = state.config.load();
    let rejected = state.config.last_rejected();
    let Some(s) = snap.as_deref() else {
        return json!({
            "version": null,
            "proxy": null,
            "resources": null,
            "diagnostics": null,
            "registry": null,
            "lastRejected": rejected.as_deref(),
        });
    };
    let query = &query.or_first_page(s.resources.len().max(s.registry.services().count()));
    if !query.is_set() {
        return json!({
            "version": s.version,
            "proxy": &s.proxy,
            "resources": s.resources.as_slice(),
            "diagnostics": &s.diagnostics,
            "registry": &s.registry,
            "canaryOverlays": &s.canaries,
            "lastRejected": rejected.as_deref(),
        });
    }
    let matching: Vec<&Resource> = s
        .resources
        .iter()
        .map(|r| &**r)
        .filter(|r| concerns(query, r))
        .collect();
    let total = matching.len();
    let page = query.page(matching);
    // With a host, the findings about the objects shown (and those about no object); a page
    // alone keeps them all, as they are not paginated.
    let shown: HashSet<ResourceRef> = page.iter().map(|r| r.key()).collect();
    let diagnostics: Vec<_> = s
        .diagnostics
        .iter()
        .filter(|d| {
            query.host.is_none() || d.resource.as_ref().is_none_or(|key| shown.contains(key))
        })
        .collect();
    let services: Vec<_> = s
        .registry
        .services()
        .filter(|svc| query.concerns(&svc.hostname, &svc.namespace))
        .collect();
    let total_services = services.len();
    // The registry's services are paged as the objects are (the same `limit` and `offset`).
    let services: BTreeMap<&str, _> = query
        .page(services)
        .into_iter()
        .map(|svc| (svc.hostname.as_str(), svc))
        .collect();
    json!({
        "version": s.version,
        "proxy": &s.proxy,
        "query": {
            "host": query.host,
            "limit": query.limit,
            "offset": query.offset,
            "totalResources": total,
            "totalServices": total_services,
        },
        "resources": page,
        "diagnostics": diagnostics,
        "registry": { "services": services },
        "lastRejected": rejected.as_deref(),
    })
}

/// Whether an object names a host that concerns the query (every object without `?host=`).
fn concerns(query: &Query, r: &Resource) -> bool {
    if query.host.is_none() {
        return true;
    }
    let ns = r.metadata.namespace.as_str();
    // `ns/host` forms (Gateway servers, Sidecar egress) name the host after the slash.
    let scoped = |h: &String| query.concerns(h.split_once('/').map_or(h.as_str(), |(_, h)| h), ns);
    match &r.spec {
        Spec::VirtualService(vs) => vs.hosts.iter().any(|h| query.concerns(h, ns)),
        Spec::DestinationRule(dr) => query.concerns(&dr.host, ns),
        Spec::ServiceEntry(se) => se.hosts.iter().any(|h| query.concerns(h, ns)),
        Spec::Gateway(gw) => gw.servers.iter().flat_map(|s| &s.hosts).any(scoped),
        Spec::Sidecar(sc) => sc.egress.iter().flat_map(|e| &e.hosts).any(scoped),
        _ => false,
    }
}
