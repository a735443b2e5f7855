//! Cross-object analysis, in the spirit of `istioctl analyze`: references, conflicts, dead rules.

mod canary_refs;
mod jwt_routing;
pub(crate) mod memo;

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sluice_model::{
    codes, Destination, Diagnostic, HttpMatchRequest, Resource, ResourceRef, Severity, Spec,
    VirtualService,
};

use crate::compile::destination_rules::DestinationRuleIndex;
use crate::compile::http_route::{gateway_key, vs_binds, MESH};
use std::borrow::Borrow;

use crate::compile::precedence_order;
use crate::compile::reuse::address;
use crate::host::{fqdn, fqdn_cow, intersect_lowercase, overlaps};
use crate::labels::selector_matches;
use crate::registry::Registry;
use memo::AnalysisMemo;

/// Findings about how objects relate to each other. None of them blocks loading: Istio accepts
/// such config and fails at request time (e.g. 503 NC for a missing subset).
pub fn analyze<R: Borrow<Resource>>(resources: &[R]) -> Vec<Diagnostic> {
    analyze_with(resources, None, None).0
}

/// [`analyze`], taking unchanged ServiceEntries' services from the previous build's `memo` and
/// the findings that still hold from the `previous` analysis; returns the findings and what
/// the next build may take from them.
pub(crate) fn analyze_with<R: Borrow<Resource>>(
    resources: &[R],
    memo: Option<&crate::compile::Memo>,
    previous: Option<&AnalysisMemo>,
) -> (Vec<Diagnostic>, AnalysisMemo) {
    let ordered = precedence_order(resources);
    let context = memo::context_of(resources);
    let kept = previous.and_then(|p| p.usable_for(&context));
    let mut next = AnalysisMemo::new(context);
    let registry_cell = OnceCell::new();
    let registry = || {
        registry_cell.get_or_init(|| match kept.and_then(|k| k.registry.clone()) {
            Some(registry) => registry,
            None => Arc::new(match memo {
                Some(memo) => {
                    let objects: Vec<&Resource> = resources.iter().map(Borrow::borrow).collect();
                    Registry::build_reusing(
                        objects.iter().copied(),
                        memo.kept_services(&objects),
                        |_, _| {},
                    )
                }
                None => Registry::build(resources.iter().map(Borrow::borrow)),
            }),
        })
    };
    // Built when a check needs them: none does when every VirtualService keeps its findings.
    let drs = OnceCell::new();
    let drs = || drs.get_or_init(|| DestinationRuleIndex::new(&ordered));
    let exports = OnceCell::new();
    let exports = || exports.get_or_init(|| ServiceExports::new(&ordered));
    let gateways = OnceCell::new();
    let gateways = || {
        gateways.get_or_init(|| {
            ordered
                .iter()
                .filter(|r| matches!(r.spec, Spec::Gateway(_)))
                .map(|r| format!("{}/{}", r.metadata.namespace, r.metadata.name))
                .collect::<HashSet<String>>()
        })
    };
    let mut out = Vec::new();
    let names = ShortNames::new();
    next.per_vs.reserve(kept.map_or(0, |k| k.per_vs.len()));
    for r in &ordered {
        if let Spec::VirtualService(vs) = &r.spec {
            let own = match kept.and_then(|k| k.per_vs.get(&address(r))) {
                Some(found) => found.clone(),
                None => {
                    next.reanalyzed += 1;
                    let mut own = Vec::new();
                    check_destinations(r, vs, registry(), drs(), exports(), &names, &mut own);
                    check_gateway_refs(r, vs, gateways(), &mut own);
                    check_dead_rules(r, vs, &mut own);
                    own
                }
            };
            out.extend(own.iter().cloned());
            next.per_vs.insert(address(r), own);
        }
    }
    check_mesh_host_conflicts(&ordered, &mut out);
    check_gateway_bindings(&ordered, &mut out);
    next.subsets = match kept {
        Some(k) => k.subsets.clone(),
        None => {
            let mut found = Vec::new();
            check_subsets(registry(), drs(), &mut found);
            found
        }
    };
    out.extend(next.subsets.iter().cloned());
    jwt_routing::check_claim_routes(&ordered, &mut out);
    canary_refs::check_canaries(&ordered, drs, &mut out);
    // Kept only when its services are the compile's (taken from the compile's memo): a
    // registry of its own would hold a second copy of every service.
    if memo.is_some() {
        next.registry = registry_cell.get().cloned();
    }
    (out, next)
}

/// Where a destination sits in its VirtualService, spelled out only for a finding: the
/// analysis walks every destination of every VirtualService on each build.
#[derive(Clone, Copy)]
enum DestinationField {
    Http(usize, usize),
    Mirror(usize),
    Mirrors(usize, usize),
    Tcp(usize, usize),
    Tls(usize, usize),
}

impl std::fmt::Display for DestinationField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Http(i, j) => write!(f, "spec.http[{i}].route[{j}].destination"),
            Self::Mirror(i) => write!(f, "spec.http[{i}].mirror"),
            Self::Mirrors(i, j) => write!(f, "spec.http[{i}].mirrors[{j}].destination"),
            Self::Tcp(i, j) => write!(f, "spec.tcp[{i}].route[{j}].destination"),
            Self::Tls(i, j) => write!(f, "spec.tls[{i}].route[{j}].destination"),
        }
    }
}

fn destinations(vs: &VirtualService) -> Vec<(DestinationField, &Destination)> {
    let mut out = Vec::new();
    for (i, rule) in vs.http.iter().enumerate() {
        for (j, d) in rule.route.iter().enumerate() {
            if let Some(dest) = &d.destination {
                out.push((DestinationField::Http(i, j), dest));
            }
        }
        if let Some(m) = &rule.mirror {
            out.push((DestinationField::Mirror(i), m));
        }
        for (j, m) in rule.mirrors.iter().enumerate() {
            if let Some(dest) = &m.destination {
                out.push((DestinationField::Mirrors(i, j), dest));
            }
        }
    }
    for (i, rule) in vs.tcp.iter().enumerate() {
        for (j, d) in rule.route.iter().enumerate() {
            if let Some(dest) = &d.destination {
                out.push((DestinationField::Tcp(i, j), dest));
            }
        }
    }
    for (i, rule) in vs.tls.iter().enumerate() {
        for (j, d) in rule.route.iter().enumerate() {
            if let Some(dest) = &d.destination {
                out.push((DestinationField::Tls(i, j), dest));
            }
        }
    }
    out
}

/// The services by the first label of their host name (the first in name order for each),
/// made once for the hints of missing destination hosts: a scan of every service per missing
/// host would grow with the square of the config.
type ShortNames<'r> = std::cell::OnceCell<HashMap<&'r str, &'r str>>;

fn short_names<'r>(
    registry: &'r Registry,
    cell: &'r ShortNames<'r>,
) -> &'r HashMap<&'r str, &'r str> {
    cell.get_or_init(|| {
        let mut by_label = HashMap::new();
        for s in registry.services() {
            if let Some(label) = s.hostname.split('.').next() {
                by_label.entry(label).or_insert(s.hostname.as_str());
            }
        }
        by_label
    })
}

fn check_destinations<'r>(
    r: &Resource,
    vs: &VirtualService,
    registry: &'r Registry,
    drs: &DestinationRuleIndex<'_>,
    exports: &ServiceExports<'_>,
    names: &'r ShortNames<'r>,
    out: &mut Vec<Diagnostic>,
) {
    let ns = &r.metadata.namespace;
    for (field, dest) in destinations(vs) {
        let host = fqdn(&dest.host, ns);
        let Some(svc) = registry.get(&host) else {
            // The first service in name order named exactly so, or whose first label it is.
            let exact = registry
                .get(&dest.host.to_ascii_lowercase())
                .map(|s| s.hostname.as_str());
            let by_label = short_names(registry, names)
                .get(dest.host.as_str())
                .copied();
            let hint = [exact, by_label]
                .into_iter()
                .flatten()
                .min()
                .map(|h| format!(" (did you mean `{h}`? short names expand to <name>.<namespace>.svc.cluster.local)"))
                .unwrap_or_default();
            out.push(r.diag(
                Severity::Error,
                codes::REFERENCED_RESOURCE_NOT_FOUND,
                format!("{field}.host"),
                format!("destination host `{host}` is not in the registry: no ServiceEntry declares it, so requests get 503 NC{hint}"),
            ));
            continue;
        };
        if let Some(hidden) = exports.not_shared(&svc.source, &vs.export_to, ns) {
            out.push(r.diag(
                Severity::Error,
                codes::REFERENCED_RESOURCE_NOT_FOUND,
                format!("{field}.host"),
                format!("destination host `{host}` is declared by ServiceEntry {hidden}, which is not exported to any namespace this VirtualService is exported to: proxies that see the route do not see the service, so requests get 503 NC"),
            ));
            continue;
        }
        if let Some(p) = dest.port {
            if u16::try_from(p.number)
                .ok()
                .and_then(|n| svc.port(n))
                .is_none()
            {
                out.push(r.diag(
                    Severity::Error,
                    codes::REFERENCED_RESOURCE_NOT_FOUND,
                    format!("{field}.port.number"),
                    format!("service `{host}` has no port {}", p.number),
                ));
            }
        }
        if let Some(subset) = &dest.subset {
            if !drs.has_subset(&host, subset) {
                out.push(r.diag(
                    Severity::Error,
                    codes::REFERENCED_RESOURCE_NOT_FOUND,
                    format!("{field}.subset"),
                    format!("subset `{subset}` of {host} is not defined in any DestinationRule: requests routed to it get 503 NC"),
                ));
            }
        }
    }
}

fn check_gateway_refs(
    r: &Resource,
    vs: &VirtualService,
    gateways: &HashSet<String>,
    out: &mut Vec<Diagnostic>,
) {
    let ns = &r.metadata.namespace;
    // (index in spec.gateways) or (http rule, match, index): formatted only for a finding.
    let top = vs.gateways.iter().enumerate().map(|(i, g)| ((None, i), g));
    let in_matches = vs.http.iter().enumerate().flat_map(|(i, rule)| {
        rule.matches.iter().enumerate().flat_map(move |(j, m)| {
            m.gateways
                .iter()
                .enumerate()
                .map(move |(k, g)| ((Some((i, j)), k), g))
        })
    });
    for (at, g) in top.chain(in_matches) {
        let key = gateway_key(g, ns);
        if key != MESH && !gateways.contains(&key) {
            out.push(r.diag(
                Severity::Error,
                codes::REFERENCED_RESOURCE_NOT_FOUND,
                match at {
                    (None, i) => format!("spec.gateways[{i}]"),
                    (Some((i, j)), k) => format!("spec.http[{i}].match[{j}].gateways[{k}]"),
                },
                format!("gateway `{key}` does not exist: the VirtualService is not served on it"),
            ));
        }
    }
}

/// A match entry that selects every request on every proxy it exists on.
fn entry_is_catch_all(m: &HttpMatchRequest) -> bool {
    let uri_all = m.uri.as_ref().is_none_or(|u| {
        u.prefix.as_deref() == Some("/")
            || u.regex.as_deref() == Some(".*")
            || (u.exact.is_none() && u.prefix.is_none() && u.regex.is_none())
    });
    uri_all
        && m.scheme.is_none()
        && m.method.is_none()
        && m.authority.is_none()
        && m.headers.is_empty()
        && m.without_headers.is_empty()
        && m.query_params.is_empty()
        && m.source_labels.is_empty()
        && m.source_namespace.is_none()
        && m.gateways.is_empty()
        && m.port.is_none()
}

fn check_dead_rules(r: &Resource, vs: &VirtualService, out: &mut Vec<Diagnostic>) {
    let mut catch_all_at: Option<usize> = None;
    let mut seen: Vec<(usize, &HttpMatchRequest)> = Vec::new();
    for (i, rule) in vs.http.iter().enumerate() {
        if let Some(j) = catch_all_at {
            out.push(r.diag(
                Severity::Warning,
                codes::VS_UNREACHABLE_RULE,
                format!("spec.http[{i}]"),
                format!("rule http[{i}] can never match: rule http[{j}] before it matches every request (first match wins)"),
            ));
            continue;
        }
        for (k, m) in rule.matches.iter().enumerate() {
            if let Some((j, _)) = seen.iter().find(|(_, prev)| *prev == m) {
                out.push(r.diag(
                    Severity::Info,
                    codes::VS_INEFFECTIVE_MATCH,
                    format!("spec.http[{i}].match[{k}]"),
                    format!("match http[{i}].match[{k}] is identical to one in rule http[{j}], which wins"),
                ));
            }
        }
        seen.extend(rule.matches.iter().map(|m| (i, m)));
        if rule.matches.is_empty() || rule.matches.iter().any(entry_is_catch_all) {
            catch_all_at = Some(i);
        }
    }
}

fn check_mesh_host_conflicts(ordered: &[&Resource], out: &mut Vec<Diagnostic>) {
    // Findings come in the order of `ordered`: the map's own order does not matter.
    let mut claimed: HashMap<std::borrow::Cow<'_, str>, &Resource, foldhash::fast::RandomState> =
        HashMap::default();
    for r in ordered {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        // As `vs_gateways` expands them: only the `mesh` entry itself names the mesh.
        if !(vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == MESH)) {
            continue;
        }
        for (i, h) in vs.hosts.iter().enumerate() {
            let host = fqdn_cow(h, &r.metadata.namespace);
            match claimed.get(&*host) {
                Some(first) if first.key() != r.key() => out.push(r.diag(
                    Severity::Error,
                    codes::CONFLICTING_MESH_VS_HOSTS,
                    format!("spec.hosts[{i}]"),
                    format!(
                        "host `{host}` is also claimed by VirtualService {}/{} for the mesh; sidecars do not merge VirtualServices, so this one is ignored for that host",
                        first.metadata.namespace, first.metadata.name
                    ),
                )),
                Some(_) => {}
                None => {
                    claimed.insert(host, r);
                }
            }
        }
    }
}

fn check_gateway_bindings(ordered: &[&Resource], out: &mut Vec<Diagnostic>) {
    let gateways: Vec<(&Resource, &sluice_model::Gateway)> = ordered
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Gateway(g) => Some((*r, &**g)),
            _ => None,
        })
        .collect();
    let keys: Vec<String> = gateways
        .iter()
        .map(|(gr, _)| format!("{}/{}", gr.metadata.namespace, gr.metadata.name))
        .collect();
    // Each gateway's place among the distinct keys in name order: the pairs below are keyed
    // by it rather than by the key itself, and still come out in key order.
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    let rank: Vec<usize> = keys
        .iter()
        .map(|k| distinct.binary_search(k).unwrap_or_default())
        .collect();
    // Every (gateway rank, gateway host, place in `ordered`) a VirtualService is bound to, to
    // find overlapping rules between the VirtualServices of one host. A list sorted once, not
    // a map: it is rebuilt on every build for every VirtualService bound to a gateway, and
    // most names in it are borrowed.
    let mut bound: Vec<(
        u32,
        std::borrow::Cow<'_, str>,
        u32,
        &Resource,
        &VirtualService,
    )> = Vec::with_capacity(
        ordered
            .iter()
            .map(|r| match &r.spec {
                Spec::VirtualService(vs) if !gateways.is_empty() => vs.hosts.len(),
                _ => 0,
            })
            .sum(),
    );
    for (place, r) in ordered.iter().enumerate() {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        let place = u32::try_from(place).unwrap_or(u32::MAX);
        let ns = &r.metadata.namespace;
        // Expanded once per VirtualService, and only if it binds a gateway at all.
        let mut hosts: Option<Vec<std::borrow::Cow<'_, str>>> = None;
        for (((gr, g), key), &rank) in gateways.iter().zip(&keys).zip(&rank) {
            if !vs_binds(vs, ns, key) {
                continue;
            }
            let hosts =
                hosts.get_or_insert_with(|| vs.hosts.iter().map(|h| fqdn_cow(h, ns)).collect());
            let mut any = false;
            for vh in hosts.iter() {
                for s in &g.servers {
                    for sh in &s.hosts {
                        let (sns, shost) = sh.split_once('/').unwrap_or(("*", sh));
                        if !(sns == "*"
                            || sns == ns
                            || (sns == "." && gr.metadata.namespace == *ns))
                        {
                            continue;
                        }
                        if let Some(d) = intersect_lowercase(vh, shost) {
                            any = true;
                            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
                            bound.push((rank, d, place, r, vs));
                        }
                    }
                }
            }
            if !any {
                let field = vs
                    .gateways
                    .iter()
                    .position(|x| gateway_key(x, ns) == *key)
                    .map_or("spec.hosts".to_string(), |i| format!("spec.gateways[{i}]"));
                out.push(r.diag(
                    Severity::Warning,
                    codes::VS_HOST_NOT_IN_GATEWAY,
                    field,
                    format!(
                        "none of the hosts {:?} is served by gateway {key}",
                        vs.hosts
                    ),
                ));
            }
        }
    }
    // Reported in gateway and host order, each host's VirtualServices in precedence order.
    bound.sort_unstable_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    for group in bound.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
        // Only hosts bound by several VirtualServices can overlap.
        let Some(((rank, host, ..), rest)) = group.split_first() else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        // A VirtualService reaching the host through several servers counts once.
        let mut list: smallvec::SmallVec<[(&Resource, &VirtualService); 2]> =
            smallvec::SmallVec::new();
        for (.., r, vs) in group {
            if !list.iter().any(|(x, _)| same_object(x, r)) {
                list.push((*r, *vs));
            }
        }
        let gw = distinct.get(*rank as usize).map_or("", String::as_str);
        for (b_idx, (rb, vb)) in list.iter().enumerate().skip(1) {
            for (ra, va) in &list[..b_idx] {
                if let Some((i, j)) = first_overlap(va, vb) {
                    out.push(rb.diag(
                        Severity::Warning,
                        codes::GATEWAY_VS_OVERLAP,
                        format!("spec.http[{j}]"),
                        format!(
                            "rule http[{j}] overlaps rule http[{i}] of VirtualService {}/{} on gateway {gw} host `{host}`: the gateway merges both in creation order, so the older rule wins for requests matching both",
                            ra.metadata.namespace, ra.metadata.name
                        ),
                    ));
                }
            }
        }
    }
}

/// Whether two objects are the same one by kind, namespace and name (without building keys).
fn same_object(a: &Resource, b: &Resource) -> bool {
    a.kind == b.kind
        && a.metadata.namespace == b.metadata.namespace
        && a.metadata.name == b.metadata.name
}

/// The first pair of rules (one per VirtualService) that some request could match both of.
fn first_overlap(a: &VirtualService, b: &VirtualService) -> Option<(usize, usize)> {
    for (j, rb) in b.http.iter().enumerate() {
        for (i, ra) in a.http.iter().enumerate() {
            if rules_may_overlap(&ra.matches, &rb.matches) {
                return Some((i, j));
            }
        }
    }
    None
}

fn rules_may_overlap(a: &[HttpMatchRequest], b: &[HttpMatchRequest]) -> bool {
    if a.is_empty() || b.is_empty() {
        return true;
    }
    a.iter()
        .any(|x| b.iter().any(|y| entries_may_overlap(x, y)))
}

fn entries_may_overlap(a: &HttpMatchRequest, b: &HttpMatchRequest) -> bool {
    let uri_ok = match (&a.uri, &b.uri) {
        (Some(x), Some(y)) => match (
            (&x.exact, &x.prefix, &x.regex),
            (&y.exact, &y.prefix, &y.regex),
        ) {
            ((Some(e1), _, _), (Some(e2), _, _)) => e1 == e2,
            ((Some(e), _, _), (_, Some(p), _)) | ((_, Some(p), _), (Some(e), _, _)) => {
                e.starts_with(p.as_str())
            }
            ((_, Some(p1), _), (_, Some(p2), _)) => {
                p1.starts_with(p2.as_str()) || p2.starts_with(p1.as_str())
            }
            ((_, _, Some(r1)), (_, _, Some(r2))) => r1 == r2 || r1 == ".*" || r2 == ".*",
            _ => true,
        },
        _ => true,
    };
    let headers_ok = a
        .headers
        .iter()
        .all(|(k, va)| match (b.headers.get(k), &va.exact) {
            (Some(vb), Some(ea)) => vb.exact.as_ref().is_none_or(|eb| eb == ea),
            _ => true,
        });
    let authority_ok = match (&a.authority, &b.authority) {
        (Some(x), Some(y)) => match (&x.exact, &y.exact) {
            (Some(e1), Some(e2)) => overlaps(e1, e2),
            _ => true,
        },
        _ => true,
    };
    uri_ok && headers_ok && authority_ok
}

fn check_subsets(registry: &Registry, drs: &DestinationRuleIndex<'_>, out: &mut Vec<Diagnostic>) {
    for (host, r, dr) in drs.all() {
        let matching: Vec<_> = registry.matching(host).collect();
        if matching.is_empty() {
            out.push(r.diag(
                Severity::Warning,
                codes::REFERENCED_RESOURCE_NOT_FOUND,
                "spec.host",
                format!("host `{host}` is not in the registry: this DestinationRule has no effect"),
            ));
            continue;
        }
        for (i, s) in dr.subsets.iter().enumerate() {
            let selects = matching.iter().any(|svc| {
                svc.endpoints
                    .iter()
                    .any(|e| selector_matches(&s.labels, &e.labels))
            });
            if !selects {
                out.push(r.diag(
                    Severity::Warning,
                    codes::SUBSET_SELECTS_NOTHING,
                    format!("spec.subsets[{i}].labels"),
                    format!("subset `{}` selects no endpoint of {host}: requests routed to it get 503 UH (no healthy upstream)", s.name),
                ));
            }
        }
    }
}

/// The `exportTo` of every ServiceEntry that sets one, by object.
struct ServiceExports<'r> {
    by_entry: HashMap<ResourceRef, &'r [String]>,
}

impl<'r> ServiceExports<'r> {
    fn new(resources: &[&'r Resource]) -> Self {
        let by_entry = resources
            .iter()
            .copied()
            .filter_map(|r| match &r.spec {
                Spec::ServiceEntry(se) if !se.export_to.is_empty() => {
                    Some((r.key(), se.export_to.as_slice()))
                }
                _ => None,
            })
            .collect();
        ServiceExports { by_entry }
    }

    /// The ServiceEntry `entry` (as `ns/name`) when no namespace sees both it and a
    /// VirtualService of namespace `vs_ns` exported by `vs_export`.
    fn not_shared(&self, entry: &ResourceRef, vs_export: &[String], vs_ns: &str) -> Option<String> {
        let export = self.by_entry.get(entry)?;
        (!crate::scope::audiences_overlap(vs_export, vs_ns, export, &entry.namespace))
            .then(|| format!("{}/{}", entry.namespace, entry.name))
    }
}

#[cfg(test)]
mod tests {
    use sluice_model::{parse_text, Diagnostic};

    /// The messages of the analysis of `text` that `keep` selects.
    fn messages(text: &str, keep: impl Fn(&Diagnostic) -> bool) -> Vec<String> {
        let parsed = parse_text(text, None);
        super::analyze(&parsed.resources)
            .into_iter()
            .filter(|d| keep(d))
            .map(|d| d.message)
            .collect()
    }

    /// A destination host written as a short name in another namespace gets the service it
    /// probably meant as a hint (found through an index, not a scan per missing host).
    #[test]
    fn a_missing_short_host_hints_at_the_service_of_that_name() {
        let text = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: reviews, namespace: bookinfo}\nspec:\n  hosts: [reviews.bookinfo.svc.cluster.local]\n  ports: [{number: 9080, name: http}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: default}\nspec:\n  hosts: [r.example.com]\n  http:\n  - route: [{destination: {host: reviews}}, {destination: {host: ratings}}]\n";
        let found = messages(text, |d| {
            d.field.as_deref().is_some_and(|f| f.ends_with(".host"))
        });
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].contains("did you mean `reviews.bookinfo.svc.cluster.local`?"),
            "{found:#?}"
        );
        assert!(!found[1].contains("did you mean"), "{found:#?}");
    }

    /// A VirtualService reaching one host through two servers of a gateway is one party to an
    /// overlap, not two; and host names differing only in case are one host, as the gateway
    /// merges them.
    #[test]
    fn an_overlap_is_reported_once_per_pair_on_a_host_in_any_case() {
        let text = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: default}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n  - port: {number: 80, name: http-shop, protocol: HTTP}\n    hosts: [Shop.Example.com]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: old, namespace: default}\nspec:\n  hosts: [shop.example.com]\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: shop.example.com}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: new, namespace: default}\nspec:\n  hosts: [SHOP.example.com]\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: shop.example.com}}]\n";
        let found = messages(text, |d| d.message.contains("overlaps"));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].contains(
                "of VirtualService default/old on gateway default/gw host `shop.example.com`"
            ),
            "{found:#?}"
        );
    }

    /// Overlaps are reported per gateway in gateway-name order (whatever order the Gateways
    /// were written in), and a VirtualService bound to a gateway serving none of its hosts is
    /// named with that gateway.
    #[test]
    fn gateway_overlaps_come_in_gateway_name_order() {
        let gateway = |ns: &str| {
            format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: {ns}}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 80, name: http, protocol: HTTP}}\n    hosts: [\"*/shop.example.com\"]\n---\n")
        };
        let vs = |name: &str, hosts: &str| {
            format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hosts: [{hosts}]\n  gateways: [b/gw, a/gw]\n  http:\n  - route: [{{destination: {{host: shop.example.com}}}}]\n---\n")
        };
        let text = [
            gateway("b"),
            gateway("a"),
            vs("old", "shop.example.com"),
            vs("new", "shop.example.com"),
            vs("elsewhere", "other.org"),
        ]
        .concat();
        let found = messages(&text, |d| d.message.contains("gateway"));
        let on = |gw: &str| {
            found
                .iter()
                .position(|m| m.contains("overlaps") && m.contains(&format!("on gateway {gw} ")))
        };
        assert!(
            on("a/gw") < on("b/gw") && on("a/gw").is_some(),
            "{found:#?}"
        );
        let unserved: Vec<&String> = found
            .iter()
            .filter(|m| m.contains("none of the hosts"))
            .collect();
        assert_eq!(unserved.len(), 2, "{found:#?}");
        assert!(
            unserved[0].ends_with("gateway b/gw") && unserved[1].ends_with("gateway a/gw"),
            "{found:#?}"
        );
    }

    /// A build whose only changes are VirtualServices takes the other VirtualServices'
    /// findings, the subset findings and the registry from the previous analysis, and finds
    /// exactly what a full analysis finds; any other change analyzes everything again.
    #[test]
    fn only_changed_virtual_services_are_analyzed_again() {
        use std::sync::Arc;

        let se = |name: &str| {
            format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}.example.com]\n  ports: [{{number: 80, name: http}}]\n  resolution: STATIC\n  endpoints: [{{address: 10.0.0.1, labels: {{version: v1}}}}]\n---\n")
        };
        let vs = |name: &str, dest: &str, subset: &str| {
            format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}.example.com]\n  http:\n  - route: [{{destination: {{host: {dest}.example.com, subset: {subset}}}}}]\n---\n")
        };
        let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec:\n  host: a.example.com\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n---\n";
        let objects = |text: String| -> Vec<Arc<sluice_model::Resource>> {
            parse_text(&text, None)
                .resources
                .into_iter()
                .map(Arc::new)
                .collect()
        };
        let first = objects(
            [
                se("a"),
                se("b"),
                dr.to_string(),
                vs("a", "a", "v1"),
                vs("b", "a", "v3"),
            ]
            .concat(),
        );
        let (found, memo) = super::analyze_with(&first, None, None);
        assert_eq!(found, super::analyze(&first));
        assert!(
            found.iter().any(|d| d.message.contains("subset `v3`")),
            "{found:#?}"
        );

        // One VirtualService edited (a fresh object), the rest the same objects.
        let mut edited = first.clone();
        edited[4] = objects(vs("b", "missing", "v1")).remove(0);
        let (found, next) = super::analyze_with(&edited, None, Some(&memo));
        assert_eq!(found, super::analyze(&edited));
        assert!(
            found
                .iter()
                .any(|d| d.message.contains("missing.example.com")),
            "{found:#?}"
        );
        assert!(
            !found.iter().any(|d| d.message.contains("subset `v3`")),
            "{found:#?}"
        );
        // Without a compile memo the analysis has services of its own: not kept.
        assert!(memo.registry.is_none() && next.registry.is_none());
        assert_eq!((memo.reanalyzed, next.reanalyzed), (2, 1));

        // A DestinationRule edited: everything is analyzed again.
        let mut redefined = edited.clone();
        redefined[2] = objects(dr.replace("name: v2", "name: v3")).remove(0);
        let (found, last) = super::analyze_with(&redefined, None, Some(&next));
        assert_eq!(found, super::analyze(&redefined));
        assert_eq!(last.reanalyzed, 2);
    }
}
