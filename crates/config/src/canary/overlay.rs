//! The canary overlay: what a Canary's state does to the targeted VirtualService route, applied
//! to a copy of the objects right before compilation. The user's object is never rewritten, and
//! a Canary that is deleted takes its overlay with it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_model::{
    Canary, Destination, HttpMatchRequest, HttpRoute, HttpRouteDestination, Percent, Resource,
    Spec, VirtualService,
};

/// What the controller wants the route to look like for one Canary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryOverlay {
    /// The Canary's phase (shown next to the overlay).
    pub phase: String,
    /// Percent of the route's requests sent to the canary subset (the rest to stable).
    pub weight: u32,
    /// Mirror to the canary subset at this percent (shadow stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<u32>,
    /// A/B stage: requests matching `analysis.match` go to the canary first.
    #[serde(default)]
    pub matched: bool,
}

/// Overlays by Canary, keyed `namespace/name`.
pub type CanaryOverlays = BTreeMap<String, CanaryOverlay>;

/// An overlay that was applied, for `/config_dump`, `explain` and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedCanary {
    /// The Canary, `namespace/name`.
    pub canary: String,
    /// The VirtualService, `namespace/name`.
    pub virtual_service: String,
    /// The route's index in `spec.http` of the user's object.
    pub route_index: usize,
    /// The route's name, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_name: Option<String>,
    /// Stable subset.
    pub stable_subset: String,
    /// Canary subset.
    pub canary_subset: String,
    /// The state applied.
    #[serde(flatten)]
    pub overlay: CanaryOverlay,
}

/// The HTTP route a Canary targets: by name, else the first route without a `match`.
pub fn target_route(vs: &VirtualService, name: Option<&str>) -> Option<usize> {
    match name {
        Some(n) => vs.http.iter().position(|r| r.name.as_deref() == Some(n)),
        None => vs.http.iter().position(|r| r.matches.is_empty()),
    }
}

/// The destination host and port the route sends to (its first destination).
fn route_target(route: &HttpRoute) -> Option<&Destination> {
    route.route.iter().find_map(|d| d.destination.as_ref())
}

fn to_subset(base: &Destination, subset: &str) -> Destination {
    Destination {
        host: base.host.clone(),
        subset: Some(subset.to_string()),
        port: base.port,
    }
}

fn weighted(base: &HttpRouteDestination, dest: Destination, weight: u32) -> HttpRouteDestination {
    HttpRouteDestination {
        destination: Some(dest),
        weight: Some(i32::try_from(weight).unwrap_or(100)),
        headers: base.headers.clone(),
    }
}

/// The route's match entries AND'ed with the Canary's: each pair merged (the Canary's header,
/// query and cookie conditions added to the route's own).
fn merged_matches(
    route: &[HttpMatchRequest],
    canary: &[HttpMatchRequest],
) -> Vec<HttpMatchRequest> {
    if route.is_empty() {
        return canary.to_vec();
    }
    let mut out = Vec::new();
    for r in route {
        for c in canary {
            let mut m = r.clone();
            m.headers.extend(c.headers.clone());
            m.query_params.extend(c.query_params.clone());
            m.without_headers.extend(c.without_headers.clone());
            if c.uri.is_some() {
                m.uri = c.uri.clone();
            }
            if c.method.is_some() {
                m.method = c.method.clone();
            }
            out.push(m);
        }
    }
    out
}

/// Rewrites the targeted route of `vs` (a copy) for `overlay`; `None` when the route is gone.
fn overlay_route(
    vs: &mut VirtualService,
    index: usize,
    canary: &Canary,
    overlay: &CanaryOverlay,
) -> Option<()> {
    let route = vs.http.get_mut(index)?;
    let first = route
        .route
        .iter()
        .find(|d| d.destination.is_some())?
        .clone();
    let base = route_target(route)?.clone();
    let stable = to_subset(&base, &canary.stable_subset);
    let canary_dest = to_subset(&base, &canary.canary_subset);
    let weight = overlay.weight.min(100);
    // A zero weight is left out: the split then has one destination, with no 0 % slot.
    route.route = match weight {
        0 => vec![weighted(&first, stable, 100)],
        100 => vec![weighted(&first, canary_dest.clone(), 100)],
        w => vec![
            weighted(&first, stable, 100 - w),
            weighted(&first, canary_dest.clone(), w),
        ],
    };
    if let Some(percent) = overlay.mirror.filter(|p| *p > 0) {
        route.mirror = Some(Box::new(canary_dest.clone()));
        route.mirrors.clear();
        route.mirror_percent = None;
        route.mirror_percentage = Some(Percent {
            value: f64::from(percent.min(100)),
        });
    } else if overlay.phase == "Failed" || overlay.phase == "Succeeded" {
        // A mirror of the user's own that points at the canary would keep loading it.
        if route
            .mirror
            .as_ref()
            .is_some_and(|m| m.subset.as_deref() == Some(&canary.canary_subset))
        {
            route.mirror = None;
            route.mirror_percentage = None;
            route.mirror_percent = None;
        }
    }
    if overlay.matched && !canary.analysis.matches.is_empty() {
        let mut ab = route.clone();
        ab.name = Some(format!(
            "{}-canary",
            route.name.as_deref().unwrap_or("route")
        ));
        ab.matches = merged_matches(&route.matches, &canary.analysis.matches);
        ab.route = vec![weighted(&first, canary_dest, 100)];
        ab.mirror = None;
        ab.mirrors.clear();
        ab.mirror_percentage = None;
        ab.mirror_percent = None;
        vs.http.insert(index, ab);
    }
    Some(())
}

/// Applies the overlays of the Canaries present in `resources`. Returns the objects to compile
/// (`None`: nothing changed, compile `resources` as they are) and what was applied.
pub fn apply_overlays(
    resources: &[Arc<Resource>],
    overlays: &CanaryOverlays,
) -> (Option<Vec<Arc<Resource>>>, Vec<AppliedCanary>) {
    if overlays.is_empty() {
        return (None, Vec::new());
    }
    let mut out: Option<Vec<Arc<Resource>>> = None;
    let mut applied = Vec::new();
    for c in resources {
        let Spec::Canary(canary) = &c.spec else {
            continue;
        };
        let key = format!("{}/{}", c.metadata.namespace, c.metadata.name);
        let Some(overlay) = overlays.get(&key) else {
            continue;
        };
        let objects = out.get_or_insert_with(|| resources.to_vec());
        let Some(vs_res) = objects.iter_mut().find(|r| {
            matches!(r.spec, Spec::VirtualService(_))
                && r.metadata.namespace == c.metadata.namespace
                && r.metadata.name == canary.virtual_service
        }) else {
            continue;
        };
        // Copied on write: the user's object stays as it is, shared with the snapshot.
        let vs_res = Arc::make_mut(vs_res);
        let Spec::VirtualService(vs) = &mut vs_res.spec else {
            continue;
        };
        // Located in the user's object: an A/B route inserted by an earlier Canary on the same
        // VirtualService carries a name of its own, so names still find the right route.
        let Some(index) = target_route(vs, canary.route.as_deref()) else {
            continue;
        };
        let route_name = vs.http.get(index).and_then(|r| r.name.clone());
        if overlay_route(vs, index, canary, overlay).is_some() {
            applied.push(AppliedCanary {
                canary: key,
                virtual_service: format!("{}/{}", vs_res.metadata.namespace, vs_res.metadata.name),
                route_index: index,
                route_name,
                stable_subset: canary.stable_subset.clone(),
                canary_subset: canary.canary_subset.clone(),
                overlay: overlay.clone(),
            });
        }
    }
    (out, applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::parse_text;

    const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: default}
spec:
  hosts: [app]
  http:
  - name: api
    match: [{uri: {prefix: /api}}]
    route: [{destination: {host: app, subset: v1}}]
  - name: primary
    route: [{destination: {host: app, subset: v1, port: {number: 80}}}]
---
apiVersion: rollouts.sluice.dev/v1alpha1
kind: Canary
metadata: {name: app, namespace: default}
spec:
  virtualService: app
  stableSubset: v1
  canarySubset: v2
  analysis:
    stepWeight: 10
    iterations: 2
    match: [{headers: {canary: {exact: canary-tester}}}]
"#;

    fn overlaid(o: CanaryOverlay) -> (VirtualService, Vec<AppliedCanary>) {
        let parsed = parse_text(CONFIG, None);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let mut overlays = CanaryOverlays::new();
        overlays.insert("default/app".into(), o);
        let shared: Vec<Arc<Resource>> = parsed.resources.iter().cloned().map(Arc::new).collect();
        let (out, applied) = apply_overlays(&shared, &overlays);
        let out = out.expect("overlay applied");
        let Spec::VirtualService(vs) = &out[0].spec else {
            panic!("first object is the VirtualService")
        };
        // The user's object is untouched.
        let Spec::VirtualService(orig) = &parsed.resources[0].spec else {
            panic!()
        };
        assert_eq!(orig.http[1].route.len(), 1);
        ((**vs).clone(), applied)
    }

    fn split(r: &HttpRoute) -> Vec<(String, i32)> {
        r.route
            .iter()
            .map(|d| {
                let dest = d.destination.as_ref().expect("destination");
                (
                    dest.subset.clone().unwrap_or_default(),
                    d.weight.unwrap_or(0),
                )
            })
            .collect()
    }

    #[test]
    fn weight_splits_the_default_route_between_stable_and_canary() {
        let (vs, applied) = overlaid(CanaryOverlay {
            phase: "Progressing".into(),
            weight: 10,
            mirror: None,
            matched: false,
        });
        assert_eq!(split(&vs.http[1]), [("v1".into(), 90), ("v2".into(), 10)]);
        // The port of the user's destination is kept.
        assert!(vs.http[1].route[1]
            .destination
            .as_ref()
            .is_some_and(|d| d.port.is_some()));
        assert_eq!(split(&vs.http[0]), [("v1".into(), 0)]);
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].route_index, 1);
        assert_eq!(applied[0].route_name.as_deref(), Some("primary"));
    }

    #[test]
    fn mirror_stage_keeps_users_on_stable_and_mirrors_the_canary() {
        let (vs, _) = overlaid(CanaryOverlay {
            phase: "Progressing".into(),
            weight: 0,
            mirror: Some(50),
            matched: false,
        });
        let r = &vs.http[1];
        assert_eq!(split(r), [("v1".into(), 100)]);
        assert_eq!(
            r.mirror.as_ref().and_then(|m| m.subset.as_deref()),
            Some("v2")
        );
        assert_eq!(r.mirror_percentage.map(|p| p.value), Some(50.0));
    }

    #[test]
    fn ab_stage_adds_a_match_route_before_the_target() {
        let (vs, _) = overlaid(CanaryOverlay {
            phase: "Progressing".into(),
            weight: 0,
            mirror: None,
            matched: true,
        });
        assert_eq!(vs.http.len(), 3);
        let ab = &vs.http[1];
        assert_eq!(ab.name.as_deref(), Some("primary-canary"));
        assert_eq!(split(ab), [("v2".into(), 100)]);
        assert!(ab.matches[0].headers.contains_key("canary"));
        assert_eq!(split(&vs.http[2]), [("v1".into(), 100)]);
    }

    #[test]
    fn succeeded_and_failed_send_everything_one_way() {
        let (vs, _) = overlaid(CanaryOverlay {
            phase: "Succeeded".into(),
            weight: 100,
            mirror: None,
            matched: false,
        });
        assert_eq!(split(&vs.http[1]), [("v2".into(), 100)]);
        let (vs, _) = overlaid(CanaryOverlay {
            phase: "Failed".into(),
            weight: 0,
            mirror: None,
            matched: false,
        });
        assert_eq!(split(&vs.http[1]), [("v1".into(), 100)]);
        assert!(vs.http[1].mirror.is_none());
    }

    #[test]
    fn no_canary_object_no_overlay() {
        let text = CONFIG.split("---").next().unwrap_or_default();
        let parsed = parse_text(text, None);
        let mut overlays = CanaryOverlays::new();
        overlays.insert(
            "default/app".into(),
            CanaryOverlay {
                phase: "Progressing".into(),
                weight: 50,
                mirror: None,
                matched: false,
            },
        );
        let shared: Vec<Arc<Resource>> = parsed.resources.iter().cloned().map(Arc::new).collect();
        let (out, applied) = apply_overlays(&shared, &overlays);
        assert!(out.is_none_or(|o| o == shared));
        assert!(applied.is_empty());
    }
}
