//! One AuthorizationPolicy compiled for evaluation.

use std::sync::Arc;

use sluice_model::{is_dry_run, AuthorizationPolicy, ObjectMeta};

use super::identity::TrustBundle;
use super::rule::CompiledRule;

/// What a policy does when one of its rules matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Action {
    /// Allow (and deny what no ALLOW policy matches).
    Allow,
    /// Deny.
    Deny,
    /// Mark for audit logging; never changes the outcome.
    Audit,
    /// Ask an external authorizer; sluice has none, so matching requests are denied.
    Custom,
}

impl Action {
    /// Reads `spec.action` (absent is ALLOW); `None` for a value Istio refuses.
    pub fn parse(v: Option<&str>) -> Option<Action> {
        Some(match v {
            None | Some("ALLOW") => Action::Allow,
            Some("DENY") => Action::Deny,
            Some("AUDIT") => Action::Audit,
            Some("CUSTOM") => Action::Custom,
            Some(_) => return None,
        })
    }
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// Namespace of the policy.
    pub namespace: String,
    /// Name of the policy.
    pub name: String,
    /// Action.
    pub action: Action,
    /// `istio.io/dry-run: "true"` (ALLOW and DENY only): evaluated into shadow results.
    pub dry_run: bool,
    /// Rules with the id Envoy reports for each (`ns[..]-policy[..]-rule[i]`).
    pub(crate) rules: Vec<(Arc<str>, CompiledRule)>,
}

impl CompiledPolicy {
    /// Compiles a policy; a null rule (refused by validation) is skipped.
    pub fn compile(
        meta: &ObjectMeta,
        ap: &AuthorizationPolicy,
        bundle: &TrustBundle<'_>,
    ) -> Option<CompiledPolicy> {
        let action = Action::parse(ap.action.as_deref())?;
        let ns = &meta.namespace;
        let rules = ap
            .rules
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, r)| {
                let r = r.as_ref()?;
                let mut id = format!("ns[{ns}]-policy[{}]-rule[{i}]", meta.name);
                if action == Action::Custom {
                    id.push_str("-deny-due-to-bad-CUSTOM-action");
                }
                Some((Arc::from(id), CompiledRule::compile(r, ns, bundle)))
            })
            .collect();
        Some(CompiledPolicy {
            namespace: ns.clone(),
            name: meta.name.clone(),
            action,
            dry_run: matches!(action, Action::Allow | Action::Deny) && is_dry_run(meta),
            rules,
        })
    }

    /// The id of the first matching rule.
    pub(crate) fn first_match(
        &self,
        a: &super::attributes::RequestAttributes<'_>,
    ) -> Option<&Arc<str>> {
        let allow = self.action == Action::Allow;
        self.rules
            .iter()
            .find(|(_, r)| r.matches(a, allow))
            .map(|(id, _)| id)
    }
}
