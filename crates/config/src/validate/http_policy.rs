//! Webhook/CRD validation of the optional parts of an `HTTPRoute`: redirect, direct response,
//! retries, rewrite, fault injection and CORS.

use sluice_model::location::{push_index, push_key};
use sluice_model::{
    CorsPolicy, FaultAbort, FaultDelay, HttpDirectResponse, HttpFaultInjection, HttpMatchRequest,
    HttpRedirect, HttpRetry, HttpRewrite, Percent,
};

use super::common::{
    check_duration, check_enum, check_fault_percent, check_port, check_regex, check_string_match,
};
use super::headers::is_token;
use super::Ctx;
use crate::duration::parse_istio_duration;

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

pub(super) fn check_redirect(
    ctx: &mut Ctx<'_>,
    field: &str,
    r: &HttpRedirect,
    matches: &[HttpMatchRequest],
) {
    let f = |k: &str| push_key(field, k);
    let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    if set(&r.uri) && set(&r.prefix_rewrite) {
        ctx.error(
            f("prefixRewrite"),
            "redirect may set only one of `uri` and `prefixRewrite`",
        );
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
        ctx.error(
            f("derivePort"),
            "redirect may set only one of `port` and `derivePort`",
        );
    }
    check_enum(
        ctx,
        &f("derivePort"),
        "redirect.derivePort",
        r.derive_port.as_deref(),
        &["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"],
    );
    let has_port = r.port.is_some() || r.derive_port.is_some();
    if !set(&r.uri) && !set(&r.prefix_rewrite) && !set(&r.authority) && !set(&r.scheme) && !has_port
    {
        ctx.error(
            field,
            "redirect must set at least one of uri, prefixRewrite, authority, scheme or port",
        );
    }
    if let Some(code) = r.redirect_code.filter(|c| *c != 0) {
        if !(300..=399).contains(&code) {
            ctx.error(
                f("redirectCode"),
                format!(
                    "invalid redirectCode {code}: must be a 3xx code (301, 302, 303, 307 or 308)"
                ),
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

pub(super) fn check_direct_response(ctx: &mut Ctx<'_>, field: &str, d: &HttpDirectResponse) {
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
        ctx.error(
            &body_path,
            "directResponse.body may set only one of `string` and `bytes`",
        );
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

pub(super) fn check_retries(ctx: &mut Ctx<'_>, field: &str, r: &HttpRetry) {
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
    check_duration(
        ctx,
        &f("perTryTimeout"),
        "retries.perTryTimeout",
        r.per_try_timeout.as_deref(),
    );
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

pub(super) fn check_rewrite(ctx: &mut Ctx<'_>, field: &str, r: &HttpRewrite) {
    let uri = r.uri.as_deref().is_some_and(|s| !s.is_empty());
    let authority = r.authority.as_deref().is_some_and(|s| !s.is_empty());
    if uri && r.uri_regex_rewrite.is_some() {
        ctx.error(
            push_key(field, "uriRegexRewrite"),
            "rewrite may set only one of `uri` and `uriRegexRewrite`",
        );
    }
    if !uri && !authority && r.uri_regex_rewrite.is_none() {
        ctx.error(
            field,
            "rewrite must set at least one of uri, uriRegexRewrite or authority",
        );
    }
    if let Some(rr) = &r.uri_regex_rewrite {
        let path = push_key(field, "uriRegexRewrite");
        match (
            rr.pattern.as_deref().unwrap_or(""),
            rr.rewrite.as_deref().unwrap_or(""),
        ) {
            ("", _) => ctx.error(
                &path,
                "uriRegexRewrite needs both `match` and `rewrite`; `match` is missing",
            ),
            (_, "") => ctx.error(
                &path,
                "uriRegexRewrite needs both `match` and `rewrite`; `rewrite` is missing",
            ),
            (pattern, _) => {
                if let Err(e) = check_regex(pattern) {
                    ctx.error(push_key(&path, "match"), e);
                }
            }
        }
    }
}

pub(super) fn check_fault(ctx: &mut Ctx<'_>, field: &str, fault: &HttpFaultInjection) {
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

fn check_fault_percentage(
    ctx: &mut Ctx<'_>,
    field: &str,
    what: &str,
    p: Option<&Percent>,
    fallback: bool,
) {
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
    let kinds = [
        a.http_status.is_some(),
        a.grpc_status.is_some(),
        a.http2_error.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() > 1 {
        ctx.error(
            field,
            "fault.abort may set only one of httpStatus, grpcStatus and http2Error",
        );
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
                format!(
                    "invalid fault.abort.grpcStatus `{g}`: must be one of {}",
                    GRPC_STATUSES.join(", ")
                ),
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
    check_fault_percentage(
        ctx,
        field,
        "fault.delay",
        d.percentage.as_ref(),
        d.percent.is_some(),
    );
    if let Some(p) = d.percent {
        let range = if (0..=100).contains(&p) {
            String::new()
        } else {
            format!(" ({p} is outside 0..100)")
        };
        ctx.deprecated(
            f("percent"),
            format!("fault.delay.percent is deprecated{range}: use percentage {{value: <0-100>}}"),
        );
    }
    if d.fixed_delay.is_some() && d.exponential_delay.is_some() {
        ctx.error(
            field,
            "fault.delay may set only one of fixedDelay and exponentialDelay",
        );
        return;
    }
    check_duration(
        ctx,
        &f("fixedDelay"),
        "fault.delay.fixedDelay",
        d.fixed_delay.as_deref(),
    );
    if d.exponential_delay.is_some() {
        ctx.error(
            f("exponentialDelay"),
            "fault.delay.exponentialDelay is not supported by Istio: use fixedDelay",
        );
    } else if d.fixed_delay.is_none() {
        ctx.warn(
            field,
            "fault.delay has no fixedDelay, so nothing is delayed",
        );
    }
}

pub(super) fn check_cors(ctx: &mut Ctx<'_>, field: &str, c: &CorsPolicy) {
    let f = |k: &str| push_key(field, k);
    for (i, o) in c.allow_origins.iter().enumerate() {
        let path = push_index(&f("allowOrigins"), i);
        let value = o
            .exact
            .as_deref()
            .or(o.prefix.as_deref())
            .or(o.regex.as_deref());
        if value.is_none_or(str::is_empty) {
            ctx.error(
                &path,
                "corsPolicy.allowOrigins entries need a non-empty exact, prefix or regex",
            );
        } else {
            check_string_match(ctx, &path, o, false);
        }
    }
    if !c.allow_origin.is_empty() {
        ctx.deprecated(
            f("allowOrigin"),
            "corsPolicy.allowOrigin is deprecated: use allowOrigins with {exact: ...} entries",
        );
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&m.as_str()) {
            ctx.error(
                push_index(&f("allowMethods"), i),
                format!(
                    "invalid CORS method `{m}`: must be one of {}",
                    CORS_METHODS.join(", ")
                ),
            );
        }
    }
    for key in ["allowHeaders", "exposeHeaders"] {
        let list = if key == "allowHeaders" {
            &c.allow_headers
        } else {
            &c.expose_headers
        };
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
