//! `zoneAwareLbSetting` needs the proxy's own service (Envoy's local cluster): said once per
//! DestinationRule when it cannot be found, since Envoy then routes by region tier only.

use sluice_model::{codes, LoadBalancerSettings, Resource, Severity, Spec, TrafficPolicy};

use super::Compiler;
use crate::labels::selector_matches;

impl Compiler<'_> {
    /// A warning on each DestinationRule of this proxy that enables `zoneAwareLbSetting` when
    /// the proxy's own service (this build's, kept in the memo) was not found.
    pub(crate) fn warn_zone_aware_without_local_cluster(&mut self) {
        if !self.memo.local.is_empty() {
            return;
        }
        let why = if local_identity_unknown(self.proxy) {
            "this proxy's workload labels are not known (`sluice run --labels`, or the Pod's `--labels-file` in Kubernetes mode)".to_string()
        } else {
            let labels: Vec<String> = self
                .proxy
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(
                "no service of namespace `{}` has an endpoint carrying this proxy's labels ({})",
                self.proxy.namespace,
                labels.join(", ")
            )
        };
        let found: Vec<_> = self
            .ordered
            .iter()
            .filter_map(|r| Some((r, zone_aware_field(r, &self.proxy.labels)?)))
            .map(|(r, field)| {
                r.diag(
                    Severity::Warning,
                    codes::ZONE_AWARE_WITHOUT_LOCAL_CLUSTER,
                    field,
                    format!("zoneAwareLbSetting weighs zones by how this proxy's own service is spread over them, but {why}: as Envoy without a local cluster, no zone-aware routing happens (endpoints are tiered by region, the region's zones sharing its tier)"),
                )
            })
            .collect();
        self.diagnostics.extend(found);
    }
}

/// Whether the proxy has no labels that say what it is (topology labels say only where).
fn local_identity_unknown(proxy: &crate::proxy::ProxyConfig) -> bool {
    proxy
        .labels
        .keys()
        .all(|k| crate::local_cluster::is_topology_label(k))
}

/// The first place a DestinationRule applying to a proxy with `labels` enables
/// `zoneAwareLbSetting`.
fn zone_aware_field(
    r: &Resource,
    labels: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    let Spec::DestinationRule(dr) = &r.spec else {
        return None;
    };
    if let Some(sel) = &dr.workload_selector {
        if !selector_matches(&sel.match_labels, labels) {
            return None;
        }
    }
    let in_policy = |tp: &TrafficPolicy, at: &str| -> Option<String> {
        if enables(tp.load_balancer.as_ref()) {
            return Some(format!("{at}.loadBalancer.zoneAwareLbSetting"));
        }
        tp.port_level_settings
            .iter()
            .position(|p| enables(p.load_balancer.as_ref()))
            .map(|i| format!("{at}.portLevelSettings[{i}].loadBalancer.zoneAwareLbSetting"))
    };
    if let Some(f) = dr
        .traffic_policy
        .as_deref()
        .and_then(|tp| in_policy(tp, "spec.trafficPolicy"))
    {
        return Some(f);
    }
    dr.subsets.iter().enumerate().find_map(|(i, s)| {
        let at = format!("spec.subsets[{i}].trafficPolicy");
        s.traffic_policy
            .as_deref()
            .and_then(|tp| in_policy(tp, &at))
    })
}

/// Whether a load balancer sets `zoneAwareLbSetting` without `enabled: false`.
fn enables(lb: Option<&LoadBalancerSettings>) -> bool {
    lb.and_then(|lb| lb.zone_aware_lb_setting.as_ref())
        .is_some_and(|z| {
            let enabled = z.get("enabled").and_then(|v| {
                v.as_bool()
                    .or_else(|| v.get("value").and_then(serde_json::Value::as_bool))
            });
            enabled != Some(false)
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sluice_lb::StateStore;
    use sluice_model::{codes, parse_text};

    use crate::proxy::ProxyConfig;

    const CONFIG: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: sleep, namespace: sample}\nspec:\n  hosts: [sleep.sample.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints:\n  - {address: 10.0.0.1, locality: region1/zone1, labels: {app: sleep}}\n  - {address: 10.0.0.2, locality: region1/zone2, labels: {app: sleep}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: hw, namespace: sample}\nspec:\n  host: hw.sample.svc.cluster.local\n  subsets:\n  - name: v1\n    labels: {version: v1}\n    trafficPolicy: {loadBalancer: {zoneAwareLbSetting: {enabled: true}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: off, namespace: sample}\nspec:\n  host: off.sample.svc.cluster.local\n  trafficPolicy: {loadBalancer: {zoneAwareLbSetting: {enabled: false}}}\n";

    fn warnings(labels: &[(&str, &str)]) -> Vec<(String, String)> {
        let parsed = parse_text(CONFIG, None);
        let proxy = ProxyConfig {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            namespace: "sample".into(),
            locality: "region1/zone1".into(),
            ..ProxyConfig::default()
        };
        let compiled = crate::compile::compile(&parsed.resources, &proxy, &StateStore::new());
        compiled
            .diagnostics
            .into_iter()
            .filter(|d| d.code == codes::ZONE_AWARE_WITHOUT_LOCAL_CLUSTER)
            .map(|d| (d.field.unwrap_or_default(), d.message))
            .collect()
    }

    #[test]
    fn a_zone_aware_rule_warns_when_the_proxys_own_service_is_unknown() {
        let unknown = warnings(&[]);
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        assert_eq!(
            unknown[0].0,
            "spec.subsets[0].trafficPolicy.loadBalancer.zoneAwareLbSetting"
        );
        assert!(unknown[0].1.contains("labels are not known"), "{unknown:?}");
        let unmatched = warnings(&[("app", "ratings")]);
        assert_eq!(unmatched.len(), 1, "{unmatched:?}");
        assert!(unmatched[0].1.contains("app=ratings"), "{unmatched:?}");
        // Found: nothing to say.
        assert!(warnings(&[("app", "sleep")]).is_empty());
    }
}
