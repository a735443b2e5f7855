//! Validation helpers shared by the kinds: string matches, regexes, headers, percentages, ports.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use regex::Regex;
use sluice_model::location::{push_index, push_key};
use sluice_model::{Destination, HeaderOperations, Headers, StringMatch};

use super::Ctx;
use crate::duration::{parse_go_duration, parse_istio_duration};
use crate::host::{is_dns1123_label, validate_domain, validate_wildcard_domain};
use crate::labels::{validate_label_key, validate_label_value};

/// Compiles an Istio (RE2) regex anchored at both ends, as Envoy's `safe_regex` matches the whole value.
pub fn compile_regex(pattern: &str) -> Result<Regex, String> {
    check_regex(pattern)?;
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("invalid RE2 regex `{pattern}`: {}", regex_error_summary(&e)))
}

/// Checks a regex on its own: wrapping an unbalanced pattern such as `a)|(b` in a group could
/// otherwise make it compile although Istio rejects it.
pub(crate) fn check_regex(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("regex must not be empty".into());
    }
    if pattern.len() > 1024 {
        return Err(format!(
            "regex is {} characters long; Istio allows at most 1024",
            pattern.len()
        ));
    }
    Regex::new(pattern)
        .map(|_| ())
        .map_err(|e| format!("invalid RE2 regex `{pattern}`: {}", regex_error_summary(&e)))
}

/// The regex crate renders syntax errors over several lines (pattern, caret, reason); diagnostics
/// are one line, so keep the reason.
fn regex_error_summary(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// How a DNS-1123 label looks, appended to messages that require one.
pub(crate) const DNS1123_LABEL: &str =
    "a DNS-1123 label (letters, digits and `-`, at most 63 characters, starting and ending with a letter or digit)";

/// Result of checking an enum-valued string field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice<'a> {
    /// The field is absent (the enum's zero value applies).
    Unset,
    /// One of the allowed values.
    Valid(&'a str),
    /// Not an allowed value (already reported).
    Invalid,
}

impl<'a> Choice<'a> {
    /// The value, with `default` for an unset field; `None` when the value was invalid.
    pub(crate) fn or(self, default: &'a str) -> Option<&'a str> {
        match self {
            Choice::Unset => Some(default),
            Choice::Valid(v) => Some(v),
            Choice::Invalid => None,
        }
    }
}

/// Checks an enum field against its allowed values (exact case, as the CRD schema does).
pub(crate) fn check_enum<'a>(
    ctx: &mut Ctx<'_>,
    field: &str,
    what: &str,
    value: Option<&'a str>,
    allowed: &[&str],
) -> Choice<'a> {
    match value {
        None => Choice::Unset,
        Some(v) if allowed.contains(&v) => Choice::Valid(v),
        Some(v) => {
            ctx.error(
                field,
                format!("invalid {what} `{v}`: must be one of {}", allowed.join(", ")),
            );
            Choice::Invalid
        }
    }
}

/// Checks a duration that Istio requires to be at least 1ms and a whole number of milliseconds.
pub(crate) fn check_duration(ctx: &mut Ctx<'_>, field: &str, what: &str, value: Option<&str>) {
    if let Some(v) = value {
        if let Err(e) = parse_istio_duration(v) {
            ctx.error(field, format!("invalid {what}: {e}"));
        }
    }
}

/// Checks a duration where `0s` is meaningful (disables the feature); other values follow the 1ms rule.
pub(crate) fn check_duration_zero_ok(ctx: &mut Ctx<'_>, field: &str, what: &str, value: Option<&str>) {
    let Some(v) = value else { return };
    match parse_go_duration(v) {
        Err(e) => ctx.error(field, format!("invalid {what}: {e}")),
        Ok(d) if d.as_millis() == 0 => {}
        Ok(_) => check_duration(ctx, field, what, Some(v)),
    }
}

/// Checks only the syntax of a duration (fields where Istio accepts any non-negative value).
pub(crate) fn check_duration_syntax(ctx: &mut Ctx<'_>, field: &str, what: &str, value: Option<&str>) {
    if let Some(Err(e)) = value.map(parse_go_duration) {
        ctx.error(field, format!("invalid {what}: {e}"));
    }
}

/// Checks a port number is in 1..=65535; returns whether it is.
pub(crate) fn check_port(ctx: &mut Ctx<'_>, field: &str, what: &str, port: u64) -> bool {
    if (1..=65535).contains(&port) {
        return true;
    }
    ctx.error(field, format!("invalid {what} {port}: must be in 1..65535"));
    false
}

/// Checks a percentage in [0, 100].
pub(crate) fn check_percent(ctx: &mut Ctx<'_>, field: &str, what: &str, value: f64) {
    if !(0.0..=100.0).contains(&value) {
        ctx.error(field, format!("invalid {what} {value}: must be between 0 and 100"));
    }
}

/// Checks a fault percentage: Envoy's precision is 0.0001 %, so smaller non-zero values are rejected.
pub(crate) fn check_fault_percent(ctx: &mut Ctx<'_>, field: &str, what: &str, value: f64) {
    if !(value == 0.0 || (0.0001..=100.0).contains(&value)) {
        ctx.error(
            field,
            format!("invalid {what} {value}: must be 0 or between 0.0001 and 100"),
        );
    }
}

/// Checks a `StringMatch`: one of exact/prefix/regex, non-empty prefix (unless allowed), valid regex.
pub(crate) fn check_string_match(ctx: &mut Ctx<'_>, field: &str, sm: &StringMatch, allow_empty_prefix: bool) {
    let set: Vec<&str> = [
        ("exact", sm.exact.is_some()),
        ("prefix", sm.prefix.is_some()),
        ("regex", sm.regex.is_some()),
    ]
    .iter()
    .filter(|(_, s)| *s)
    .map(|(n, _)| *n)
    .collect();
    if set.len() > 1 {
        ctx.error(
            field,
            format!(
                "only one of exact, prefix or regex may be set, found {}",
                set.join(" and ")
            ),
        );
        return;
    }
    if sm.prefix.as_deref() == Some("") && !allow_empty_prefix {
        ctx.error(
            push_key(field, "prefix"),
            "prefix match must not be empty (omit the match to match any value)",
        );
    }
    if let Some(re) = &sm.regex {
        if let Err(e) = check_regex(re) {
            ctx.error(push_key(field, "regex"), e);
        }
    }
}

const PSEUDO_HEADERS: [&str; 5] = [":method", ":scheme", ":authority", ":path", ":status"];

/// Whether `name` is an RFC 7230 token (the characters allowed in a header name).
pub(crate) fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a header-match key is the JWT-claim form `@request.auth.claims.x` / `@request.auth.claims[a][b]`.
pub(crate) fn is_jwt_claim(name: &str) -> bool {
    const PREFIX: &str = "@request.auth.claims";
    let Some(head) = name.get(..PREFIX.len()) else {
        return false;
    };
    if !head.eq_ignore_ascii_case(PREFIX) {
        return false;
    }
    let rest = &name[PREFIX.len()..];
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

/// Checks a header name used as a match key (token, pseudo-header or JWT claim).
pub(crate) fn check_match_header_name(ctx: &mut Ctx<'_>, field: &str, name: &str) {
    if name.is_empty() {
        ctx.error(field, "header name must not be empty");
    } else if !is_jwt_claim(name) && !PSEUDO_HEADERS.contains(&name) && !is_token(name) {
        ctx.error(
            field,
            format!(
                "invalid header name `{name}`: must be letters, digits and !#$%&'*+-.^_`|~, a pseudo-header ({}) or @request.auth.claims.<claim>",
                PSEUDO_HEADERS.join(" ")
            ),
        );
    }
}

/// Checks header operations (`headers.request|response.set|add|remove`).
pub(crate) fn check_headers(ctx: &mut Ctx<'_>, field: &str, headers: &Headers) {
    if let Some(req) = &headers.request {
        check_header_ops(ctx, &push_key(field, "request"), req, true);
    }
    if let Some(resp) = &headers.response {
        check_header_ops(ctx, &push_key(field, "response"), resp, false);
    }
}

fn check_header_ops(ctx: &mut Ctx<'_>, field: &str, ops: &HeaderOperations, request: bool) {
    for (op, map) in [("set", &ops.set), ("add", &ops.add)] {
        let base = push_key(field, op);
        for (name, value) in map {
            let path = push_key(&base, name);
            if let Some(msg) = header_op_name_error(name, request) {
                ctx.error(&path, msg);
            }
            if let Err(e) = check_header_value(value) {
                ctx.error(&path, e);
            }
        }
    }
    let base = push_key(field, "remove");
    for (i, name) in ops.remove.iter().enumerate() {
        if let Some(msg) = header_op_name_error(name, false) {
            ctx.error(push_index(&base, i), msg);
        }
    }
}

/// Why a header may not be written: `Host`/`:authority` only in request set/add (an authority rewrite).
fn header_op_name_error(name: &str, host_allowed: bool) -> Option<String> {
    let authority = name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case(":authority");
    if name.is_empty() {
        Some("header name must not be empty".into())
    } else if host_allowed && authority {
        None
    } else if name.eq_ignore_ascii_case("host") {
        Some(format!(
            "invalid header `{name}`: Host can only be changed with request `set`/`add` (or rewrite.authority)"
        ))
    } else if name.starts_with(':') {
        Some(format!(
            "invalid header `{name}`: pseudo-headers (`:` prefix) cannot be modified"
        ))
    } else {
        None
    }
}

/// Checks a header value the way Envoy parses it: no control characters, `%VAR%` operators closed,
/// a literal `%` written `%%`.
pub(crate) fn check_header_value(value: &str) -> Result<(), String> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "invalid header value {value:?}: control characters (other than tab) are not allowed"
        ));
    }
    #[derive(PartialEq)]
    enum S {
        Literal,
        VarName,
        ExpectArray,
        ExpectString,
        InString,
        ExpectDelimOrEnd,
        ExpectArgsEnd,
        ExpectVarEnd,
    }
    let bad = |why: &str| {
        Err(format!(
            "invalid header value `{value}`: {why} (write a literal percent sign as `%%`)"
        ))
    };
    let b = value.as_bytes();
    let mut state = S::Literal;
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        let has_next = i + 1 < b.len();
        match state {
            S::Literal => {
                if ch == b'%' {
                    if !has_next {
                        return bad("un-escaped `%` at the end");
                    }
                    if b[i + 1] == b'%' {
                        i += 1;
                    } else {
                        state = S::VarName;
                    }
                }
            }
            S::VarName => {
                if ch == b'%' {
                    state = S::Literal;
                } else if ch == b'(' {
                    state = S::ExpectArray;
                }
            }
            S::ExpectArray => {
                if ch == b'[' {
                    state = S::ExpectString;
                } else if ch != b' ' {
                    state = S::InString;
                }
            }
            S::ExpectDelimOrEnd => {
                if ch == b',' {
                    state = S::ExpectString;
                } else if ch == b']' {
                    state = S::ExpectArgsEnd;
                } else if ch != b' ' {
                    return bad("expected `,` or `]` in the operator arguments");
                }
            }
            S::ExpectString => {
                if ch == b'"' {
                    state = S::InString;
                } else if ch != b' ' {
                    return bad("expected `\"` in the operator arguments");
                }
            }
            S::InString => {
                if ch == b'\\' {
                    if !has_next {
                        return bad("unterminated backslash escape");
                    }
                    i += 1;
                } else if ch == b')' {
                    state = S::ExpectVarEnd;
                } else if ch == b'"' {
                    state = S::ExpectDelimOrEnd;
                }
            }
            S::ExpectArgsEnd => {
                if ch == b')' {
                    state = S::ExpectVarEnd;
                } else if ch != b' ' {
                    return bad("expected `)` after the operator arguments");
                }
            }
            S::ExpectVarEnd => {
                if ch == b'%' {
                    state = S::Literal;
                } else if ch != b' ' {
                    return bad("expected `%` to close the operator");
                }
            }
        }
        i += 1;
    }
    if state != S::Literal {
        return bad("unterminated `%VARIABLE%` expression");
    }
    Ok(())
}

/// Checks Kubernetes label syntax of every key and value.
pub(crate) fn check_labels(ctx: &mut Ctx<'_>, field: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        let path = push_key(field, k);
        if let Err(e) = validate_label_key(k) {
            ctx.error(&path, e);
        }
        if let Err(e) = validate_label_value(v) {
            ctx.error(
                &path,
                format!("{e}: values are empty or at most 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"),
            );
        }
    }
}

/// Checks a workload selector's labels: no empty keys, no `*` (selectors are exact).
pub(crate) fn check_selector_labels(ctx: &mut Ctx<'_>, field: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        let path = push_key(field, k);
        if k.is_empty() {
            ctx.error(&path, "selector label key must not be empty");
        } else if k.contains('*') || v.contains('*') {
            ctx.error(
                &path,
                format!("wildcard `*` is not supported in selector `{k}={v}`: selectors match exact labels"),
            );
        } else if v.len() > 63 {
            ctx.error(
                &path,
                format!("selector value for `{k}` is {} characters long; at most 63 allowed", v.len()),
            );
        }
    }
}

/// Checks `exportTo`: `.`, `*`, a namespace, or `~` (ServiceEntry only); no duplicates or mixing with `*`/`~`.
pub(crate) fn check_export_to(
    ctx: &mut Ctx<'_>,
    field: &str,
    export_to: &[String],
    allow_none: bool,
    dr_with_selector: bool,
) {
    if export_to.is_empty() {
        return;
    }
    let ns = ctx.resource().metadata.namespace.clone();
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, e) in export_to.iter().enumerate() {
        let path = push_index(field, i);
        let key = if e == "." { ns.as_str() } else { e.as_str() };
        if seen.contains(key) {
            if key == ns {
                ctx.error(
                    &path,
                    format!("duplicate exportTo entry `{e}`: `.` and `{ns}` both mean this object's namespace"),
                );
            } else {
                ctx.error(&path, format!("duplicate exportTo entry `{e}`"));
            }
            continue;
        }
        if e == "~" {
            if allow_none {
                seen.insert(key);
            } else {
                ctx.error(
                    &path,
                    "exportTo `~` (visible to nobody) is only allowed on ServiceEntry",
                );
            }
        } else if key == "*" || key == ns || is_dns1123_label(key) {
            seen.insert(key);
        } else {
            ctx.error(
                &path,
                format!("invalid exportTo entry `{e}`: must be `.`, `*` or a namespace name (DNS-1123 label)"),
            );
        }
    }
    if dr_with_selector && !seen.is_empty() {
        if !seen.contains(ns.as_str()) {
            ctx.error(
                field,
                "a DestinationRule with workloadSelector can only be exported to its own namespace (`.`)",
            );
        } else if seen.len() > 1 {
            ctx.error(
                field,
                "a DestinationRule with workloadSelector cannot have more than one exportTo entry (use `.`)",
            );
        }
    }
    if seen.contains("*") && export_to.len() > 1 {
        ctx.error(field, "exportTo `*` (everyone) cannot be combined with other entries");
    } else if seen.contains("~") && export_to.len() > 1 {
        ctx.error(field, "exportTo `~` (nobody) cannot be combined with other entries");
    }
}

/// Checks gateway references: `mesh`, `name`, `namespace/name` or the legacy `name.namespace.svc...` form.
pub(crate) fn check_gateway_names(ctx: &mut Ctx<'_>, field: &str, names: &[String]) {
    for (i, g) in names.iter().enumerate() {
        let path = push_index(field, i);
        match g.split_once('/') {
            None => {
                if let Err(e) = validate_domain(g) {
                    ctx.error(&path, format!("invalid gateway `{g}`: {e}"));
                } else if let Some((name, rest)) = g.split_once('.') {
                    let ns = rest.split('.').next().unwrap_or(rest);
                    ctx.warn(
                        &path,
                        format!("gateway `{g}` uses the legacy `name.namespace.svc` form; prefer `{ns}/{name}`"),
                    );
                }
            }
            Some((ns, name)) => {
                if ns.is_empty() || name.is_empty() {
                    ctx.error(
                        &path,
                        format!("invalid gateway `{g}`: namespace and name in `namespace/name` must not be empty"),
                    );
                } else if !is_dns1123_label(ns) {
                    ctx.error(
                        &path,
                        format!("invalid gateway `{g}`: namespace `{ns}` must be {DNS1123_LABEL}"),
                    );
                } else if !is_dns1123_label(name) {
                    ctx.error(
                        &path,
                        format!("invalid gateway `{g}`: name `{name}` must be {DNS1123_LABEL}"),
                    );
                }
            }
        }
    }
}

/// Checks a route/mirror destination: host (not `*`), subset name, port.
pub(crate) fn check_destination(ctx: &mut Ctx<'_>, field: &str, d: &Destination) {
    let host_path = push_key(field, "host");
    if d.host.is_empty() {
        ctx.error(&host_path, "destination host is required");
    } else if d.host == "*" {
        ctx.error(&host_path, "destination host `*` is not allowed: name a service");
    } else if let Err(e) = validate_wildcard_domain(&d.host) {
        ctx.error(&host_path, format!("invalid destination host: {e}"));
    }
    if let Some(s) = d.subset.as_deref().filter(|s| !s.is_empty()) {
        if !is_dns1123_label(s) {
            ctx.error(
                push_key(field, "subset"),
                format!("invalid subset name `{s}`: must be {DNS1123_LABEL}"),
            );
        }
    }
    if let Some(p) = &d.port {
        check_port(
            ctx,
            &push_key(&push_key(field, "port"), "number"),
            "destination port",
            u64::from(p.number),
        );
    }
}

/// Checks an IP address or a CIDR block.
pub(crate) fn check_ip_or_cidr(s: &str) -> Result<(), String> {
    if s.matches('/').count() == 1 {
        s.parse::<ipnet::IpNet>()
            .map(|_| ())
            .map_err(|_| format!("`{s}` is not a valid CIDR block"))
    } else {
        s.parse::<IpAddr>()
            .map(|_| ())
            .map_err(|_| format!("`{s}` is not a valid IP address or CIDR block"))
    }
}

/// Checks the path of a `unix://` address: absolute (or `@abstract`) and not a directory.
pub(crate) fn check_unix_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("unix socket address must not be empty".into());
    }
    if path.starts_with('@') {
        return Ok(());
    }
    if !path.starts_with('/') || path.ends_with('/') {
        return Err(format!(
            "unix socket `{path}` must be an absolute path to a file (`unix:///path`) or an abstract socket (`unix://@name`)"
        ));
    }
    Ok(())
}

/// Whether a protocol name is one Istio knows (`protocol.Parse`, case-insensitive).
pub(crate) fn parse_protocol(p: &str) -> Option<&'static str> {
    const KNOWN: [&str; 12] = [
        "TCP", "UDP", "GRPC", "GRPC-WEB", "HTTP", "HTTP_PROXY", "HTTP2", "HTTPS", "TLS", "MONGO", "REDIS",
        "MYSQL",
    ];
    KNOWN.iter().copied().find(|k| k.eq_ignore_ascii_case(p))
}

/// Whether a (parsed) protocol is HTTP-family.
pub(crate) fn is_http_protocol(p: Option<&str>) -> bool {
    matches!(p, Some("HTTP" | "HTTP2" | "HTTP_PROXY" | "GRPC" | "GRPC-WEB"))
}

/// Whether a (parsed) protocol carries TLS that the proxy does not terminate by default.
pub(crate) fn is_tls_protocol(p: Option<&str>) -> bool {
    matches!(p, Some("HTTPS" | "TLS"))
}
