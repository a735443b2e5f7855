//! Where a security policy attaches: `selector`, `targetRef` or `targetRefs` (at most one).

use sluice_model::location::{push_index, push_key};
use sluice_model::{PolicyTargetReference, WorkloadSelector};

use super::common::check_selector_labels;
use super::Ctx;

/// Istio allows at most this many `targetRefs`.
const MAX_TARGET_REFS: usize = 16;

/// Checks the attachment fields shared by AuthorizationPolicy and RequestAuthentication.
pub(crate) fn check_attachment(
    ctx: &mut Ctx<'_>,
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) {
    let set = [
        selector.is_some(),
        target_ref.is_some(),
        !target_refs.is_empty(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        ctx.error(
            "spec",
            "only one of `selector`, `targetRef` and `targetRefs` may be set",
        );
    }
    check_selector(ctx, "spec.selector", selector);
    if let Some(t) = target_ref {
        check_target_ref(ctx, "spec.targetRef", t);
    }
    if target_refs.len() > MAX_TARGET_REFS {
        ctx.error(
            "spec.targetRefs",
            format!(
                "{} targetRefs given; at most {MAX_TARGET_REFS} are allowed",
                target_refs.len()
            ),
        );
    }
    for (i, t) in target_refs.iter().enumerate() {
        check_target_ref(ctx, &push_index("spec.targetRefs", i), t);
    }
}

/// Checks a workload selector; one without labels selects every workload (a warning).
pub(crate) fn check_selector(ctx: &mut Ctx<'_>, field: &str, selector: Option<&WorkloadSelector>) {
    let Some(sel) = selector else { return };
    if sel.match_labels.is_empty() {
        ctx.warn(
            field,
            "selector has no matchLabels, so the policy applies to every workload in the namespace",
        );
    }
    check_selector_labels(ctx, &push_key(field, "matchLabels"), &sel.match_labels);
}

fn check_target_ref(ctx: &mut Ctx<'_>, field: &str, t: &PolicyTargetReference) {
    if t.name.is_empty() {
        ctx.error(push_key(field, "name"), "targetRef `name` is required");
    } else if t.name.len() > 253 {
        ctx.error(
            push_key(field, "name"),
            "targetRef `name` is longer than 253 characters",
        );
    }
    if t.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
        ctx.error(
            push_key(field, "namespace"),
            "targetRef `namespace` must be empty: a policy targets objects of its own namespace",
        );
    }
    let allowed = matches!(
        (t.group.as_str(), t.kind.as_str()),
        ("" | "core", "Service")
            | ("networking.istio.io", "ServiceEntry")
            | ("gateway.networking.k8s.io", "Gateway" | "GatewayClass")
    );
    if t.kind.is_empty() {
        ctx.error(push_key(field, "kind"), "targetRef `kind` is required");
    } else if !allowed {
        ctx.error(
            push_key(field, "kind"),
            format!(
                "targetRef to group `{}` kind `{}` is not supported: use a core Service, a networking.istio.io ServiceEntry or a gateway.networking.k8s.io Gateway or GatewayClass",
                t.group, t.kind
            ),
        );
    }
}
