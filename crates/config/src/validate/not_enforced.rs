//! "Not enforced yet" warnings: a valid field sluice accepts but does not act on is never silent.
//!
//! When a feature lands, its entry leaves this file.

use sluice_model::{codes, Severity, Spec};

use super::Ctx;

fn warn(ctx: &mut Ctx<'_>, field: String, what: &str) {
    ctx.push(
        Severity::Warning,
        codes::NOT_ENFORCED,
        field,
        format!("{what} is not enforced yet: sluice accepts it but behaves as if it were absent"),
    );
}

/// Adds a warning for every field present in the object that sluice does not act on.
pub(crate) fn warn_all(ctx: &mut Ctx<'_>) {
    let spec = &ctx.resource().spec;
    match spec {
        Spec::VirtualService(vs) => {
            if !vs.export_to.is_empty() {
                warn(ctx, "spec.exportTo".into(), "`exportTo`");
            }
            if !vs.tcp.is_empty() {
                warn(ctx, "spec.tcp".into(), "TCP routing (`tcp`)");
            }
            if !vs.tls.is_empty() {
                warn(ctx, "spec.tls".into(), "TLS/SNI routing (`tls`)");
            }
            for (i, r) in vs.http.iter().enumerate() {
                let f = |name: &str| format!("spec.http[{i}].{name}");
                let checks: [(bool, &str, &str); 10] = [
                    (r.rewrite.is_some(), "rewrite", "`rewrite`"),
                    (r.timeout.is_some(), "timeout", "route `timeout`"),
                    (r.retries.is_some(), "retries", "`retries`"),
                    (r.fault.is_some(), "fault", "fault injection (`fault`)"),
                    (r.mirror.is_some(), "mirror", "mirroring (`mirror`)"),
                    (!r.mirrors.is_empty(), "mirrors", "mirroring (`mirrors`)"),
                    (
                        r.mirror_percentage.is_some(),
                        "mirrorPercentage",
                        "`mirrorPercentage`",
                    ),
                    (r.cors_policy.is_some(), "corsPolicy", "`corsPolicy`"),
                    (
                        r.headers.is_some(),
                        "headers",
                        "header manipulation (`headers`)",
                    ),
                    (
                        r.delegate.is_some(),
                        "delegate",
                        "delegation (`delegate`); the rule is skipped",
                    ),
                ];
                for (present, name, what) in checks {
                    if present {
                        warn(ctx, f(name), what);
                    }
                }
                if r.mirror_percent.is_some() {
                    warn(ctx, f("mirrorPercent"), "`mirrorPercent`");
                }
                for (j, d) in r.route.iter().enumerate() {
                    if d.headers.is_some() {
                        warn(
                            ctx,
                            f(&format!("route[{j}].headers")),
                            "per-destination `headers`",
                        );
                    }
                }
                for (j, m) in r.matches.iter().enumerate() {
                    if m.stat_prefix.is_some() {
                        warn(ctx, f(&format!("match[{j}].statPrefix")), "`statPrefix`");
                    }
                }
            }
        }
        Spec::DestinationRule(dr) => {
            if dr.traffic_policy.is_some() {
                warn(
                    ctx,
                    "spec.trafficPolicy".into(),
                    "`trafficPolicy` (load balancing, connection pool, outlier detection, TLS)",
                );
            }
            for (i, s) in dr.subsets.iter().enumerate() {
                if s.traffic_policy.is_some() {
                    warn(
                        ctx,
                        format!("spec.subsets[{i}].trafficPolicy"),
                        "subset `trafficPolicy`",
                    );
                }
            }
            if !dr.export_to.is_empty() {
                warn(ctx, "spec.exportTo".into(), "`exportTo`");
            }
            if dr.workload_selector.is_some() {
                warn(ctx, "spec.workloadSelector".into(), "`workloadSelector`");
            }
        }
        Spec::Gateway(gw) => {
            for (i, s) in gw.servers.iter().enumerate() {
                if s.tls.is_some() {
                    warn(
                        ctx,
                        format!("spec.servers[{i}].tls"),
                        "gateway `tls` (HTTPS termination, httpsRedirect)",
                    );
                }
                if s.bind.is_some() {
                    warn(ctx, format!("spec.servers[{i}].bind"), "server `bind`");
                }
            }
        }
        Spec::ServiceEntry(se) => {
            if !se.export_to.is_empty() {
                warn(ctx, "spec.exportTo".into(), "`exportTo`");
            }
            if !se.subject_alt_names.is_empty() {
                warn(ctx, "spec.subjectAltNames".into(), "`subjectAltNames`");
            }
            if matches!(se.resolution.as_deref(), None | Some("NONE"))
                && se.endpoints.is_empty()
                && se.workload_selector.is_none()
            {
                warn(
                    ctx,
                    "spec.resolution".into(),
                    "resolution NONE (forwarding to the original destination)",
                );
            }
            if se.resolution.as_deref() == Some("DYNAMIC_DNS") {
                warn(ctx, "spec.resolution".into(), "resolution DYNAMIC_DNS");
            }
        }
        Spec::WorkloadEntry(_) => {}
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
        if e.network.is_some() {
            warn(ctx, format!("{base}.network"), "`network`");
        }
        if e.locality.is_some() {
            warn(ctx, format!("{base}.locality"), "`locality`");
        }
    }
}
