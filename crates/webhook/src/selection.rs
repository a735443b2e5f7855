//! Which pods get a sidecar: Istio's selection rules, as its two injection webhook
//! configurations and its injector apply them together.
//!
//! - A namespace labelled `istio-injection=enabled` (or `sluice-injection=enabled`): every pod,
//!   unless the pod says `sidecar.istio.io/inject: "false"` (label, else annotation).
//! - A namespace without the label: only pods labelled `sidecar.istio.io/inject: "true"`.
//! - A namespace labelled otherwise (`istio-injection=disabled`), or with Istio's revision label
//!   `istio.io/rev` and no injection label: none.
//! - Never host-network pods, never pods already injected, never `kube-system`, `kube-public`
//!   or the webhook's own namespace.

use std::collections::BTreeMap;

use serde_json::Value;
use sluice_kube::inject::{PROXY_CONTAINER, STATUS_ANNOTATION};

/// Istio's namespace label.
pub const ISTIO_INJECTION: &str = "istio-injection";
/// sluice's namespace label, for clusters where Istio's is taken.
pub const SLUICE_INJECTION: &str = "sluice-injection";
/// The pod label (or, with less weight, annotation) that overrides the namespace.
pub const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";
/// Istio's record of an injection: a pod carrying it already has Istio's sidecar.
const ISTIO_STATUS: &str = "sidecar.istio.io/status";
/// Istio's sidecar container.
const ISTIO_PROXY: &str = "istio-proxy";
/// Namespaces Istio never injects into.
const IGNORED_NAMESPACES: [&str; 2] = ["kube-system", "kube-public"];

/// The outcome for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Add the sidecar.
    Inject,
    /// Leave the pod alone, and why.
    Skip(String),
}

/// What a namespace's labels say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NamespacePolicy {
    Enabled,
    Disabled,
    Unlabelled,
}

/// Istio's revision label: such a namespace belongs to a revisioned control plane.
const ISTIO_REV: &str = "istio.io/rev";

/// Istio's label decides when present, then sluice's (the chart's webhook configurations select
/// the same way).
fn namespace_policy(labels: &BTreeMap<String, String>) -> NamespacePolicy {
    let label = labels
        .get(ISTIO_INJECTION)
        .or_else(|| labels.get(SLUICE_INJECTION));
    match label.map(String::as_str) {
        Some("enabled") => NamespacePolicy::Enabled,
        Some(_) => NamespacePolicy::Disabled,
        None if labels.contains_key(ISTIO_REV) => NamespacePolicy::Disabled,
        None => NamespacePolicy::Unlabelled,
    }
}

/// The pod's own say: `Some(true)` for y/yes/true/on, `Some(false)` for any other value, `None`
/// when unset (Istio reads the label first, then the annotation, case-insensitively).
fn pod_selector(pod: &Value) -> Option<bool> {
    let meta = &pod["metadata"];
    let value = meta["labels"][SIDECAR_INJECT]
        .as_str()
        .or_else(|| meta["annotations"][SIDECAR_INJECT].as_str())?;
    match value.to_ascii_lowercase().as_str() {
        "" => None,
        "y" | "yes" | "true" | "on" => Some(true),
        _ => Some(false),
    }
}

fn already_injected(pod: &Value) -> bool {
    let annotations = &pod["metadata"]["annotations"];
    if annotations.get(STATUS_ANNOTATION).is_some() || annotations.get(ISTIO_STATUS).is_some() {
        return true;
    }
    let named = |list: &Value| {
        list.as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                matches!(c["name"].as_str(), Some(n) if n == PROXY_CONTAINER || n == ISTIO_PROXY)
            })
        })
    };
    named(&pod["spec"]["containers"]) || named(&pod["spec"]["initContainers"])
}

/// Decides for a pod created in `namespace` (whose labels are `namespace_labels`), served by a
/// webhook running in `own_namespace`.
pub fn decide(
    pod: &Value,
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    own_namespace: Option<&str>,
) -> Decision {
    let skip = |why: &str| Decision::Skip(why.to_string());
    if IGNORED_NAMESPACES.contains(&namespace) {
        return skip("system namespace");
    }
    if own_namespace == Some(namespace) {
        return skip("the webhook's own namespace");
    }
    if pod["spec"]["hostNetwork"].as_bool() == Some(true) {
        return skip("host network");
    }
    if already_injected(pod) {
        return skip("already injected");
    }
    let selector = pod_selector(pod);
    let label_true = pod["metadata"]["labels"][SIDECAR_INJECT]
        .as_str()
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "y" | "yes" | "true" | "on"));
    match (namespace_policy(namespace_labels), selector) {
        (_, Some(false)) => skip("the pod opts out (sidecar.istio.io/inject)"),
        (NamespacePolicy::Enabled, _) => Decision::Inject,
        (NamespacePolicy::Disabled, _) => skip("injection is disabled in the namespace"),
        // Istio's second webhook matches unlabelled namespaces by the pod's label only.
        (NamespacePolicy::Unlabelled, _) if label_true => Decision::Inject,
        (NamespacePolicy::Unlabelled, _) => skip("the namespace is not labelled for injection"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(labels: Value, annotations: Value) -> Value {
        json!({"metadata": {"labels": labels, "annotations": annotations},
               "spec": {"containers": [{"name": "app"}]}})
    }

    #[test]
    fn namespace_and_pod_selectors() {
        let enabled = labels(&[(ISTIO_INJECTION, "enabled")]);
        let sluice = labels(&[(SLUICE_INJECTION, "enabled")]);
        let disabled = labels(&[(ISTIO_INJECTION, "disabled")]);
        let istio_wins = labels(&[(ISTIO_INJECTION, "disabled"), (SLUICE_INJECTION, "enabled")]);
        let revision = labels(&[(ISTIO_REV, "canary")]);
        let none = labels(&[]);
        let plain = pod(json!({}), json!({}));
        let off_label = pod(json!({SIDECAR_INJECT: "false"}), json!({}));
        let off_annotation = pod(json!({}), json!({SIDECAR_INJECT: "no"}));
        let on_label = pod(json!({SIDECAR_INJECT: "true"}), json!({}));
        let on_annotation = pod(json!({}), json!({SIDECAR_INJECT: "true"}));
        let label_beats_annotation = pod(
            json!({SIDECAR_INJECT: "true"}),
            json!({SIDECAR_INJECT: "false"}),
        );
        let table = [
            (&plain, &enabled, true),
            (&plain, &sluice, true),
            (&plain, &none, false),
            (&plain, &disabled, false),
            (&off_label, &enabled, false),
            (&off_annotation, &enabled, false),
            (&on_label, &none, true),
            (&on_label, &disabled, false),
            (&on_annotation, &none, false),
            (&label_beats_annotation, &enabled, true),
            (&plain, &istio_wins, false),
            (&on_label, &revision, false),
        ];
        for (i, (p, ns, want)) in table.into_iter().enumerate() {
            let got = decide(p, "apps", ns, Some("sluice-system")) == Decision::Inject;
            assert_eq!(got, want, "row {i}");
        }
    }

    #[test]
    fn never_system_own_host_network_or_twice() {
        let enabled = labels(&[(ISTIO_INJECTION, "enabled")]);
        let plain = pod(json!({}), json!({}));
        for ns in ["kube-system", "kube-public", "sluice-system"] {
            assert_ne!(
                decide(&plain, ns, &enabled, Some("sluice-system")),
                Decision::Inject
            );
        }
        let mut host = plain.clone();
        host["spec"]["hostNetwork"] = json!(true);
        assert_ne!(decide(&host, "a", &enabled, None), Decision::Inject);
        let istio = pod(json!({}), json!({ISTIO_STATUS: "{}"}));
        assert_ne!(decide(&istio, "a", &enabled, None), Decision::Inject);
        let mut ours = plain.clone();
        ours["spec"]["containers"] = json!([{"name": "app"}, {"name": PROXY_CONTAINER}]);
        assert_ne!(decide(&ours, "a", &enabled, None), Decision::Inject);
    }
}
