//! "Not enforced yet" warnings: a valid field sluice accepts but does not act on is never silent.
//!
//! Each feature is one line in a table. The `*_UNSUPPORTED` tables list fields that stay
//! unenforced; what depends on the proxy (e.g. a gateway port another listener holds) is said
//! when compiling for it.

use sluice_model::{
    codes, HttpMatchRequest, HttpRoute, PortTrafficPolicy, Severity, Spec, TrafficPolicy,
};

use super::Ctx;

/// A presence check: field path (relative to its parent), what to call it, whether it is set.
type Check<T> = (&'static str, &'static str, fn(&T) -> bool);

// ----- Unsupported: these stay unenforced. -----

/// Fields of an HTTP rule (`spec.http[i]`): none left.
const ROUTE_UNSUPPORTED: &[Check<HttpRoute>] = &[];

/// Fields of a match entry (`spec.http[i].match[j]`): none left.
const MATCH_UNSUPPORTED: &[Check<HttpMatchRequest>] = &[];

/// Parts of DestinationRule policy objects (any `trafficPolicy` or `portLevelSettings` entry):
/// none left.
const POLICY_UNSUPPORTED: &[Check<PortTrafficPolicy>] = &[];

/// Fields only a whole `trafficPolicy` has: none left.
const TRAFFIC_POLICY_UNSUPPORTED: &[Check<TrafficPolicy>] = &[];

fn warn(ctx: &mut Ctx<'_>, field: String, what: &str) {
    ctx.push(
        Severity::Warning,
        codes::NOT_ENFORCED,
        field,
        format!("{what} is not enforced yet: sluice accepts it but behaves as if it were absent"),
    );
}

/// A policy attached by `targetRef(s)` applies to Gateway-API gateways and waypoints only.
fn target_ref_note(ctx: &mut Ctx<'_>, single: bool, many: bool) {
    if single || many {
        ctx.push(
            Severity::Info,
            codes::TARGET_REF_IGNORED,
            if single { "spec.targetRef" } else { "spec.targetRefs" },
            "a policy with `targetRef`/`targetRefs` is ignored by sidecars and classic gateways, as in Istio",
        );
    }
}

/// Warns for every check of `table` that `value` sets, at `base.<field>`.
fn run<T>(ctx: &mut Ctx<'_>, base: &str, value: &T, table: &[Check<T>]) {
    for (field, what, present) in table {
        if present(value) {
            warn(ctx, format!("{base}.{field}"), what);
        }
    }
}

/// The objects of a `trafficPolicy` viewed as a port-level entry, so both share one table.
fn objects(tp: &TrafficPolicy) -> PortTrafficPolicy {
    PortTrafficPolicy {
        port: None,
        load_balancer: tp.load_balancer.clone(),
        connection_pool: tp.connection_pool.clone(),
        outlier_detection: tp.outlier_detection.clone(),
        tls: tp.tls.clone(),
    }
}

/// Warnings for a `trafficPolicy` at `base` and its port-level entries.
fn traffic_policy(ctx: &mut Ctx<'_>, base: &str, tp: &TrafficPolicy) {
    let whole = objects(tp);
    run(ctx, base, &whole, POLICY_UNSUPPORTED);
    run(ctx, base, tp, TRAFFIC_POLICY_UNSUPPORTED);
    for (k, p) in tp.port_level_settings.iter().enumerate() {
        let pbase = format!("{base}.portLevelSettings[{k}]");
        run(ctx, &pbase, p, POLICY_UNSUPPORTED);
    }
}

/// Adds a warning for every field present in the object that sluice does not act on.
pub(crate) fn warn_all(ctx: &mut Ctx<'_>) {
    let spec = &ctx.resource().spec;
    match spec {
        Spec::VirtualService(vs) => {
            // Sidecar `tls` rules route intercepted TLS by SNI; compiling for a proxy without
            // interception says they have nothing to act on there.
            for (i, r) in vs.http.iter().enumerate() {
                let base = format!("spec.http[{i}]");
                run(ctx, &base, r, ROUTE_UNSUPPORTED);
                for (j, m) in r.matches.iter().enumerate() {
                    run(ctx, &format!("{base}.match[{j}]"), m, MATCH_UNSUPPORTED);
                }
            }
        }
        Spec::DestinationRule(dr) => {
            if let Some(tp) = &dr.traffic_policy {
                traffic_policy(ctx, "spec.trafficPolicy", tp);
            }
            for (i, s) in dr.subsets.iter().enumerate() {
                if let Some(tp) = &s.traffic_policy {
                    traffic_policy(ctx, &format!("spec.subsets[{i}].trafficPolicy"), tp);
                }
            }
        }
        // Server binds are enforced: IP addresses and unix domain sockets, for every protocol.
        Spec::Gateway(_) => {}
        // DYNAMIC_DNS resolves the request's Host on HTTP ports and the SNI on TLS ports.
        Spec::ServiceEntry(_) => {}
        Spec::WorkloadEntry(_) => {}
        // Egress hosts and ports scope what the proxy compiles; `bind` (an IP address or a unix
        // domain socket, for every protocol) and `captureMode` decide where egress listeners
        // are bound (said per proxy when compiling).
        Spec::Sidecar(_) => {}
        Spec::AuthorizationPolicy(ap) => {
            if ap.action.as_deref() == Some("CUSTOM") {
                ctx.push(
                    Severity::Warning,
                    codes::NOT_ENFORCED,
                    "spec.action",
                    "CUSTOM authorization is not enforced yet: sluice has no external authorizer, so requests matching these rules are denied (403), as Istio does for an unknown provider",
                );
            }
            target_ref_note(ctx, ap.target_ref.is_some(), !ap.target_refs.is_empty());
        }
        Spec::RequestAuthentication(ra) => {
            target_ref_note(ctx, ra.target_ref.is_some(), !ra.target_refs.is_empty());
        }
        Spec::PeerAuthentication(_) | Spec::Canary(_) => {}
    }
    let endpoints: Vec<(String, &sluice_model::WorkloadEntry)> = match spec {
        Spec::ServiceEntry(se) => se
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("spec.endpoints[{i}]"), e))
            .collect(),
        Spec::WorkloadEntry(we) => vec![("spec".to_string(), we)],
        _ => Vec::new(),
    };
    for (base, e) in endpoints {
        if let Some(n) = e.network.as_deref().filter(|n| !n.is_empty()) {
            ctx.push(
                Severity::Info,
                codes::CROSS_NETWORK_ENDPOINT,
                format!("{base}.network"),
                format!("network `{n}`: a proxy on another network (`--network`) reaches this endpoint directly, as Istio does when no gateway serves `{n}` (sluice knows no meshNetworks gateways)"),
            );
        }
    }
}
