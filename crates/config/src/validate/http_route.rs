//! Webhook/CRD validation of one VirtualService `HTTPRoute`: actions, matches, destinations.

use sluice_model::location::{push_index, push_key};
use sluice_model::{Destination, HttpMatchRequest, HttpRoute};

use super::common::{
    check_destination, check_duration, check_gateway_names, check_labels, check_percent,
    check_port, check_string_match,
};
use super::headers::{check_headers, check_match_header_name};
use super::http_policy::{
    check_cors, check_direct_response, check_fault, check_redirect, check_retries, check_rewrite,
};
use super::Ctx;
use crate::host::is_dns1123_label;

/// Validates one HTTP rule at `field` (`spec.http[i]`); `in_delegate` when the VS has no hosts.
pub(super) fn validate_http_route(
    ctx: &mut Ctx<'_>,
    field: &str,
    r: &HttpRoute,
    in_delegate: bool,
) {
    let f = |k: &str| push_key(field, k);
    check_actions(ctx, field, r, in_delegate);
    for (j, m) in r.matches.iter().enumerate() {
        check_match(ctx, &push_index(&f("match"), j), m);
    }
    if let Some(h) = &r.headers {
        check_headers(ctx, &f("headers"), h);
    }
    if let Some(c) = &r.cors_policy {
        check_cors(ctx, &f("corsPolicy"), c);
    }
    if let Some(fault) = &r.fault {
        check_fault(ctx, &f("fault"), fault);
    }
    if let Some(p) = r.mirror_percent {
        if p > 100 {
            ctx.error(
                f("mirrorPercent"),
                format!("invalid mirrorPercent {p}: must be at most 100"),
            );
        }
        ctx.deprecated(
            f("mirrorPercent"),
            "mirrorPercent is deprecated: use mirrorPercentage {value: <0-100>}",
        );
    }
    if let Some(p) = &r.mirror_percentage {
        check_percent(
            ctx,
            &push_key(&f("mirrorPercentage"), "value"),
            "mirrorPercentage",
            p.value,
        );
    }
    if let Some(m) = &r.mirror {
        check_destination(ctx, &f("mirror"), m);
    }
    for (k, m) in r.mirrors.iter().enumerate() {
        let path = push_index(&f("mirrors"), k);
        match &m.destination {
            None => ctx.error(&path, "mirrors[].destination is required"),
            Some(d) => check_destination(ctx, &push_key(&path, "destination"), d),
        }
        if let Some(p) = &m.percentage {
            check_percent(
                ctx,
                &push_key(&push_key(&path, "percentage"), "value"),
                "mirror percentage",
                p.value,
            );
        }
    }
    if let Some(rd) = &r.redirect {
        check_redirect(ctx, &f("redirect"), rd, &r.matches);
    }
    if let Some(dr) = &r.direct_response {
        check_direct_response(ctx, &f("directResponse"), dr);
    }
    if let Some(rt) = &r.retries {
        check_retries(ctx, &f("retries"), rt);
    }
    if let Some(rw) = &r.rewrite {
        check_rewrite(ctx, &f("rewrite"), rw);
    }
    check_authority_rewrite(ctx, field, r);
    let dests: Vec<(Option<&Destination>, Option<i32>)> = r
        .route
        .iter()
        .map(|d| (d.destination.as_ref(), d.weight))
        .collect();
    check_route_destinations(ctx, &f("route"), &dests);
    for (k, d) in r.route.iter().enumerate() {
        if let Some(h) = &d.headers {
            check_headers(ctx, &push_key(&push_index(&f("route"), k), "headers"), h);
        }
    }
    check_duration(ctx, &f("timeout"), "timeout", r.timeout.as_deref());
}

/// One rule has one action: route, redirect, directResponse, or delegate.
fn check_actions(ctx: &mut Ctx<'_>, field: &str, r: &HttpRoute, in_delegate: bool) {
    let f = |k: &str| push_key(field, k);
    if r.delegate.is_some() && !in_delegate {
        if r.redirect.is_some() {
            ctx.error(
                f("redirect"),
                "a rule with `delegate` cannot also have `redirect`",
            );
        }
        if !r.route.is_empty() {
            ctx.error(
                f("route"),
                "a rule with `delegate` cannot also have `route`",
            );
        }
        return;
    }
    if r.delegate.is_some() {
        ctx.error(
            f("delegate"),
            "a delegate VirtualService (one without hosts) cannot delegate again: only one level of delegation is allowed",
        );
    }
    let conflict = |ctx: &mut Ctx<'_>, key: &str, present: bool, action: &str| {
        if present {
            ctx.error(
                push_key(field, key),
                format!("a rule with `{action}` cannot also have `{key}`"),
            );
        }
    };
    if r.redirect.is_some() {
        conflict(ctx, "route", !r.route.is_empty(), "redirect");
        conflict(ctx, "fault", r.fault.is_some(), "redirect");
        conflict(ctx, "rewrite", r.rewrite.is_some(), "redirect");
        conflict(
            ctx,
            "directResponse",
            r.direct_response.is_some(),
            "redirect",
        );
    } else if r.direct_response.is_some() {
        conflict(ctx, "route", !r.route.is_empty(), "directResponse");
        conflict(ctx, "fault", r.fault.is_some(), "directResponse");
        conflict(ctx, "rewrite", r.rewrite.is_some(), "directResponse");
    } else if r.route.is_empty() && r.delegate.is_none() {
        ctx.error(
            field,
            "an HTTP rule needs `route`, `redirect` or `directResponse` (or `delegate`)",
        );
    }
    if r.mirror.is_some() && !r.mirrors.is_empty() {
        ctx.error(
            f("mirrors"),
            "`mirror` and `mirrors` cannot both be set: move `mirror` into `mirrors`",
        );
    }
}

fn check_match(ctx: &mut Ctx<'_>, field: &str, m: &HttpMatchRequest) {
    let f = |k: &str| push_key(field, k);
    for (name, sm) in &m.headers {
        let path = push_key(&f("headers"), name);
        check_match_header_name(ctx, &path, name);
        check_string_match(ctx, &path, sm, false);
    }
    for (name, sm) in &m.without_headers {
        let path = push_key(&f("withoutHeaders"), name);
        check_match_header_name(ctx, &path, name);
        // `regex: "*"` is not RE2 but Istio turns it into a presence test for withoutHeaders.
        if sm.regex.as_deref() != Some("*") {
            check_string_match(ctx, &path, sm, false);
        }
    }
    if let Some(u) = &m.uri {
        check_string_match(ctx, &f("uri"), u, true);
    }
    for (key, sm) in [
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            check_string_match(ctx, &f(key), sm, false);
        }
    }
    for (name, sm) in &m.query_params {
        check_string_match(ctx, &push_key(&f("queryParams"), name), sm, false);
    }
    if let Some(p) = m.port.filter(|p| *p != 0) {
        check_port(ctx, &f("port"), "match port", u64::from(p));
    }
    check_labels(ctx, &f("sourceLabels"), &m.source_labels);
    check_gateway_names(ctx, &f("gateways"), &m.gateways);
    if let Some(ns) = m.source_namespace.as_deref().filter(|s| !s.is_empty()) {
        if !is_dns1123_label(ns) {
            ctx.error(
                f("sourceNamespace"),
                format!(
                    "invalid sourceNamespace `{ns}`: must be a namespace name (DNS-1123 label)"
                ),
            );
        }
    }
}

/// Checks weighted destinations (HTTP, TCP and TLS routes alike).
pub(super) fn check_route_destinations(
    ctx: &mut Ctx<'_>,
    field: &str,
    dests: &[(Option<&Destination>, Option<i32>)],
) {
    let mut total: i64 = 0;
    for (k, (d, w)) in dests.iter().enumerate() {
        let path = push_index(field, k);
        match d {
            None => ctx.error(push_key(&path, "destination"), "destination is required"),
            Some(d) => check_destination(ctx, &push_key(&path, "destination"), d),
        }
        let w = w.unwrap_or(0);
        if w < 0 {
            ctx.error(
                push_key(&path, "weight"),
                format!("invalid weight {w}: weights must be 0 or more"),
            );
        } else {
            total += i64::from(w);
        }
    }
    if dests.len() > 1 && total == 0 {
        ctx.error(
            field,
            format!(
                "the {} destinations have a total weight of 0: give at least one a positive weight (weights are relative and need not sum to 100)",
                dests.len()
            ),
        );
    }
}

/// The authority may be rewritten in one place only: `rewrite.authority` or a request Host header op.
fn check_authority_rewrite(ctx: &mut Ctx<'_>, field: &str, r: &HttpRoute) {
    let mut current = r
        .rewrite
        .as_ref()
        .and_then(|rw| rw.authority.clone())
        .filter(|a| !a.is_empty());
    let Some(req) = r.headers.as_ref().and_then(|h| h.request.as_ref()) else {
        return;
    };
    let base = push_key(&push_key(field, "headers"), "request");
    for (op, map) in [("set", &req.set), ("add", &req.add)] {
        for (k, v) in map {
            if !(k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case(":authority")) {
                continue;
            }
            if let Some(have) = &current {
                ctx.error(
                    push_key(&push_key(&base, op), k),
                    format!("the authority is already rewritten to `{have}`; it cannot also be set to `{v}` here"),
                );
                return;
            }
            current = Some(v.clone());
        }
    }
}
