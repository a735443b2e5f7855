//! A Canary's references: its VirtualService (same namespace), the targeted HTTP route, and
//! both subsets in the DestinationRule of the route's host.

use sluice_model::{codes, Diagnostic, Resource, Severity, Spec};

use crate::canary::overlay::target_route;
use crate::compile::destination_rules::DestinationRuleIndex;
use crate::host::fqdn;

pub(super) fn check_canaries<'d, 'r: 'd>(
    ordered: &[&Resource],
    drs: impl Fn() -> &'d DestinationRuleIndex<'r>,
    out: &mut Vec<Diagnostic>,
) {
    for r in ordered {
        let Spec::Canary(c) = &r.spec else {
            continue;
        };
        if c.virtual_service.is_empty() {
            continue;
        }
        let missing = |field: &str, message: String| {
            r.diag(
                Severity::Error,
                codes::REFERENCED_RESOURCE_NOT_FOUND,
                field,
                message,
            )
        };
        let ns = &r.metadata.namespace;
        let vs = ordered.iter().find_map(|o| match &o.spec {
            Spec::VirtualService(vs)
                if o.metadata.namespace == *ns && o.metadata.name == c.virtual_service =>
            {
                Some(vs)
            }
            _ => None,
        });
        let Some(vs) = vs else {
            out.push(missing(
                "spec.virtualService",
                format!(
                    "VirtualService {ns}/{} does not exist: a Canary moves a route of a VirtualService in its own namespace",
                    c.virtual_service
                ),
            ));
            continue;
        };
        let Some(index) = target_route(vs, c.route.as_deref()) else {
            let (field, message) = match c.route.as_deref() {
                Some(name) => (
                    "spec.route",
                    format!("VirtualService {ns}/{} has no HTTP route named `{name}`", c.virtual_service),
                ),
                None => (
                    "spec.virtualService",
                    format!("VirtualService {ns}/{} has no HTTP route without a `match`: name the route with `route`", c.virtual_service),
                ),
            };
            out.push(missing(field, message));
            continue;
        };
        let Some(dest) = vs
            .http
            .get(index)
            .and_then(|rule| rule.route.iter().find_map(|d| d.destination.as_ref()))
        else {
            out.push(missing(
                "spec.route",
                format!(
                    "route {index} of VirtualService {ns}/{} forwards nowhere (redirect, direct response or delegate): nothing to split",
                    c.virtual_service
                ),
            ));
            continue;
        };
        let host = fqdn(&dest.host, ns);
        for (field, subset) in [
            ("spec.stableSubset", &c.stable_subset),
            ("spec.canarySubset", &c.canary_subset),
        ] {
            if !subset.is_empty() && !drs().has_subset(&host, subset) {
                out.push(missing(
                    field,
                    format!("subset `{subset}` of {host} is not defined in any DestinationRule"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_model::parse_text;

    const BASE: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: [app]
  http:
  - route: [{destination: {host: app, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: rollouts.sluice.dev/v1alpha1
kind: Canary
metadata: {name: app}
spec:
  virtualService: VS
  route: ROUTE
  stableSubset: v1
  canarySubset: CANARY
  analysis: {stepWeight: 10}
"#;

    fn findings(vs: &str, route: &str, canary: &str) -> Vec<(String, Option<String>, u32)> {
        let text = BASE
            .replace("VS", vs)
            .replace("  route: ROUTE\n", route)
            .replace("CANARY", canary);
        let parsed = parse_text(&text, Some("canary.yaml".into()));
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        crate::load::check(&parsed.resources, Vec::new())
            .into_iter()
            .filter(|d| d.code == sluice_model::codes::REFERENCED_RESOURCE_NOT_FOUND)
            .filter(|d| d.resource.as_ref().is_some_and(|r| r.kind == "Canary"))
            .map(|d| (d.message, d.field, d.location.map_or(0, |l| l.line)))
            .collect()
    }

    #[test]
    fn a_complete_canary_has_no_findings() {
        let f = findings("app", "", "v2");
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn missing_references_name_the_field_and_line() {
        let f = findings("nope", "", "v2");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].1.as_deref(), Some("spec.virtualService"));
        assert_eq!(f[0].2, 21);
        let f = findings("app", "  route: primary\n", "v2");
        assert!(f[0].0.contains("no HTTP route named `primary`"), "{f:?}");
        let f = findings("app", "", "v3");
        assert_eq!(f[0].1.as_deref(), Some("spec.canarySubset"));
        assert!(
            f[0].0
                .contains("subset `v3` of app.default.svc.cluster.local"),
            "{f:?}"
        );
    }
}
