//! `simple: PASSTHROUGH` (Istio's ORIGINAL_DST cluster): requests the sidecar intercepts go to
//! their original destination; the proxy's own listeners have none, so, as in Envoy, requests
//! they route there find no host (`503 UH`), which is said here.

use sluice_model::{LoadBalancerSettings, Spec, TrafficPolicy};

use super::Compiler;

impl Compiler<'_> {
    /// `simple: PASSTHROUGH` forwards to the original destination, which only an intercepted
    /// connection has: elsewhere (gateways, per-service mesh listeners) there is no host.
    pub(crate) fn warn_passthrough_without_interception(&mut self) {
        let mut found = Vec::new();
        for r in self.ordered.iter().copied() {
            let Spec::DestinationRule(dr) = &r.spec else {
                continue;
            };
            let mut policies: Vec<(String, &TrafficPolicy)> = Vec::new();
            if let Some(tp) = &dr.traffic_policy {
                policies.push(("spec.trafficPolicy".into(), tp));
            }
            for (i, s) in dr.subsets.iter().enumerate() {
                if let Some(tp) = &s.traffic_policy {
                    policies.push((format!("spec.subsets[{i}].trafficPolicy"), tp));
                }
            }
            let passthrough = |lb: Option<&LoadBalancerSettings>| {
                lb.is_some_and(|lb| lb.simple.as_deref() == Some("PASSTHROUGH"))
            };
            for (base, tp) in policies {
                if passthrough(tp.load_balancer.as_ref()) {
                    found.push((r, format!("{base}.loadBalancer.simple")));
                }
                for (k, p) in tp.port_level_settings.iter().enumerate() {
                    if passthrough(p.load_balancer.as_ref()) {
                        found.push((
                            r,
                            format!("{base}.portLevelSettings[{k}].loadBalancer.simple"),
                        ));
                    }
                }
            }
        }
        for (r, field) in found {
            self.diagnostics.push(r.diag(
                sluice_model::Severity::Warning,
                sluice_model::codes::ORIGINAL_DST_WITHOUT_INTERCEPTION,
                field,
                "`simple: PASSTHROUGH` forwards requests the sidecar intercepts (`--outbound-port`) to their original destination and ignores the service's endpoints (Envoy's ORIGINAL_DST cluster); this proxy's gateway and per-service listeners have no original destination, so requests they route here answer 503 UH (no healthy upstream), as in Istio",
            ));
        }
    }
}
