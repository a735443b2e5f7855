//! Validation helpers shared by the kinds: string matches, regexes, enums, durations, percentages, ports.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use regex::Regex;
use sluice_model::location::{push_index, push_key};
use sluice_model::{Destination, StringMatch};

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

/// Checks the bare pattern, since wrapping an unbalanced one like `a)|(b` in a group can make it compile.
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

/// Diagnostics are one line, but regex syntax errors span several (pattern, caret, reason).
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
                format!(
                    "invalid {what} `{v}`: must be one of {}",
                    allowed.join(", ")
                ),
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
pub(crate) fn check_duration_zero_ok(
    ctx: &mut Ctx<'_>,
    field: &str,
    what: &str,
    value: Option<&str>,
) {
    let Some(v) = value else { return };
    match parse_go_duration(v) {
        Err(e) => ctx.error(field, format!("invalid {what}: {e}")),
        Ok(d) if d.as_millis() == 0 => {}
        Ok(_) => check_duration(ctx, field, what, Some(v)),
    }
}

/// Checks only the syntax of a duration (fields where Istio accepts any non-negative value).
pub(crate) fn check_duration_syntax(
    ctx: &mut Ctx<'_>,
    field: &str,
    what: &str,
    value: Option<&str>,
) {
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
        ctx.error(
            field,
            format!("invalid {what} {value}: must be between 0 and 100"),
        );
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
pub(crate) fn check_string_match(
    ctx: &mut Ctx<'_>,
    field: &str,
    sm: &StringMatch,
    allow_empty_prefix: bool,
) {
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

/// Checks Kubernetes label syntax of every key and value.
pub(crate) fn check_labels<'a>(
    ctx: &mut Ctx<'_>,
    field: &str,
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) {
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
pub(crate) fn check_selector_labels(
    ctx: &mut Ctx<'_>,
    field: &str,
    labels: &BTreeMap<String, String>,
) {
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
                format!(
                    "selector value for `{k}` is {} characters long; at most 63 allowed",
                    v.len()
                ),
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
        ctx.error(
            field,
            "exportTo `*` (everyone) cannot be combined with other entries",
        );
    } else if seen.contains("~") && export_to.len() > 1 {
        ctx.error(
            field,
            "exportTo `~` (nobody) cannot be combined with other entries",
        );
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
                        format!("gateway `{g}` uses the legacy `name.namespace` form (read as `{ns}/{name}`); prefer `{ns}/{name}`"),
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
        ctx.error(
            &host_path,
            "destination host `*` is not allowed: name a service",
        );
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
        "TCP",
        "UDP",
        "GRPC",
        "GRPC-WEB",
        "HTTP",
        "HTTP_PROXY",
        "HTTP2",
        "HTTPS",
        "TLS",
        "MONGO",
        "REDIS",
        "MYSQL",
    ];
    KNOWN.iter().copied().find(|k| k.eq_ignore_ascii_case(p))
}

/// Whether a (parsed) protocol is HTTP-family.
pub(crate) fn is_http_protocol(p: Option<&str>) -> bool {
    matches!(
        p,
        Some("HTTP" | "HTTP2" | "HTTP_PROXY" | "GRPC" | "GRPC-WEB")
    )
}

/// Whether a (parsed) protocol carries TLS that the proxy does not terminate by default.
pub(crate) fn is_tls_protocol(p: Option<&str>) -> bool {
    matches!(p, Some("HTTPS" | "TLS"))
}
