//! `zoneAwareLbSetting` needs the proxy's own service (Envoy's local cluster): said once per
//! DestinationRule when it cannot be found, since Envoy then routes by region tier only.

use sluice_model::{codes, LoadBalancerSettings, Resource, Severity, Spec, TrafficPolicy};

use super::Compiler;
use crate::labels::selector_matches;
use crate::local_cluster::LocalCluster;

impl Compiler<'_> {
    /// A warning on each DestinationRule of this proxy that enables `zoneAwareLbSetting` when
    /// the proxy's own service was not found.
    pub(crate) fn warn_zone_aware_without_local_cluster(&mut self, local: &LocalCluster) {
        if !local.is_empty() {
            return;
        }
        let why = if local_identity_unknown(self.proxy) {
            "this proxy's workload labels are not known (`sluice run --labels`, or its Pod's labels in Kubernetes mode)".to_string()
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
