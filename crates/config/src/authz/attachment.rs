//! Which security policies attach to this proxy (Istio's rules for sidecars and classic
//! gateways).

use sluice_model::{ObjectMeta, WorkloadSelector};

use crate::labels::selector_matches;
use crate::proxy::ProxyConfig;

/// Whether an AuthorizationPolicy or RequestAuthentication applies to this proxy: it lives in
/// the proxy's namespace or the root namespace (whose selectors match in every namespace), its
/// selector (if any) matches the proxy's labels, and it is not attached by `targetRef(s)`,
/// which sidecars and classic gateways ignore.
pub fn policy_applies(
    meta: &ObjectMeta,
    selector: Option<&WorkloadSelector>,
    targeted: bool,
    proxy: &ProxyConfig,
) -> bool {
    if targeted {
        return false;
    }
    let ns = meta.namespace.as_str();
    if ns != proxy.namespace && ns != proxy.root_namespace {
        return false;
    }
    selector.is_none_or(|s| selector_matches(&s.match_labels, &proxy.labels))
}

/// A selector that names no label selects the whole namespace.
pub fn is_namespace_wide(selector: Option<&WorkloadSelector>) -> bool {
    selector.is_none_or(|s| s.match_labels.is_empty())
}
