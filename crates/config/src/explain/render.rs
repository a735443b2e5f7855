//! `sluice explain`'s human-readable form: one block per decision, policies in one line each.

use std::fmt::Write as _;

use super::Explanation;

/// Human-readable rendering.
pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "listener      {}", e.listener);
    let _ = writeln!(
        out,
        "virtual host  {}",
        e.virtual_host.as_deref().unwrap_or("(none)")
    );
    if !e.rules.is_empty() {
        let _ = writeln!(out, "rules");
    }
    for r in &e.rules {
        let mark = match r.verdict {
            "matched" => "✓",
            "no match" => "✗",
            _ => "·",
        };
        let src = r
            .source
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {mark} {}{src}: {}", r.name, r.verdict);
        for why in &r.reasons {
            let _ = writeln!(out, "      {why}");
        }
    }
    let _ = writeln!(out, "outcome       {}", e.outcome);
    for d in &e.destinations {
        let state = if !d.exists {
            " — cluster does not exist: 503 NC"
        } else if d.endpoints.is_empty() {
            " — no endpoints: 503 UH"
        } else {
            ""
        };
        let _ = writeln!(out, "  {:>5.1}%  {}{state}", d.share_percent, d.cluster);
        for ep in &d.endpoints {
            let labels: Vec<String> = ep.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "           {} weight {} [{}]",
                ep.address,
                ep.weight,
                labels.join(", ")
            );
        }
        if let Some(p) = &d.policy {
            let _ = writeln!(out, "           {}", cluster_summary(p));
        }
    }
    if let Some(p) = &e.policy {
        let _ = writeln!(out, "policies      {}", route_summary(p));
    }
    out
}

fn retry_conditions(on: &crate::policy::RetryOn) -> String {
    let names = [
        (on.five_xx, "5xx"),
        (on.gateway_error, "gateway-error"),
        (on.reset, "reset"),
        (on.reset_before_request, "reset-before-request"),
        (on.connect_failure, "connect-failure"),
        (on.retriable_4xx, "retriable-4xx"),
        (on.refused_stream, "refused-stream"),
        (on.retriable_status_codes, "retriable-status-codes"),
        (on.grpc_cancelled, "cancelled"),
        (on.grpc_deadline_exceeded, "deadline-exceeded"),
        (on.grpc_internal, "internal"),
        (on.grpc_resource_exhausted, "resource-exhausted"),
        (on.grpc_unavailable, "unavailable"),
    ];
    names
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// One line per route policy: only what is set.
fn route_summary(p: &crate::policy::RoutePolicy) -> String {
    let mut parts = vec![match p.timeout {
        Some(t) => format!("timeout {t:?}"),
        None => "no timeout".into(),
    }];
    parts.push(match &p.retry {
        Some(r) => {
            let mut s = format!(
                "{} retries on {}",
                r.num_retries,
                retry_conditions(&r.retry_on)
            );
            if !r.retriable_status_codes.is_empty() {
                let _ = write!(s, " {:?}", r.retriable_status_codes);
            }
            if let Some(t) = r.per_try_timeout {
                let _ = write!(s, ", per try {t:?}");
            }
            s
        }
        None => "no retries".into(),
    });
    if let Some(f) = &p.fault {
        if let Some(d) = f.delay {
            parts.push(format!("delay {d:?} for {}%", f.delay_percent));
        }
        if let Some(a) = f.abort {
            parts.push(format!("abort {a:?} for {}%", f.abort_percent));
        }
    }
    for m in &p.mirrors {
        parts.push(format!(
            "mirror {}% to {}",
            m.percentage, m.destination.cluster_name
        ));
    }
    if let Some(rw) = &p.rewrite {
        parts.push(format!(
            "rewrite {}",
            serde_json::to_string(rw).unwrap_or_default()
        ));
    }
    if !p.headers().is_empty() {
        parts.push("header operations".into());
    }
    if p.cors.is_some() {
        parts.push("CORS".into());
    }
    parts.join("; ")
}

/// One line per cluster policy: the balancer and any limit or ejection that is set.
fn cluster_summary(p: &crate::policy::ClusterPolicy) -> String {
    let lb = serde_json::to_string(&p.lb).unwrap_or_default();
    let mut parts = vec![format!("lb {}", lb.trim_matches('"'))];
    let d = crate::policy::PoolLimits::default();
    let limits = [
        ("maxConnections", p.pool.max_connections, d.max_connections),
        (
            "pending",
            p.pool.max_pending_requests,
            d.max_pending_requests,
        ),
        ("maxRequests", p.pool.max_requests, d.max_requests),
        ("maxRetries", p.pool.max_retries, d.max_retries),
    ];
    for (name, v, default) in limits {
        if v != default {
            parts.push(format!("{name} {v}"));
        }
    }
    if let Some(o) = &p.outlier {
        parts.push(format!(
            "eject after {} 5xx / {} gateway errors for {:?}",
            o.consecutive_5xx, o.consecutive_gateway_errors, o.base_ejection_time
        ));
    }
    parts.join("; ")
}
