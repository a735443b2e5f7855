//! `/api/virtualservices`: every VirtualService of the active config with its HTTP rules as
//! compiled (route name, where they apply, weighted destinations, mirrors), for the
//! dashboard's side panel.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sluice_config::host::fqdn;
use sluice_config::route_table::{Route, RouteAction};
use sluice_config::Snapshot;
use sluice_model::{ResourceRef, Spec, VirtualService};
use sluice_telemetry::listener_source;

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
fn rule_view(route: &Route, spec: Option<&VirtualService>, namespace: &str) -> RuleView {
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
        .and_then(|vs| vs.http.get(route.source.rule))
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

/// The VirtualServices of a snapshot, in load order.
fn views(snap: &Snapshot) -> Vec<VirtualServiceView> {
    let specs: BTreeMap<ResourceRef, &VirtualService> = snap
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::VirtualService(vs) => Some((r.key(), &**vs)),
            _ => None,
        })
        .collect();
    // A rule appears once per listener and port it is bound to; it is listed once, with
    // every source it serves.
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
            rules
                .entry((vs.clone(), route.source.rule))
                .or_insert_with(|| rule_view(route, specs.get(vs).copied(), &vs.namespace))
                .sources
                .insert(source.clone());
        }
    }
    snap.resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::VirtualService(vs) => Some((r.key(), vs)),
            _ => None,
        })
        .map(|(key, vs)| VirtualServiceView {
            rules: rules
                .range((key.clone(), 0)..=(key.clone(), usize::MAX))
                .map(|(_, rule)| rule.clone())
                .collect(),
            namespace: key.namespace,
            name: key.name,
            hosts: vs.hosts.clone(),
            gateways: vs.gateways.clone(),
        })
        .collect()
}

/// The `/api/virtualservices` document.
pub(crate) fn virtual_services(state: &AdminState) -> serde_json::Value {
    let snap = state.config.load();
    serde_json::json!({
        "version": snap.as_ref().map(|s| s.version),
        "virtual_services": snap.as_deref().map(views).unwrap_or_default(),
    })
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
        let doc = virtual_services(&state());
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
        let doc = virtual_services(&state());
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

    #[test]
    fn nothing_loaded() {
        let s = AdminState::new(sluice_proxy::ConfigHandle::new(), Arc::new(|| Ok(())));
        let doc = virtual_services(&s);
        assert!(doc["version"].is_null());
        assert_eq!(doc["virtual_services"], serde_json::json!([]));
    }
}
