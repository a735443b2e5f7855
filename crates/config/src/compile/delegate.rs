//! Delegation: a root rule with `delegate` is replaced by the rules of a host-less VirtualService,
//! each merged with the root rule the way Istio's `mergeHTTPRoutes` does (one level only).

use sluice_model::{
    codes, Diagnostic, HttpMatchRequest, HttpRoute, Resource, Severity, SmallMap, Spec, StringMatch,
};

use super::http_route::gateway_key;
use super::Compiler;
use crate::host::fqdn;

/// A delegate rule merged with its root rule.
#[derive(Debug)]
pub(crate) struct Delegated<'a> {
    /// The delegate VirtualService (the route's source).
    pub(crate) resource: &'a Resource,
    /// Index of the rule in the delegate's `spec.http`.
    pub(crate) index: usize,
    /// The merged rule; every host and gateway name in it is already fully qualified.
    pub(crate) rule: HttpRoute,
}

impl<'a> Compiler<'a> {
    /// The rules that replace root rule `i` (which has `delegate`); empty when the delegate is
    /// missing or every delegate rule conflicts with the root's matches.
    pub(crate) fn delegated_rules(
        &mut self,
        root: &Resource,
        i: usize,
        rule: &HttpRoute,
    ) -> Vec<Delegated<'a>> {
        let Some(d) = &rule.delegate else {
            return Vec::new();
        };
        self.delegated.set(true);
        let root_ns = root.metadata.namespace.as_str();
        let ns = d
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(root_ns);
        // Only host-less VirtualServices are delegates (Istio indexes nothing else for lookup).
        let found = self.ordered.iter().copied().find_map(|r| match &r.spec {
            Spec::VirtualService(vs)
                if r.metadata.namespace == ns
                    && r.metadata.name == d.name
                    && vs.hosts.is_empty() =>
            {
                Some((r, vs))
            }
            _ => None,
        });
        let Some((delegate, dvs)) = found else {
            self.push_once(root.diag(
                Severity::Warning,
                codes::REFERENCED_RESOURCE_NOT_FOUND,
                format!("spec.http[{i}].delegate"),
                format!(
                    "delegate VirtualService {ns}/{} does not exist (or has hosts, so it is not a delegate): this rule is dropped",
                    d.name
                ),
            ));
            return Vec::new();
        };
        // Istio resolves short names per VirtualService before merging: root fields in the root's
        // namespace, delegate fields in the delegate's.
        let root_rule = qualified(rule, root_ns);
        let mut out = Vec::new();
        for (k, sub) in dvs.http.iter().enumerate() {
            match merge_rule(&root_rule, &qualified(sub, ns)) {
                Some(merged) => out.push(Delegated {
                    resource: delegate,
                    index: k,
                    rule: merged,
                }),
                None => self.push_once(delegate.diag(
                    Severity::Warning,
                    codes::VS_INEFFECTIVE_MATCH,
                    format!("spec.http[{k}].match"),
                    format!(
                        "this delegated rule is dropped for VirtualService {}/{} spec.http[{i}]: each match entry must be a subset of one of the root rule's entries (same ports and ignoreUriCase, a longer prefix or an equal exact, no regex on both sides)",
                        root_ns, root.metadata.name
                    ),
                )),
            }
        }
        out
    }

    /// Records a diagnostic once: rules are compiled once per listener that uses them.
    fn push_once(&mut self, d: Diagnostic) {
        if !self.diagnostics.contains(&d) {
            self.diagnostics.push(d);
        }
    }
}

/// A copy of a rule with destination and mirror hosts and match gateway names fully qualified in
/// `ns`, so the merged rule can mix fields of the root's and the delegate's namespaces.
fn qualified(rule: &HttpRoute, ns: &str) -> HttpRoute {
    let mut r = rule.clone();
    if let Some(m) = r.mirror.as_mut() {
        m.host = fqdn(&m.host, ns);
    }
    for m in r.mirrors.iter_mut().filter_map(|m| m.destination.as_mut()) {
        m.host = fqdn(&m.host, ns);
    }
    for d in r.route.iter_mut().filter_map(|d| d.destination.as_mut()) {
        d.host = fqdn(&d.host, ns);
    }
    for m in &mut r.matches {
        m.gateways = m.gateways.iter().map(|g| gateway_key(g, ns)).collect();
    }
    r
}

/// Istio's `mergeHTTPRoute`: matches combined (`None` on conflict), unset fields inherited.
pub(crate) fn merge_rule(root: &HttpRoute, sub: &HttpRoute) -> Option<HttpRoute> {
    let mut m = sub.clone();
    m.matches = merge_matches(&root.matches, &sub.matches)?;
    m.name = join_names(root.name.as_deref(), sub.name.as_deref());
    m.delegate = None;
    if m.rewrite.is_none() {
        m.rewrite.clone_from(&root.rewrite);
    }
    // Istio lets a redirect win over a direct response, so an inherited one must not shadow it.
    if m.direct_response.is_none() && m.redirect.is_none() {
        m.direct_response.clone_from(&root.direct_response);
    }
    if m.timeout.is_none() {
        m.timeout.clone_from(&root.timeout);
    }
    if m.retries.is_none() {
        m.retries.clone_from(&root.retries);
    }
    if m.fault.is_none() {
        m.fault.clone_from(&root.fault);
    }
    if m.mirror.is_none() {
        m.mirror.clone_from(&root.mirror);
    }
    if m.mirror_percent.is_none() {
        m.mirror_percent = root.mirror_percent;
    }
    if m.mirror_percentage.is_none() {
        m.mirror_percentage = root.mirror_percentage;
    }
    if m.mirrors.is_empty() {
        m.mirrors.clone_from(&root.mirrors);
    }
    if m.cors_policy.is_none() {
        m.cors_policy.clone_from(&root.cors_policy);
    }
    if m.headers.is_none() {
        m.headers.clone_from(&root.headers);
    }
    Some(m)
}

/// `root-delegate` when both are named, else whichever is.
fn join_names(root: Option<&str>, sub: Option<&str>) -> Option<String> {
    match (
        root.filter(|s| !s.is_empty()),
        sub.filter(|s| !s.is_empty()),
    ) {
        (Some(r), Some(s)) => Some(format!("{r}-{s}")),
        (r, s) => s.or(r).map(str::to_string),
    }
}

/// Istio's `mergeHTTPMatchRequests`: each delegate entry is combined with every root entry it does
/// not conflict with; one entry without any such root entry drops the whole delegate rule.
fn merge_matches(
    root: &[HttpMatchRequest],
    sub: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(sub.to_vec());
    }
    if sub.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for s in sub {
        let before = out.len();
        out.extend(
            root.iter()
                .filter(|r| !has_conflict(r, s))
                .map(|r| merge_match(r, s)),
        );
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

/// Root values for what the delegate entry leaves unset; maps unioned (the delegate's value wins).
fn merge_match(root: &HttpMatchRequest, sub: &HttpMatchRequest) -> HttpMatchRequest {
    let union = |r: &SmallMap<String, StringMatch>, s: &SmallMap<String, StringMatch>| {
        let mut m = r.clone();
        m.extend(s.iter().map(|(k, v)| (k.clone(), v.clone())));
        m
    };
    let mut labels = root.source_labels.clone();
    labels.extend(
        sub.source_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    HttpMatchRequest {
        name: join_names(root.name.as_deref(), sub.name.as_deref()),
        uri: sub.uri.clone().or_else(|| root.uri.clone()),
        scheme: sub.scheme.clone().or_else(|| root.scheme.clone()),
        method: sub.method.clone().or_else(|| root.method.clone()),
        authority: sub.authority.clone().or_else(|| root.authority.clone()),
        headers: union(&root.headers, &sub.headers),
        port: sub.port.filter(|p| *p != 0).or(root.port),
        source_labels: labels,
        gateways: if sub.gateways.is_empty() {
            root.gateways.clone()
        } else {
            sub.gateways.clone()
        },
        query_params: union(&root.query_params, &sub.query_params),
        ignore_uri_case: sub.ignore_uri_case,
        without_headers: union(&root.without_headers, &sub.without_headers),
        source_namespace: sub
            .source_namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| root.source_namespace.clone()),
        stat_prefix: sub
            .stat_prefix
            .clone()
            .filter(|p| !p.is_empty())
            .or_else(|| root.stat_prefix.clone()),
    }
}

/// Istio's `hasConflict`: whether the delegate entry is not a subset of the root entry.
fn has_conflict(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let fields = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if fields
        .iter()
        .any(|(r, l)| string_match_conflict(r.as_deref(), l.as_deref()))
    {
        return true;
    }
    let keyed = |r: &SmallMap<String, StringMatch>, l: &SmallMap<String, StringMatch>| {
        l.iter()
            .any(|(k, v)| string_match_conflict(r.get(k), Some(v)))
    };
    if keyed(&root.headers, &leaf.headers)
        || keyed(&root.without_headers, &leaf.without_headers)
        || keyed(&root.query_params, &leaf.query_params)
    {
        return true;
    }
    if root.ignore_uri_case != leaf.ignore_uri_case {
        return true;
    }
    if let (Some(r), Some(l)) = (root.port.filter(|p| *p > 0), leaf.port.filter(|p| *p > 0)) {
        if r != l {
            return true;
        }
    }
    if let Some(rns) = root.source_namespace.as_deref().filter(|n| !n.is_empty()) {
        if leaf.source_namespace.as_deref() != Some(rns) {
            return true;
        }
    }
    if leaf
        .source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|rv| rv != v))
    {
        return true;
    }
    // The root must list every gateway the delegate entry names.
    if !root.gateways.is_empty()
        && !leaf.gateways.is_empty()
        && leaf.gateways.iter().any(|g| !root.gateways.contains(g))
    {
        return true;
    }
    false
}

/// Istio's `stringMatchConflict`: regexes never combine; an exact root needs the same exact; a
/// prefix root needs a longer prefix or an exact under it; anything else conflicts.
fn string_match_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    let set = |o: &Option<String>| o.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
    let any = |m: &StringMatch| set(&m.regex).or(set(&m.prefix)).or(set(&m.exact)).is_some();
    if set(&root.regex).is_some() && any(leaf) {
        return true;
    }
    if set(&leaf.regex).is_some() && any(root) {
        return true;
    }
    if let Some(exact) = set(&root.exact) {
        return set(&leaf.prefix).is_some() || set(&leaf.exact) != Some(exact);
    }
    if let Some(prefix) = set(&root.prefix) {
        if let Some(p) = set(&leaf.prefix) {
            return !p.starts_with(&prefix);
        }
        if let Some(e) = set(&leaf.exact) {
            return !e.starts_with(&prefix);
        }
    }
    true
}
