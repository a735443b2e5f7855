//! VirtualService rule fields → [`RoutePolicy`]: timeout, retries (Istio's default when unset),
//! fault, mirrors, rewrite, header operations, CORS.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use sluice_model::{
    codes, HeaderOperations, Headers, HttpFaultInjection, HttpRetry, HttpRoute, RegexRewrite,
    Resource, Severity, Spec,
};

use super::http_route::RuleContext;
use super::Compiler;
use crate::duration::{parse_go_duration, parse_istio_duration};
use crate::matcher::StrMatch;
use crate::policy::{
    AbortKind, CorsPolicy, FaultPolicy, HeaderOps, HeaderPolicy, MirrorPolicy, RetryOn,
    RetryPolicy, Rewrite, RoutePolicy,
};

/// gRPC status names in code order (the index is the code), as Istio accepts them in `grpcStatus`.
const GRPC_CODES: [&str; 17] = [
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

impl Compiler<'_> {
    /// The policy of one rule.
    pub(crate) fn route_policy(
        &mut self,
        r: &Resource,
        rule_index: usize,
        rule: &HttpRoute,
        ctx: RuleContext<'_>,
    ) -> Arc<RoutePolicy> {
        // A rule compiled for several domains, gateways and the mesh has one policy: shared,
        // it is built and kept once (a third of the compiled routes' memory at 10,000
        // services). Only rules the object holds are keyed by address: a merged delegate rule
        // is a temporary whose address a later one may take.
        let owned = matches!(&r.spec, Spec::VirtualService(vs)
            if vs.http.get(rule_index).is_some_and(|x| std::ptr::eq(x, rule)));
        let port = if rule.mirror.is_some() || !rule.mirrors.is_empty() {
            ctx.port
        } else {
            0
        };
        let key = (std::ptr::from_ref(rule) as usize, port);
        if owned {
            if let Some(p) = self.policies.get(&key) {
                // The unit taking it depends on its mirrors as the one that built it does.
                let mut deps = self.deps.borrow_mut();
                deps.extend(
                    p.mirrors
                        .iter()
                        .map(|m| super::reuse::name_hash(&m.destination.host.to_ascii_lowercase())),
                );
                return Arc::clone(p);
            }
        }
        let policy = self.build_route_policy(r, rule_index, rule, ctx);
        if owned {
            self.policies.insert(key, Arc::clone(&policy));
        }
        policy
    }

    fn build_route_policy(
        &mut self,
        r: &Resource,
        rule_index: usize,
        rule: &HttpRoute,
        ctx: RuleContext<'_>,
    ) -> Arc<RoutePolicy> {
        let rewrite = self.rewrite(r, rule_index, rule);
        self.shared_if_plain(RoutePolicy {
            // Validation rejected malformed durations, so a parse failure cannot happen here.
            timeout: rule
                .timeout
                .as_deref()
                .and_then(|t| parse_istio_duration(t).ok()),
            retry: retry_policy(rule.retries.as_ref()),
            fault: rule.fault.as_deref().and_then(fault_policy).map(Box::new),
            mirrors: self.mirrors(rule, &r.metadata.namespace, ctx.port),
            rewrite: rewrite.map(Box::new),
            // At route level a Host header operation is already the authority rewrite above.
            headers: Some(HeaderPolicy {
                authority: None,
                ..header_policy(rule.headers.as_deref())
            })
            .filter(|h| !h.is_empty())
            .map(Box::new),
            cors: rule.cors_policy.as_ref().map(|c| Box::new(cors_policy(c))),
        })
    }

    /// The policy, shared with every other equal one when it sets only a timeout and retries:
    /// most rules do, with a handful of distinct values across thousands of services.
    fn shared_if_plain(&self, policy: RoutePolicy) -> Arc<RoutePolicy> {
        let plain = policy.fault.is_none()
            && policy.mirrors.is_empty()
            && policy.rewrite.is_none()
            && policy.headers.is_none()
            && policy.cors.is_none();
        if !plain {
            return Arc::new(policy);
        }
        let key = (policy.timeout, policy.retry.clone());
        Arc::clone(
            self.plain_policies
                .borrow_mut()
                .entry(key)
                .or_insert_with(|| Arc::new(policy)),
        )
    }

    /// The policy of the default route of a service without a VirtualService.
    pub(crate) fn default_route_policy(&self) -> Arc<RoutePolicy> {
        self.shared_if_plain(RoutePolicy {
            retry: Some(default_retry()),
            ..RoutePolicy::default()
        })
    }

    /// `mirror` (with `mirrorPercentage` or the deprecated `mirrorPercent`) and `mirrors[]`.
    fn mirrors(&self, rule: &HttpRoute, ns: &str, port: u16) -> Vec<MirrorPolicy> {
        let mut out = Vec::new();
        if let Some(dest) = rule.mirror.as_deref() {
            let percentage = match (&rule.mirror_percentage, rule.mirror_percent) {
                (Some(p), _) => p.value,
                (None, Some(p)) => f64::from(p),
                (None, None) => 100.0,
            };
            out.push((dest, percentage));
        }
        for m in &rule.mirrors {
            if let Some(dest) = &m.destination {
                out.push((dest, m.percentage.map_or(100.0, |p| p.value)));
            }
        }
        out.into_iter()
            // Istio emits no mirror policy at all for an explicit 0 %.
            .filter(|(_, p)| *p > 0.0)
            .map(|(dest, p)| MirrorPolicy {
                destination: self.resolve_destination(dest, ns, port, 100),
                percentage: p.min(100.0),
            })
            .collect()
    }

    /// `rewrite`, plus a request `host`/`:authority` header operation turned into an authority rewrite.
    fn rewrite(&mut self, r: &Resource, i: usize, rule: &HttpRoute) -> Option<Rewrite> {
        let rw = rule.rewrite.as_ref();
        let uri = rw.and_then(|w| w.uri.clone()).filter(|u| !u.is_empty());
        let uri_regex = match rw.and_then(|w| w.uri_regex_rewrite.as_ref()) {
            Some(rr) => match regex_rewrite(rr) {
                Ok(v) => v,
                Err(e) => {
                    // Validation rejects bad patterns; report rather than panic if one slips through.
                    let d = r.diag(
                        Severity::Error,
                        codes::SCHEMA_VALIDATION,
                        format!("spec.http[{i}].rewrite.uriRegexRewrite.match"),
                        format!("{e}; the regex rewrite is ignored"),
                    );
                    if !self.diagnostics.contains(&d) {
                        self.diagnostics.push(d);
                    }
                    None
                }
            },
            None => None,
        };
        let authority = rw
            .and_then(|w| w.authority.clone())
            .filter(|a| !a.is_empty())
            .or_else(|| host_header_authority(rule.headers.as_deref()));
        if uri.is_none() && uri_regex.is_none() && authority.is_none() {
            return None;
        }
        Some(Rewrite {
            uri,
            uri_regex,
            authority,
        })
    }
}

/// Istio's built-in retry policy (1.24+): 2 retries on connect failures, refused streams and
/// gRPC UNAVAILABLE/CANCELLED; `retriable-status-codes` without codes, so 503 is not retried.
pub(crate) fn default_retry() -> RetryPolicy {
    RetryPolicy {
        num_retries: 2,
        per_try_timeout: None,
        retry_on: default_retry_on(),
        retriable_status_codes: Vec::new(),
        avoid_previous_hosts: true,
        backoff_base: Duration::from_millis(25),
        retry_remote_localities: false,
    }
}

/// `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`.
fn default_retry_on() -> RetryOn {
    RetryOn {
        connect_failure: true,
        refused_stream: true,
        grpc_unavailable: true,
        grpc_cancelled: true,
        retriable_status_codes: true,
        ..RetryOn::default()
    }
}

/// Istio's `ConvertPolicy`: absent → default; `attempts` unset or 0 → none; else the default with
/// the fields that are set overriding it.
fn retry_policy(retries: Option<&HttpRetry>) -> Option<RetryPolicy> {
    let Some(r) = retries else {
        return Some(default_retry());
    };
    // `attempts` is a plain int32 in Istio: unset reads as 0, which disables retries.
    let attempts = u32::try_from(r.attempts.unwrap_or(0))
        .ok()
        .filter(|a| *a > 0)?;
    let mut p = default_retry();
    p.num_retries = attempts;
    if let Some(on) = r.retry_on.as_deref().filter(|s| !s.trim().is_empty()) {
        let (flags, codes) = parse_retry_on(on);
        p.retry_on = flags;
        p.retriable_status_codes = codes;
    }
    if let Some(t) = r
        .per_try_timeout
        .as_deref()
        .and_then(|t| parse_istio_duration(t).ok())
    {
        p.per_try_timeout = Some(t);
    }
    p.retry_remote_localities = r.retry_remote_localities == Some(true);
    if let Some(avoid) = r.retry_ignore_previous_hosts {
        p.avoid_previous_hosts = avoid;
    }
    if let Some(b) = r
        .backoff
        .as_deref()
        .and_then(|b| parse_istio_duration(b).ok())
    {
        p.backoff_base = b;
    }
    Some(p)
}

/// Parses a `retryOn` list: names become flags, integers become retriable status codes (and set
/// the `retriable-status-codes` flag, as Istio appends it). Unknown names were rejected by
/// validation and are skipped here.
pub(crate) fn parse_retry_on(list: &str) -> (RetryOn, Vec<u16>) {
    let mut on = RetryOn::default();
    let mut codes = Vec::new();
    for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if let Ok(code) = token.parse::<u16>() {
            codes.push(code);
            on.retriable_status_codes = true;
            continue;
        }
        match token {
            "5xx" => on.five_xx = true,
            "gateway-error" => on.gateway_error = true,
            "reset" => on.reset = true,
            "reset-before-request" => on.reset_before_request = true,
            "connect-failure" => on.connect_failure = true,
            "retriable-4xx" => on.retriable_4xx = true,
            "refused-stream" => on.refused_stream = true,
            "retriable-status-codes" => on.retriable_status_codes = true,
            "cancelled" => on.grpc_cancelled = true,
            "deadline-exceeded" => on.grpc_deadline_exceeded = true,
            "internal" => on.grpc_internal = true,
            "resource-exhausted" => on.grpc_resource_exhausted = true,
            "unavailable" => on.grpc_unavailable = true,
            "retriable-headers" => on.retriable_headers = true,
            "envoy-ratelimited" => on.envoy_ratelimited = true,
            "http3-post-connect-failure" => on.http3_post_connect_failure = true,
            _ => {}
        }
    }
    (on, codes)
}

/// A percentage clamped to 0–100 (validation already bounds it).
fn percent(v: f64) -> f64 {
    v.clamp(0.0, 100.0)
}

/// `fault`; `None` when it injects nothing expressible.
fn fault_policy(f: &HttpFaultInjection) -> Option<FaultPolicy> {
    let mut out = FaultPolicy::default();
    if let Some(d) = &f.delay {
        out.delay = d
            .fixed_delay
            .as_deref()
            .and_then(|t| parse_istio_duration(t).ok());
        // Absent `percentage` falls back to the deprecated integer `percent` (default 0: never).
        out.delay_percent = match &d.percentage {
            Some(p) => percent(p.value),
            None => percent(f64::from(d.percent.unwrap_or(0))),
        };
    }
    if let Some(a) = &f.abort {
        out.abort = match (&a.http_status, &a.grpc_status) {
            (Some(s), _) => u16::try_from(*s).ok().map(AbortKind::Http),
            (None, Some(name)) => grpc_code(name).map(AbortKind::Grpc),
            (None, None) => None,
        };
        // No `percent` fallback for aborts: absent means never.
        out.abort_percent = a.percentage.map_or(0.0, |p| percent(p.value));
    }
    (out.delay.is_some() || out.abort.is_some()).then_some(out)
}

/// The numeric code of an upper-case gRPC status name.
pub(crate) fn grpc_code(name: &str) -> Option<u32> {
    GRPC_CODES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| u32::try_from(i).ok())
}

/// Compiles `uriRegexRewrite`: the pattern is not anchored because Envoy substitutes every match
/// in the path; RE2 `\N` references become the `regex` crate's `${N}`.
fn regex_rewrite(rr: &RegexRewrite) -> Result<Option<(Regex, String)>, String> {
    let (Some(pattern), Some(rewrite)) = (rr.pattern.as_deref(), rr.rewrite.as_deref()) else {
        return Ok(None);
    };
    // Same acceptance rules as match regexes (non-empty, ≤1024, valid RE2)...
    crate::validate::compile_regex(pattern)?;
    // ...but compiled bare for substitution.
    let re = Regex::new(pattern).map_err(|e| format!("invalid RE2 regex `{pattern}`: {e}"))?;
    Ok(Some((re, substitution(rewrite))))
}

/// RE2 rewrite string → `regex` replacement: `\N` → `${N}`, `\\` → `\`, `$` → `$$` (literal).
pub(crate) fn substitution(rewrite: &str) -> String {
    let mut out = String::with_capacity(rewrite.len() + 4);
    let mut chars = rewrite.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    chars.next();
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// Whether a request header name is the authority (`host` or `:authority`, any case).
fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case(":authority")
}

/// The authority a request `set`/`add` of `host`/`:authority` rewrites to (set wins over add).
fn host_header_authority(headers: Option<&Headers>) -> Option<String> {
    let req = headers?.request.as_ref()?;
    let find = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .find(|(k, v)| is_authority(k) && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    find(&req.set).or_else(|| find(&req.add))
}

/// Compiles `headers` operations (route level or per destination).
pub(crate) fn header_policy(headers: Option<&Headers>) -> HeaderPolicy {
    let Some(h) = headers else {
        return HeaderPolicy::default();
    };
    // `host`/`:authority` in request set/add is an authority rewrite; set wins over add.
    let authority = h.request.as_ref().and_then(|r| {
        let find = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .find(|(k, _)| is_authority(k))
                .map(|(_, v)| v.clone())
        };
        find(&r.set).or_else(|| find(&r.add))
    });
    HeaderPolicy {
        authority,
        request: header_ops(h.request.as_ref(), true),
        response: header_ops(h.response.as_ref(), false),
    }
}

/// Lower-cases names and drops what the proxy must not touch: `:` pseudo-headers (Istio drops them
/// in translation) and, for requests, `host` (an authority rewrite instead).
fn header_ops(ops: Option<&HeaderOperations>, request: bool) -> HeaderOps {
    let Some(ops) = ops else {
        return HeaderOps::default();
    };
    let dropped = |name: &str| name.starts_with(':') || (request && is_authority(name));
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .filter(|(k, _)| !dropped(k))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect::<Vec<_>>()
    };
    HeaderOps {
        set: pairs(&ops.set),
        add: pairs(&ops.add),
        remove: ops
            .remove
            .iter()
            .filter(|k| !k.starts_with(':'))
            .map(|k| k.to_ascii_lowercase())
            .collect(),
    }
}

/// Compiles `corsPolicy`.
fn cors_policy(c: &sluice_model::CorsPolicy) -> CorsPolicy {
    let mut allow_origins: Vec<StrMatch> = c
        .allow_origins
        .iter()
        .filter_map(|m| StrMatch::compile(m).ok())
        .collect();
    allow_origins.extend(c.allow_origin.iter().map(|o| StrMatch::Exact(o.clone())));
    // Envoy allows every origin when a pattern matches the literal `*`.
    let allow_origins = allow_origins
        .into_iter()
        .map(|m| {
            if m.matches("*", false) {
                StrMatch::Present
            } else {
                m
            }
        })
        .collect();
    let join = |v: &[String]| (!v.is_empty()).then(|| v.join(","));
    CorsPolicy {
        allow_origins,
        allow_methods: join(&c.allow_methods),
        allow_headers: join(&c.allow_headers),
        expose_headers: join(&c.expose_headers),
        max_age_secs: c
            .max_age
            .as_deref()
            .and_then(|m| parse_go_duration(m).ok())
            .map(|d| d.as_secs()),
        allow_credentials: c.allow_credentials.unwrap_or(false),
        forward_unmatched_preflights: c.unmatched_preflights.as_deref() != Some("IGNORE"),
    }
}
