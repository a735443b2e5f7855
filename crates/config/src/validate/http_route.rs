//! Webhook/CRD validation of one VirtualService `HTTPRoute` and the destinations shared with TCP/TLS routes.

use sluice_model::location::{push_index, push_key};
use sluice_model::{
    CorsPolicy, Destination, FaultAbort, FaultDelay, HttpDirectResponse, HttpFaultInjection, HttpMatchRequest,
    HttpRedirect, HttpRetry, HttpRewrite, HttpRoute, Percent,
};

use super::common::{
    check_destination, check_duration, check_enum, check_fault_percent, check_gateway_names, check_headers,
    check_labels, check_match_header_name, check_percent, check_port, check_regex, check_string_match, is_token,
};
use super::Ctx;
use crate::duration::parse_istio_duration;
use crate::host::is_dns1123_label;

const RETRY_ON: [&str; 16] = [
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

const GRPC_STATUSES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

const CORS_METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

/// Validates one HTTP rule at `field` (`spec.http[i]`); `in_delegate` when the VS has no hosts.
pub(super) fn validate_http_route(ctx: &mut Ctx<'_>, field: &str, r: &HttpRoute, in_delegate: bool) {
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
        ctx.warn(
            f("mirrorPercent"),
            "mirrorPercent is deprecated: use mirrorPercentage {value: <0-100>}",
        );
    }
    if let Some(p) = &r.mirror_percentage {
        check_percent(ctx, &push_key(&f("mirrorPercentage"), "value"), "mirrorPercentage", p.value);
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
            check_percent(ctx, &push_key(&push_key(&path, "percentage"), "value"), "mirror percentage", p.value);
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
    let dests: Vec<(Option<&Destination>, Option<i32>)> =
        r.route.iter().map(|d| (d.destination.as_ref(), d.weight)).collect();
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
            ctx.error(f("redirect"), "a rule with `delegate` cannot also have `redirect`");
        }
        if !r.route.is_empty() {
            ctx.error(f("route"), "a rule with `delegate` cannot also have `route`");
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
        conflict(ctx, "directResponse", r.direct_response.is_some(), "redirect");
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
        ctx.error(f("mirrors"), "`mirror` and `mirrors` cannot both be set: move `mirror` into `mirrors`");
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
    for (key, sm) in [("scheme", &m.scheme), ("method", &m.method), ("authority", &m.authority)] {
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
                format!("invalid sourceNamespace `{ns}`: must be a namespace name (DNS-1123 label)"),
            );
        }
    }
}

/// Checks weighted destinations (HTTP, TCP and TLS routes alike).
pub(super) fn check_route_destinations(ctx: &mut Ctx<'_>, field: &str, dests: &[(Option<&Destination>, Option<i32>)]) {
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

fn check_redirect(ctx: &mut Ctx<'_>, field: &str, r: &HttpRedirect, matches: &[HttpMatchRequest]) {
    let f = |k: &str| push_key(field, k);
    let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    if set(&r.uri) && set(&r.prefix_rewrite) {
        ctx.error(f("prefixRewrite"), "redirect may set only one of `uri` and `prefixRewrite`");
    }
    if set(&r.prefix_rewrite)
        && matches
            .iter()
            .any(|m| m.uri.as_ref().is_some_and(|u| u.prefix.is_none()))
    {
        ctx.error(
            f("prefixRewrite"),
            "redirect prefixRewrite requires every `uri` match of the rule to be a `prefix` match",
        );
    }
    if r.port.is_some() && r.derive_port.is_some() {
        ctx.error(f("derivePort"), "redirect may set only one of `port` and `derivePort`");
    }
    check_enum(
        ctx,
        &f("derivePort"),
        "redirect.derivePort",
        r.derive_port.as_deref(),
        &["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"],
    );
    let has_port = r.port.is_some() || r.derive_port.is_some();
    if !set(&r.uri) && !set(&r.prefix_rewrite) && !set(&r.authority) && !set(&r.scheme) && !has_port {
        ctx.error(
            field,
            "redirect must set at least one of uri, prefixRewrite, authority, scheme or port",
        );
    }
    if let Some(code) = r.redirect_code.filter(|c| *c != 0) {
        if !(300..=399).contains(&code) {
            ctx.error(
                f("redirectCode"),
                format!("invalid redirectCode {code}: must be a 3xx code (301, 302, 303, 307 or 308)"),
            );
        } else if ![301, 302, 303, 307, 308].contains(&code) {
            ctx.warn(
                f("redirectCode"),
                format!("redirectCode {code} cannot be expressed by the proxy: use 301, 302, 303, 307 or 308"),
            );
        }
    }
    if let Some(s) = r.scheme.as_deref().filter(|s| !s.is_empty()) {
        if s != "http" && s != "https" {
            ctx.error(
                f("scheme"),
                format!("invalid redirect scheme `{s}`: must be `http` or `https`"),
            );
        }
    }
    if let Some(p) = r.port.filter(|p| *p > 0) {
        check_port(ctx, &f("port"), "redirect port", u64::from(p));
    }
}

fn check_direct_response(ctx: &mut Ctx<'_>, field: &str, d: &HttpDirectResponse) {
    let status = d.status.unwrap_or(0);
    if !(200..=600).contains(&status) {
        ctx.error(
            push_key(field, "status"),
            format!("invalid directResponse status {status}: must be between 200 and 599"),
        );
    }
    let Some(body) = &d.body else { return };
    let body_path = push_key(field, "body");
    if body.string.is_some() && body.bytes.is_some() {
        ctx.error(&body_path, "directResponse.body may set only one of `string` and `bytes`");
        return;
    }
    let size = if let Some(s) = &body.string {
        s.len()
    } else if let Some(b) = &body.bytes {
        use base64::Engine as _;
        match base64::engine::general_purpose::STANDARD.decode(b.trim()) {
            Ok(v) => v.len(),
            Err(e) => {
                ctx.error(
                    push_key(&body_path, "bytes"),
                    format!("directResponse.body.bytes is not valid base64: {e}"),
                );
                return;
            }
        }
    } else {
        0
    };
    const KIB: usize = 1024;
    if size > 1024 * KIB {
        ctx.error(
            &body_path,
            format!("directResponse body is {size} bytes; at most 1 MiB is allowed"),
        );
    } else if size > 100 * KIB {
        ctx.warn(
            &body_path,
            format!("directResponse body is {size} bytes; bodies over 100 KiB may impact control-plane performance"),
        );
    }
}

fn check_retries(ctx: &mut Ctx<'_>, field: &str, r: &HttpRetry) {
    let f = |k: &str| push_key(field, k);
    let attempts = r.attempts.unwrap_or(0);
    if attempts < 0 {
        ctx.error(
            f("attempts"),
            format!("invalid retries.attempts {attempts}: must be 0 or more"),
        );
    }
    let retry_on = r.retry_on.as_deref().filter(|s| !s.is_empty());
    if attempts == 0 {
        let set: Vec<&str> = [
            ("perTryTimeout", r.per_try_timeout.is_some()),
            ("retryOn", retry_on.is_some()),
            ("retryRemoteLocalities", r.retry_remote_localities.is_some()),
        ]
        .iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
        if !set.is_empty() {
            ctx.error(
                f("attempts"),
                format!(
                    "retries.attempts is {} which disables retries, but {} is set: set attempts > 0 or remove it",
                    if r.attempts.is_some() { "0" } else { "unset (0)" },
                    set.join(", ")
                ),
            );
        }
    }
    check_duration(ctx, &f("perTryTimeout"), "retries.perTryTimeout", r.per_try_timeout.as_deref());
    if let Some(on) = retry_on {
        for token in on.split(',') {
            let status_ok = token.parse::<u16>().is_ok_and(is_known_http_status);
            if !status_ok && !RETRY_ON.contains(&token) {
                ctx.error(
                    f("retryOn"),
                    format!(
                        "invalid retryOn condition `{token}` (comma-separated, no spaces): must be an HTTP status code or one of {}",
                        RETRY_ON.join(", ")
                    ),
                );
            }
        }
    }
    check_duration(ctx, &f("backoff"), "retries.backoff", r.backoff.as_deref());
}

/// Go's `http.StatusText` list, which Istio uses to accept numeric retryOn entries.
fn is_known_http_status(c: u16) -> bool {
    matches!(c, 100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451 | 500..=508 | 510 | 511)
}

fn check_rewrite(ctx: &mut Ctx<'_>, field: &str, r: &HttpRewrite) {
    let uri = r.uri.as_deref().is_some_and(|s| !s.is_empty());
    let authority = r.authority.as_deref().is_some_and(|s| !s.is_empty());
    if uri && r.uri_regex_rewrite.is_some() {
        ctx.error(
            push_key(field, "uriRegexRewrite"),
            "rewrite may set only one of `uri` and `uriRegexRewrite`",
        );
    }
    if !uri && !authority && r.uri_regex_rewrite.is_none() {
        ctx.error(field, "rewrite must set at least one of uri, uriRegexRewrite or authority");
    }
    if let Some(rr) = &r.uri_regex_rewrite {
        let path = push_key(field, "uriRegexRewrite");
        match (rr.pattern.as_deref().unwrap_or(""), rr.rewrite.as_deref().unwrap_or("")) {
            ("", _) => ctx.error(&path, "uriRegexRewrite needs both `match` and `rewrite`; `match` is missing"),
            (_, "") => ctx.error(&path, "uriRegexRewrite needs both `match` and `rewrite`; `rewrite` is missing"),
            (pattern, _) => {
                if let Err(e) = check_regex(pattern) {
                    ctx.error(push_key(&path, "match"), e);
                }
            }
        }
    }
}

/// The authority may be rewritten in one place only: `rewrite.authority` or a request Host header op.
fn check_authority_rewrite(ctx: &mut Ctx<'_>, field: &str, r: &HttpRoute) {
    let mut current = r.rewrite.as_ref().and_then(|rw| rw.authority.clone()).filter(|a| !a.is_empty());
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

fn check_fault(ctx: &mut Ctx<'_>, field: &str, fault: &HttpFaultInjection) {
    if fault.abort.is_none() && fault.delay.is_none() {
        ctx.error(field, "fault must set `abort` and/or `delay`");
    }
    if let Some(a) = &fault.abort {
        check_abort(ctx, &push_key(field, "abort"), a);
    }
    if let Some(d) = &fault.delay {
        check_delay(ctx, &push_key(field, "delay"), d);
    }
}

fn check_fault_percentage(ctx: &mut Ctx<'_>, field: &str, what: &str, p: Option<&Percent>, fallback: bool) {
    match p {
        Some(p) => check_fault_percent(
            ctx,
            &push_key(&push_key(field, "percentage"), "value"),
            &format!("{what}.percentage"),
            p.value,
        ),
        None if !fallback => ctx.warn(
            field,
            format!("{what} has no `percentage`, so it applies to 0% of requests: add percentage {{value: 100}}"),
        ),
        None => {}
    }
}

fn check_abort(ctx: &mut Ctx<'_>, field: &str, a: &FaultAbort) {
    let f = |k: &str| push_key(field, k);
    check_fault_percentage(ctx, field, "fault.abort", a.percentage.as_ref(), false);
    let kinds = [a.http_status.is_some(), a.grpc_status.is_some(), a.http2_error.is_some()];
    if kinds.iter().filter(|k| **k).count() > 1 {
        ctx.error(field, "fault.abort may set only one of httpStatus, grpcStatus and http2Error");
        return;
    }
    if let Some(s) = a.http_status {
        if !(200..=600).contains(&s) {
            ctx.error(
                f("httpStatus"),
                format!("invalid fault.abort.httpStatus {s}: must be between 200 and 599"),
            );
        }
    } else if let Some(g) = &a.grpc_status {
        if !GRPC_STATUSES.contains(&g.as_str()) {
            ctx.error(
                f("grpcStatus"),
                format!("invalid fault.abort.grpcStatus `{g}`: must be one of {}", GRPC_STATUSES.join(", ")),
            );
        }
    } else if a.http2_error.is_some() {
        ctx.error(
            f("http2Error"),
            "fault.abort.http2Error is not supported by Istio: use httpStatus or grpcStatus",
        );
    } else {
        ctx.warn(
            field,
            "fault.abort has no httpStatus or grpcStatus, so nothing is injected",
        );
    }
}

fn check_delay(ctx: &mut Ctx<'_>, field: &str, d: &FaultDelay) {
    let f = |k: &str| push_key(field, k);
    check_fault_percentage(ctx, field, "fault.delay", d.percentage.as_ref(), d.percent.is_some());
    if let Some(p) = d.percent {
        let range = if (0..=100).contains(&p) {
            String::new()
        } else {
            format!(" ({p} is outside 0..100)")
        };
        ctx.warn(
            f("percent"),
            format!("fault.delay.percent is deprecated{range}: use percentage {{value: <0-100>}}"),
        );
    }
    if d.fixed_delay.is_some() && d.exponential_delay.is_some() {
        ctx.error(field, "fault.delay may set only one of fixedDelay and exponentialDelay");
        return;
    }
    check_duration(ctx, &f("fixedDelay"), "fault.delay.fixedDelay", d.fixed_delay.as_deref());
    if d.exponential_delay.is_some() {
        ctx.error(
            f("exponentialDelay"),
            "fault.delay.exponentialDelay is not supported by Istio: use fixedDelay",
        );
    } else if d.fixed_delay.is_none() {
        ctx.warn(field, "fault.delay has no fixedDelay, so nothing is delayed");
    }
}

fn check_cors(ctx: &mut Ctx<'_>, field: &str, c: &CorsPolicy) {
    let f = |k: &str| push_key(field, k);
    for (i, o) in c.allow_origins.iter().enumerate() {
        let path = push_index(&f("allowOrigins"), i);
        let value = o.exact.as_deref().or(o.prefix.as_deref()).or(o.regex.as_deref());
        if value.is_none_or(str::is_empty) {
            ctx.error(&path, "corsPolicy.allowOrigins entries need a non-empty exact, prefix or regex");
        } else {
            check_string_match(ctx, &path, o, false);
        }
    }
    if !c.allow_origin.is_empty() {
        ctx.warn(
            f("allowOrigin"),
            "corsPolicy.allowOrigin is deprecated: use allowOrigins with {exact: ...} entries",
        );
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&m.as_str()) {
            ctx.error(
                push_index(&f("allowMethods"), i),
                format!("invalid CORS method `{m}`: must be one of {}", CORS_METHODS.join(", ")),
            );
        }
    }
    for key in ["allowHeaders", "exposeHeaders"] {
        let list = if key == "allowHeaders" { &c.allow_headers } else { &c.expose_headers };
        for (i, h) in list.iter().enumerate() {
            if h != "*" && !is_token(h) {
                ctx.error(
                    push_index(&f(key), i),
                    format!("invalid header name `{h}` in corsPolicy.{key}: must be `*` or letters, digits and !#$%&'*+-.^_`|~"),
                );
            }
        }
    }
    if let Some(age) = c.max_age.as_deref() {
        match parse_istio_duration(age) {
            Err(e) => ctx.error(f("maxAge"), format!("invalid corsPolicy.maxAge: {e}")),
            Ok(d) if d.subsec_nanos() != 0 => ctx.error(
                f("maxAge"),
                format!("invalid corsPolicy.maxAge `{age}`: must be a whole number of seconds"),
            ),
            Ok(_) => {}
        }
    }
    check_enum(
        ctx,
        &f("unmatchedPreflights"),
        "corsPolicy.unmatchedPreflights",
        c.unmatched_preflights.as_deref(),
        &["UNSPECIFIED", "FORWARD", "IGNORE"],
    );
}
