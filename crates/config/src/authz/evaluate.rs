//! The authorization decision: CUSTOM, then DENY, then ALLOW, as Envoy's filter chain orders
//! them; AUDIT never changes the outcome and dry-run policies only feed shadow results.

use std::sync::Arc;

use super::attributes::RequestAttributes;
use super::policy::{Action, CompiledPolicy};

/// The policies that apply to this proxy, split by action.
#[derive(Debug, Clone, Default)]
pub struct AuthzPolicies {
    custom: Vec<CompiledPolicy>,
    deny: Vec<CompiledPolicy>,
    allow: Vec<CompiledPolicy>,
    audit: Vec<CompiledPolicy>,
    dry_run_deny: Vec<CompiledPolicy>,
    dry_run_allow: Vec<CompiledPolicy>,
}

impl AuthzPolicies {
    /// Groups compiled policies (in precedence order) by action.
    pub fn new(policies: impl IntoIterator<Item = CompiledPolicy>) -> Self {
        let mut out = AuthzPolicies::default();
        for p in policies {
            let list = match (p.action, p.dry_run) {
                (Action::Custom, _) => &mut out.custom,
                (Action::Deny, false) => &mut out.deny,
                (Action::Deny, true) => &mut out.dry_run_deny,
                (Action::Allow, false) => &mut out.allow,
                (Action::Allow, true) => &mut out.dry_run_allow,
                (Action::Audit, _) => &mut out.audit,
            };
            list.push(p);
        }
        out
    }

    /// No policy applies: the proxy can skip the authorization stage.
    pub fn is_empty(&self) -> bool {
        self.custom.is_empty()
            && self.deny.is_empty()
            && self.allow.is_empty()
            && self.audit.is_empty()
            && self.dry_run_deny.is_empty()
            && self.dry_run_allow.is_empty()
    }

    /// Every policy, enforced ones first.
    pub fn iter(&self) -> impl Iterator<Item = &CompiledPolicy> {
        self.custom
            .iter()
            .chain(&self.deny)
            .chain(&self.allow)
            .chain(&self.audit)
            .chain(&self.dry_run_deny)
            .chain(&self.dry_run_allow)
    }
}

/// The outcome of one shadow (dry-run) engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowResult {
    /// What the dry-run policies would have decided.
    pub allowed: bool,
    /// The rule that decided (`ns[..]-policy[..]-rule[..]`), if one matched.
    pub effective_policy_id: Option<Arc<str>>,
}

/// The decision for one request or connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request goes on.
    pub allowed: bool,
    /// The rule that decided a denial (`None` with `allowed`, and for "no ALLOW matched").
    pub matched_policy: Option<Arc<str>>,
    /// The AUDIT rule that matched, for access logging.
    pub audit_policy: Option<Arc<str>>,
    /// Dry-run DENY policies (`istio_dry_run_deny_` engine), when there are any.
    pub shadow_deny: Option<ShadowResult>,
    /// Dry-run ALLOW policies (`istio_dry_run_allow_` engine), when there are any.
    pub shadow_allow: Option<ShadowResult>,
}

impl Decision {
    /// The decision when no policy applies.
    pub const ALLOW: Decision = Decision {
        allowed: true,
        matched_policy: None,
        audit_policy: None,
        shadow_deny: None,
        shadow_allow: None,
    };

    /// Envoy's `%RESPONSE_CODE_DETAILS%` (HTTP) or `%CONNECTION_TERMINATION_DETAILS%` (TCP) of
    /// a denial: `rbac_access_denied_matched_policy[<rule id>]`, or `[none]` when no ALLOW rule
    /// matched. `None` when allowed.
    pub fn details(&self) -> Option<String> {
        if self.allowed {
            return None;
        }
        let id = self.matched_policy.as_deref().unwrap_or("none");
        Some(format!("rbac_access_denied_matched_policy[{id}]"))
    }
}

fn first_match<'p>(
    policies: &'p [CompiledPolicy],
    a: &RequestAttributes<'_>,
) -> Option<&'p Arc<str>> {
    policies.iter().find_map(|p| p.first_match(a))
}

/// Decides a request (or, without HTTP attributes, a TCP connection).
pub fn evaluate(policies: &AuthzPolicies, attrs: &RequestAttributes<'_>) -> Decision {
    if policies.is_empty() {
        return Decision::ALLOW;
    }
    let shadow_deny = (!policies.dry_run_deny.is_empty()).then(|| {
        let hit = first_match(&policies.dry_run_deny, attrs);
        ShadowResult {
            allowed: hit.is_none(),
            effective_policy_id: hit.cloned(),
        }
    });
    let shadow_allow = (!policies.dry_run_allow.is_empty()).then(|| {
        let hit = first_match(&policies.dry_run_allow, attrs);
        ShadowResult {
            allowed: hit.is_some(),
            effective_policy_id: hit.cloned(),
        }
    });
    let audit_policy = first_match(&policies.audit, attrs).cloned();
    let verdict = |allowed: bool, matched_policy: Option<&Arc<str>>| Decision {
        allowed,
        matched_policy: matched_policy.cloned(),
        audit_policy: audit_policy.clone(),
        shadow_deny: shadow_deny.clone(),
        shadow_allow: shadow_allow.clone(),
    };
    // CUSTOM rules would be sent to the provider; without one, Istio turns them into DENY.
    if let Some(id) = first_match(&policies.custom, attrs) {
        return verdict(false, Some(id));
    }
    if let Some(id) = first_match(&policies.deny, attrs) {
        return verdict(false, Some(id));
    }
    if policies.allow.is_empty() {
        return verdict(true, None);
    }
    match first_match(&policies.allow, attrs) {
        Some(_) => verdict(true, None),
        None => verdict(false, None),
    }
}
