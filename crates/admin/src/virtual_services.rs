//! `/api/virtualservices`: the VirtualServices of the active config with their HTTP rules as
//! compiled (route name, where they apply, weighted destinations, mirrors), for the
//! dashboard's side panel. `?host=` keeps those that name a host (as theirs or as a
//! destination), `limit`/`offset` page them; a request that asks for neither gets the first
//! page of a longer list (at 10,000 services the whole list is 14 MB, and the dashboard asks
//! every second).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use sluice_config::host::fqdn;
use sluice_config::route_table::{Route, RouteAction};
use sluice_config::Snapshot;
use sluice_model::{ResourceRef, Spec, VirtualService};
use sluice_telemetry::listener_source;

use crate::query::Query;
use crate::AdminState;

/// One weighted destination of a rule.
#[derive(Debug, Clone, Serialize)]
struct DestinationView {
    service: String,
    subset: Option<String>,
    weight: u32,
    /// Weight over the rule's total weight (0–1).
    share: f64,
}

/// One mirror target of a rule.
#[derive(Debug, Clone, Serialize)]
struct MirrorView {
    service: String,
    subset: Option<String>,
    percentage: f64,
}

/// One HTTP rule of a VirtualService.
#[derive(Debug, Clone, Serialize)]
struct RuleView {
    /// Index in `spec.http`.
    index: usize,
    /// Route name, as the graph's edges carry it.
    route: String,
    /// `forward`, `redirect` or `direct_response`.
    action: &'static str,
    /// Whether the rule matches every request.
    catch_all: bool,
    /// Traffic sources the rule applies to (`mesh`, `gateway:<ns/name>`).
    sources: BTreeSet<String>,
    destinations: Vec<DestinationView>,
    mirrors: Vec<MirrorView>,
}

/// One VirtualService.
#[derive(Debug, Clone, Serialize)]
struct VirtualServiceView {
    namespace: String,
    name: String,
    hosts: Vec<String>,
    gateways: Vec<String>,
    /// Rules in force; empty when the object applies to no listener of this proxy.
    rules: Vec<RuleView>,
}

fn action_name(action: &RouteAction) -> &'static str {
    match action {
        RouteAction::Forward(_) => "forward",
        RouteAction::Redirect(_) => "redirect",
        RouteAction::DirectResponse(_) => "direct_response",
    }
}

/// The rule as compiled, plus the destinations written with weight 0 (compilation drops
/// them, but a canary at 100/0 should still show its idle version).
fn rule_view(route: &Route, spec: &VirtualService, namespace: &str) -> RuleView {
    let mut destinations: Vec<DestinationView> = match &route.action {
        RouteAction::Forward(f) => f
            .destinations
            .iter()
            .map(|d| DestinationView {
                service: d.host.to_string(),
                subset: d.subset.as_deref().map(str::to_string),
                weight: d.weight,
                share: 0.0,
            })
            .collect(),
        _ => Vec::new(),
    };
    let idle = spec
        .http
        .get(route.source.rule)
        .map(|rule| rule.route.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|d| d.weight == Some(0))
        .filter_map(|d| d.destination.as_ref());
    for d in idle {
        destinations.push(DestinationView {
            service: fqdn(&d.host, namespace),
            subset: d.subset.clone(),
            weight: 0,
            share: 0.0,
        });
    }
    let total: u64 = destinations.iter().map(|d| u64::from(d.weight)).sum();
    for d in &mut destinations {
        if total > 0 {
            d.share = f64::from(d.weight) / total as f64;
        }
    }
    RuleView {
        index: route.source.rule,
        route: route.name.clone(),
        action: action_name(&route.action),
        catch_all: route.is_catch_all(),
        sources: BTreeSet::new(),
        destinations,
        mirrors: route
            .policy
            .mirrors
            .iter()
            .map(|m| MirrorView {
                service: m.destination.host.to_string(),
                subset: m.destination.subset.as_deref().map(str::to_string),
                percentage: m.percentage,
            })
            .collect(),
    }
}

/// Whether `vs` (in `namespace`) concerns the asked host: as one of its hosts or as a
/// destination of an HTTP rule.
fn concerns(query: &Query, vs: &VirtualService, namespace: &str) -> bool {
    let names = |d: &sluice_model::common::Destination| query.concerns(&d.host, namespace);
    query.host.is_none()
        || vs.hosts.iter().any(|h| query.concerns(h, namespace))
        || vs.http.iter().any(|r| {
            r.route
                .iter()
                .filter_map(|d| d.destination.as_ref())
                .any(names)
                || r.mirror.as_deref().is_some_and(names)
                || r.mirrors
                    .iter()
                    .filter_map(|m| m.destination.as_ref())
                    .any(names)
        })
}

/// The VirtualServices of a snapshot that `query` asks for, in load order, and how many match
/// before paging.
fn views(snap: &Snapshot, query: &Query) -> (Vec<VirtualServiceView>, usize, Query) {
    let matching: Vec<(ResourceRef, &VirtualService)> = snap
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::VirtualService(vs) if concerns(query, vs, &r.metadata.namespace) => {
                Some((r.key(), &**vs))
            }
            _ => None,
        })
        .collect();
    let total = matching.len();
    let asked = query.or_first_page(total);
    let shown = asked.page(matching);
    let specs: HashMap<&ResourceRef, &VirtualService> =
        shown.iter().map(|(key, vs)| (key, *vs)).collect();
    // A rule appears once per listener and port it is bound to; it is listed once, with
    // every source it serves. Only the rules of the VirtualServices shown are made.
    let mut rules: BTreeMap<(ResourceRef, usize), RuleView> = BTreeMap::new();
    for listener in &snap.listeners {
        let source = listener_source(listener);
        let vhosts = listener
            .virtual_hosts
            .vhosts
            .iter()
            .chain(listener.default_virtual_host.iter());
        for route in vhosts.flat_map(|vh| vh.routes.iter()) {
            let Some(vs) = route.source.virtual_service.as_deref() else {
                continue;
            };
            let Some(spec) = specs.get(vs) else {
                continue;
            };
            rules
                .entry((vs.clone(), route.source.rule))
                .or_insert_with(|| rule_view(route, spec, &vs.namespace))
                .sources
                .insert(source.clone());
        }
    }
    let views = shown
        .iter()
        .map(|(key, vs)| VirtualServiceView {
            rules: rules
                .range((key.clone(), 0)..=(key.clone(), usize::MAX))
                .map(|(_, rule)| rule.clone())
                .collect(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            hosts: vs.hosts.clone(),
            gateways: vs.gateways.clone(),
        })
        .collect();
    (views, total, asked)
}

/// The `/api/virtualservices` document for `query`.
pub(crate) fn virtual_services(state: &AdminState, query: &Query) -> serde_json::Value {
    let snap = state.config.load();
    let (views, total, asked) = match snap.as_deref() {
        Some(snap) => views(snap, query),
        None => (Vec::new(), 0, query.clone()),
    };
    let mut doc = serde_json::json!({
        "version": snap.as_ref().map(|s| s.version),
        "virtual_services": views,
    });
    if asked.is_set() {
        doc["query"] = serde_json::json!({
            "host": asked.host,
            "limit": asked.limit,
            "offset": asked.offset,
            "totalVirtualServices": total,
        });
    }
    doc
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use super::*;
    use crate::tests::snapshot_of;

    const EXTRA: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app-frontend}
spec:
  hosts: [app-frontend]
  http:
  - name: testers
    match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: app-backend, subset: v2}
  - route:
    - destination: {host: app-backend, subset: v1}
      weight: 100
    - destination: {host: app-backend, subset: v2}
      weight: 0
    mirror: {host: app-backend, subset: v2}
    mirrorPercentage: {value: 25}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app-frontend}
spec:
  hosts: [app-frontend.default.svc.cluster.local]
  ports: [{number: 9081, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: 9003}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: unbound}
spec:
  hosts: [shop.example.com]
  gateways: [no-such-gateway]
  http:
  - route:
    - destination: {host: app-backend}
"#;

    fn state() -> AdminState {
        let text = format!(
            "{}{EXTRA}",
            include_str!("../../telemetry/tests/fixtures/canary.yaml")
        );
        let config = sluice_proxy::ConfigHandle::new();
        config.publish(Arc::new(snapshot_of(&text, 9)));
        AdminState::new(config, Arc::new(|| Ok(())))
    }

    fn find<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
        doc["virtual_services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {doc:#}"))
    }

    #[test]
    fn canary_weights_and_shares() {
        let doc = virtual_services(&state(), &Query::default());
        assert_eq!(doc["version"], 9);
        let vs = find(&doc, "app-backend");
        assert_eq!(vs["namespace"], "default");
        assert_eq!(vs["hosts"], serde_json::json!(["app-backend"]));
        let rules = vs["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1, "{vs:#}");
        let rule = &rules[0];
        assert_eq!(rule["route"], "app-backend.0");
        assert_eq!(rule["action"], "forward");
        assert_eq!(rule["catch_all"], true);
        assert_eq!(rule["sources"], serde_json::json!(["mesh"]));
        let weights: Vec<(String, u64, f64)> = rule["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                assert_eq!(d["service"], "app-backend.default.svc.cluster.local");
                (
                    d["subset"].as_str().unwrap().to_string(),
                    d["weight"].as_u64().unwrap(),
                    d["share"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            weights,
            vec![("v1".into(), 90, 0.9), ("v2".into(), 10, 0.1)]
        );
    }

    #[test]
    fn named_rules_idle_destinations_mirrors_and_unbound_objects() {
        let doc = virtual_services(&state(), &Query::default());
        let vs = find(&doc, "app-frontend");
        let rules = vs["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2, "{vs:#}");
        assert_eq!(rules[0]["route"], "testers");
        assert_eq!(rules[0]["catch_all"], false);
        assert_eq!(rules[0]["destinations"][0]["weight"], 100);
        assert_eq!(rules[0]["destinations"][0]["share"], 1.0);
        // The weight-0 destination is listed although compilation dropped it.
        let second = &rules[1];
        assert_eq!(second["index"], 1);
        let dests = second["destinations"].as_array().unwrap();
        assert_eq!(dests.len(), 2, "{second:#}");
        assert_eq!(dests[1]["subset"], "v2");
        assert_eq!(dests[1]["weight"], 0);
        assert_eq!(dests[1]["share"], 0.0);
        assert_eq!(dests[1]["service"], "app-backend.default.svc.cluster.local");
        assert_eq!(second["mirrors"][0]["subset"], "v2");
        assert_eq!(second["mirrors"][0]["percentage"], 25.0);
        // Bound to a gateway this proxy does not run: listed, with no rules in force.
        let unbound = find(&doc, "unbound");
        assert_eq!(unbound["gateways"], serde_json::json!(["no-such-gateway"]));
        assert!(unbound["rules"].as_array().unwrap().is_empty());
    }

    /// A list longer than a page comes a page at a time; `?host=` finds a VirtualService by
    /// its own host or by a destination, wherever it is in the list.
    #[test]
    fn a_long_list_comes_a_page_at_a_time_and_filters_by_host() {
        let page = crate::query::DEFAULT_PAGE;
        let text: Vec<String> = (0..=page)
            .map(|i| {
                let to = if i == page { "backend.example.com" } else { "own.example.com" };
                format!(
                    "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs{i}}}\nspec:\n  hosts: [vs{i}.example.com]\n  http:\n  - route:\n    - destination: {{host: {to}}}\n"
                )
            })
            .collect();
        let service = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: vs100}\nspec:\n  hosts: [vs100.example.com]\n  resolution: STATIC\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  endpoints: [{address: 10.0.0.1}]\n";
        let text = format!("{}---\n{service}", text.join("---\n"));
        let config = sluice_proxy::ConfigHandle::new();
        config.publish(Arc::new(snapshot_of(&text, 4)));
        let state = AdminState::new(config, Arc::new(|| Ok(())));
        let names = |doc: &serde_json::Value| -> Vec<String> {
            doc["virtual_services"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["name"].as_str().unwrap().to_string())
                .collect()
        };
        let first = virtual_services(&state, &Query::default());
        assert_eq!(names(&first).len(), page);
        assert_eq!(first["query"]["limit"], page);
        assert_eq!(first["query"]["totalVirtualServices"], page + 1);
        let rest = virtual_services(&state, &Query::parse(Some("offset=99&limit=5")).unwrap());
        assert_eq!(names(&rest), ["vs99", "vs100"]);
        let own = virtual_services(&state, &Query::parse(Some("host=vs3.example.com")).unwrap());
        assert_eq!(names(&own), ["vs3"]);
        assert_eq!(own["query"]["totalVirtualServices"], 1);
        let by_destination = virtual_services(
            &state,
            &Query::parse(Some("host=backend.example.com")).unwrap(),
        );
        assert_eq!(names(&by_destination), ["vs100"]);
        assert_eq!(
            by_destination["virtual_services"][0]["rules"][0]["destinations"][0]["service"],
            "backend.example.com"
        );
    }

    #[test]
    fn nothing_loaded() {
        let s = AdminState::new(sluice_proxy::ConfigHandle::new(), Arc::new(|| Ok(())));
        let doc = virtual_services(&s, &Query::default());
        assert!(doc["version"].is_null());
        assert_eq!(doc["virtual_services"], serde_json::json!([]));
    }
}
