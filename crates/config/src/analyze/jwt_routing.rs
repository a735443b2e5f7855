//! JWT claim routing needs a RequestAuthentication on the gateway's workloads: without one no
//! token is ever verified and every claim route is skipped (istioctl's IST0149).

use std::collections::BTreeMap;

use sluice_model::location::{push_index, push_key};
use sluice_model::{codes, Diagnostic, Resource, Severity, Spec, VirtualService};

use crate::compile::http_route::vs_gateways;
use crate::jwt_claim::claim_path;
use crate::labels::selector_matches;

/// Where Istio's root namespace is when no mesh config says otherwise.
const ROOT_NAMESPACE: &str = "istio-system";

/// Reports claim matches on gateways that no RequestAuthentication selects.
pub(super) fn check_claim_routes(ordered: &[&Resource], out: &mut Vec<Diagnostic>) {
    let gateways: BTreeMap<String, (&str, BTreeMap<String, String>)> = ordered
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Gateway(g) => Some((
                format!("{}/{}", r.metadata.namespace, r.metadata.name),
                (
                    r.metadata.namespace.as_str(),
                    g.selector.clone().unwrap_or_default(),
                ),
            )),
            _ => None,
        })
        .collect();
    let has_ra = |ns: &str, labels: &BTreeMap<String, String>| {
        ordered.iter().any(|r| match &r.spec {
            Spec::RequestAuthentication(ra) => {
                let rns = r.metadata.namespace.as_str();
                (rns == ns || rns == ROOT_NAMESPACE)
                    && ra.target_ref.is_none()
                    && ra.target_refs.is_empty()
                    && ra
                        .selector
                        .as_ref()
                        .is_none_or(|s| selector_matches(&s.match_labels, labels))
            }
            _ => false,
        })
    };
    for r in ordered {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        let fields = claim_fields(vs);
        if fields.is_empty() {
            continue;
        }
        let unprotected = vs_gateways(vs, &r.metadata.namespace)
            .into_iter()
            .filter_map(|g| gateways.get(&g).map(|gw| (g, gw)))
            .find(|(_, (ns, labels))| !has_ra(ns, labels));
        if let Some((name, _)) = unprotected {
            for field in fields {
                out.push(r.diag(
                    Severity::Warning,
                    codes::JWT_CLAIM_ROUTING_WITHOUT_REQUEST_AUTHN,
                    field,
                    format!("JWT claim routing on gateway {name}, but no RequestAuthentication selects its workloads: no token is verified and this match never holds"),
                ));
            }
        }
    }
}

fn claim_fields(vs: &VirtualService) -> Vec<String> {
    let mut out = Vec::new();
    for (i, rule) in vs.http.iter().enumerate() {
        for (j, m) in rule.matches.iter().enumerate() {
            // Spelled out only for a claim match: every match of every VirtualService is
            // walked on each build.
            let base = || push_index(&push_key(&push_index("spec.http", i), "match"), j);
            for (key, map) in [
                ("headers", &m.headers),
                ("withoutHeaders", &m.without_headers),
            ] {
                for name in map.keys().filter(|k| claim_path(k).is_some()) {
                    out.push(push_key(&push_key(&base(), key), name));
                }
            }
        }
    }
    out
}
