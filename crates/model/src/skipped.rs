//! What to say about an object of a kind sluice does not read.
//!
//! Most such objects (Deployments, Services, ConfigMaps...) are none of sluice's business and get
//! an info note. Istio's own policy and extension kinds are different: an operator who applies a
//! `EnvoyFilter` or a `WasmPlugin` expects it to act on traffic, so silently skipping it
//! hides a difference from Istio. Those get a warning that names the kind and says it is not enforced.

use crate::diagnostic::{codes, Diagnostic};

/// Istio kinds sluice skips although Istio would act on them, by API group.
const UNENFORCED: [(&str, &str); 5] = [
    ("networking.istio.io", "EnvoyFilter"),
    ("networking.istio.io", "WorkloadGroup"),
    ("networking.istio.io", "ProxyConfig"),
    ("extensions.istio.io", "WasmPlugin"),
    ("telemetry.istio.io", "Telemetry"),
];

/// Whether `group`/`kind` is an Istio kind that changes traffic but sluice does not enforce.
pub fn is_unenforced_istio_kind(group: &str, kind: &str) -> bool {
    UNENFORCED.iter().any(|&(g, k)| g == group && k == kind)
}

/// The diagnostic for a skipped object: a warning for Istio kinds sluice does not enforce, an
/// info note for everything else.
pub fn skipped_kind(api_version: &str, kind: &str, name: &str) -> Diagnostic {
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    if is_unenforced_istio_kind(group, kind) {
        return Diagnostic::warning(
            codes::NOT_ENFORCED,
            format!("{kind} `{name}` is not enforced: sluice does not implement {group} {kind} yet and ignores this object (traffic flows as if it did not exist)"),
        );
    }
    Diagnostic::info(
        codes::SKIPPED_KIND,
        format!("skipped {api_version} {kind} `{name}`: sluice reads only networking.istio.io VirtualService, DestinationRule, Gateway, ServiceEntry, WorkloadEntry and Sidecar, security.istio.io AuthorizationPolicy, PeerAuthentication and RequestAuthentication, and rollouts.sluice.dev Canary"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Severity;

    #[test]
    fn istio_policy_kinds_warn_and_kubernetes_kinds_stay_info() {
        let deny = skipped_kind("networking.istio.io/v1alpha3", "EnvoyFilter", "lua");
        assert_eq!(deny.severity, Severity::Warning);
        assert_eq!(deny.code, codes::NOT_ENFORCED);
        assert!(deny.message.contains("EnvoyFilter"));
        assert!(deny.message.contains("not enforced"));
        for (api, kind) in [
            ("apps/v1", "Deployment"),
            ("v1", "Service"),
            ("v1", "ConfigMap"),
            // The right kind in the wrong group is not Istio's.
            ("example.com/v1", "AuthorizationPolicy"),
        ] {
            let d = skipped_kind(api, kind, "x");
            assert_eq!(d.severity, Severity::Info, "{api} {kind}");
            assert_eq!(d.code, codes::SKIPPED_KIND);
        }
    }
}
