//! AuthorizationPolicy: the webhook's and CRD schema's rules (spec §5).

use sluice_model::location::{push_index, push_key};
use sluice_model::{AuthorizationPolicy, Condition, Operation, Rule, Source};

use super::common::{check_enum, check_ip_or_cidr, Choice};
use super::policy_target::check_attachment;
use super::Ctx;
use crate::authz::condition_key::ConditionKey;

/// Istio allows at most this many rules.
const MAX_RULES: usize = 512;

/// Validates an AuthorizationPolicy.
pub(crate) fn validate(ctx: &mut Ctx<'_>, ap: &AuthorizationPolicy) {
    check_attachment(
        ctx,
        ap.selector.as_ref(),
        ap.target_ref.as_ref(),
        &ap.target_refs,
    );
    let action = check_enum(
        ctx,
        "spec.action",
        "action",
        ap.action.as_deref(),
        &["ALLOW", "DENY", "AUDIT", "CUSTOM"],
    );
    let action = match action {
        Choice::Unset => "ALLOW",
        Choice::Valid(a) => a,
        Choice::Invalid => "",
    };
    let custom = action == "CUSTOM";
    match (&ap.provider, custom) {
        (Some(p), true) if p.name.is_empty() => ctx.error(
            "spec.provider.name",
            "a CUSTOM policy needs a provider name",
        ),
        (None, true) => ctx.error("spec.provider", "a CUSTOM policy needs a `provider`"),
        (Some(_), false) => ctx.error(
            "spec.provider",
            "`provider` is only allowed with action CUSTOM",
        ),
        _ => {}
    }
    let rules = ap.rules.as_deref().unwrap_or_default();
    if rules.is_empty() && matches!(action, "DENY" | "CUSTOM") {
        ctx.error(
            "spec.rules",
            format!("a {action} policy needs `rules` (use `rules: [{{}}]` to match every request)"),
        );
    }
    if rules.len() > MAX_RULES {
        ctx.error(
            "spec.rules",
            format!(
                "{} rules given; at most {MAX_RULES} are allowed",
                rules.len()
            ),
        );
    }
    for (i, rule) in rules.iter().enumerate() {
        let field = push_index("spec.rules", i);
        match rule {
            None => ctx.error(&field, "a rule must not be null"),
            Some(r) => check_rule(ctx, &field, r, custom),
        }
    }
}

fn check_rule(ctx: &mut Ctx<'_>, field: &str, r: &Rule, custom: bool) {
    if let Some(from) = &r.from {
        let f = push_key(field, "from");
        if from.is_empty() {
            ctx.error(&f, "`from` must not be empty: omit it to match any source");
        }
        for (i, x) in from.iter().enumerate() {
            let path = push_key(&push_index(&f, i), "source");
            match &x.source {
                Some(s) if !is_empty_source(s) => check_source(ctx, &path, s, custom),
                _ => ctx.error(&path, "`source` must set at least one field"),
            }
        }
    }
    if let Some(to) = &r.to {
        let f = push_key(field, "to");
        if to.is_empty() {
            ctx.error(&f, "`to` must not be empty: omit it to match any operation");
        }
        for (i, x) in to.iter().enumerate() {
            let path = push_key(&push_index(&f, i), "operation");
            match &x.operation {
                Some(o) if !is_empty_operation(o) => check_operation(ctx, &path, o),
                _ => ctx.error(&path, "`operation` must set at least one field"),
            }
        }
    }
    for (i, c) in r.when.iter().flatten().enumerate() {
        check_condition(ctx, &push_index(&push_key(field, "when"), i), c, custom);
    }
}

type Field<'a> = (&'static str, &'a Option<Vec<String>>);

fn source_fields(s: &Source) -> [Field<'_>; 14] {
    [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
        ("trustDomains", &s.trust_domains),
        ("notTrustDomains", &s.not_trust_domains),
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ]
}

fn operation_fields(o: &Operation) -> [Field<'_>; 8] {
    [
        ("hosts", &o.hosts),
        ("notHosts", &o.not_hosts),
        ("ports", &o.ports),
        ("notPorts", &o.not_ports),
        ("methods", &o.methods),
        ("notMethods", &o.not_methods),
        ("paths", &o.paths),
        ("notPaths", &o.not_paths),
    ]
}

fn is_empty_source(s: &Source) -> bool {
    source_fields(s).iter().all(|(_, v)| v.is_none())
}

fn is_empty_operation(o: &Operation) -> bool {
    operation_fields(o).iter().all(|(_, v)| v.is_none())
}

fn check_source(ctx: &mut Ctx<'_>, field: &str, s: &Source, custom: bool) {
    for (name, values) in source_fields(s) {
        let Some(values) = values else { continue };
        let f = push_key(field, name);
        let ip_field = name.to_ascii_lowercase().ends_with("ipblocks");
        if custom && !ip_field {
            ctx.error(
                &f,
                format!("`{name}` is not allowed in a CUSTOM policy: it runs before peer and JWT authentication"),
            );
        }
        for (i, v) in values.iter().enumerate() {
            let path = push_index(&f, i);
            if v.is_empty() {
                ctx.error(&path, "empty value is not allowed");
                continue;
            }
            let problem = match name {
                "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks" => {
                    check_ip_or_cidr(v).err()
                }
                "serviceAccounts" | "notServiceAccounts" => service_account_problem(v),
                "trustDomains" | "notTrustDomains" => trust_domain_problem(v),
                _ => None,
            };
            if let Some(p) = problem {
                ctx.error(&path, p);
            }
        }
        if name.ends_with("erviceAccounts") && values.len() > 16 {
            ctx.error(&f, "at most 16 service accounts are allowed");
        }
    }
    let has = |v: &Option<Vec<String>>| v.is_some();
    if (has(&s.service_accounts) || has(&s.not_service_accounts))
        && (has(&s.principals)
            || has(&s.not_principals)
            || has(&s.namespaces)
            || has(&s.not_namespaces))
    {
        ctx.error(
            field,
            "`serviceAccounts` cannot be combined with `principals` or `namespaces` in one source",
        );
    }
}

fn service_account_problem(v: &str) -> Option<String> {
    if v.len() > 320 {
        return Some(format!(
            "service account `{v}` is longer than 320 characters"
        ));
    }
    if v.contains('*') {
        return Some(format!("service account `{v}` must not contain `*`"));
    }
    let parts: Vec<&str> = v.split('/').collect();
    if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
        return Some(format!(
            "service account `{v}` must be `<namespace>/<name>` or `<name>`"
        ));
    }
    None
}

fn trust_domain_problem(v: &str) -> Option<String> {
    if v.contains('/') {
        return Some(format!("trust domain `{v}` must not contain `/`"));
    }
    let stars = v.matches('*').count();
    if stars > 1 || (stars == 1 && !v.starts_with('*') && !v.ends_with('*')) {
        return Some(format!(
            "trust domain `{v}` may hold one `*`, at its start or end"
        ));
    }
    None
}

fn check_operation(ctx: &mut Ctx<'_>, field: &str, o: &Operation) {
    for (name, values) in operation_fields(o) {
        let Some(values) = values else { continue };
        let f = push_key(field, name);
        for (i, v) in values.iter().enumerate() {
            let path = push_index(&f, i);
            if v.is_empty() {
                ctx.error(&path, "empty value is not allowed");
                continue;
            }
            let problem = match name {
                "ports" | "notPorts" => port_problem(v),
                "paths" | "notPaths" => path_template_problem(v),
                _ => None,
            };
            if let Some(p) = problem {
                ctx.error(&path, p);
            }
        }
    }
}

fn port_problem(v: &str) -> Option<String> {
    match v.parse::<u32>() {
        Ok(p) if p <= 65535 && v.bytes().all(|b| b.is_ascii_digit()) => None,
        _ => Some(format!(
            "port `{v}` must be a decimal number up to 65535 (no wildcards or ranges)"
        )),
    }
}

/// Envoy URI templates: `{*}` and `{**}` fill whole segments, `{**}` only last, literals are
/// RFC 3986 path characters.
fn path_template_problem(v: &str) -> Option<String> {
    if !v.contains('{') && !v.contains('}') {
        return None;
    }
    let segments: Vec<&str> = v.split('/').collect();
    let last_op = segments
        .iter()
        .rposition(|s| s.contains('{') || s.contains('}'));
    for (i, s) in segments.iter().enumerate() {
        match *s {
            "{*}" => {}
            "{**}" if Some(i) == last_op => {}
            "{**}" => {
                return Some(format!(
                    "path template `{v}`: `{{**}}` must be the last operator"
                ))
            }
            lit if lit.contains(['{', '}', '*']) => {
                return Some(format!(
                    "path template `{v}`: a templated segment must be exactly `{{*}}` or `{{**}}`, and `*` is not allowed elsewhere"
                ))
            }
            lit if !lit.bytes().all(is_pchar) => {
                return Some(format!(
                    "path template `{v}`: `{lit}` holds characters outside RFC 3986 path characters"
                ))
            }
            _ => {}
        }
    }
    None
}

fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;=:@".contains(&b)
}

fn check_condition(ctx: &mut Ctx<'_>, field: &str, c: &Condition, custom: bool) {
    let key_field = push_key(field, "key");
    if c.key.is_empty() {
        ctx.error(&key_field, "condition `key` is required");
        return;
    }
    let key = match ConditionKey::parse(&c.key) {
        Ok(k) => k,
        Err(e) => {
            ctx.error(&key_field, e);
            return;
        }
    };
    if custom
        && matches!(
            key,
            ConditionKey::RequestAuthPrincipal
                | ConditionKey::RequestAuthAudiences
                | ConditionKey::RequestAuthPresenter
                | ConditionKey::RequestAuthClaims(_)
                | ConditionKey::SourcePrincipal
                | ConditionKey::SourceNamespace
                | ConditionKey::SourceServiceAccount
                | ConditionKey::SourceTrustDomain
        )
    {
        ctx.error(
            &key_field,
            format!("`{}` is not allowed in a CUSTOM policy: it runs before peer and JWT authentication", c.key),
        );
    }
    let values = c.values.as_deref().unwrap_or_default();
    let not_values = c.not_values.as_deref().unwrap_or_default();
    if values.is_empty() && not_values.is_empty() {
        ctx.error(field, "a condition needs `values` or `notValues`");
    }
    for (name, list) in [("values", values), ("notValues", not_values)] {
        for (i, v) in list.iter().enumerate() {
            let path = push_index(&push_key(field, name), i);
            let problem = if v.is_empty() {
                Some("empty value is not allowed".to_string())
            } else if key.is_ip() {
                check_ip_or_cidr(v).err()
            } else if key == ConditionKey::DestinationPort {
                port_problem(v)
            } else if key == ConditionKey::SourceServiceAccount {
                service_account_problem(v)
            } else if key == ConditionKey::SourceTrustDomain {
                trust_domain_problem(v)
            } else {
                None
            };
            if let Some(p) = problem {
                ctx.error(&path, p);
            }
        }
    }
}
