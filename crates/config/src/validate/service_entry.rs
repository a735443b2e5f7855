//! Webhook/CRD validation of `ServiceEntry` and `WorkloadEntry`.

use std::collections::HashMap;

use sluice_model::location::{push_index, push_key};
use sluice_model::{ServiceEntry, WorkloadEntry};

use super::common::{
    check_enum, check_export_to, check_ip_or_cidr, check_labels, check_port, check_selector_labels,
    check_unix_path, is_http_protocol, is_tls_protocol, parse_protocol, DNS1123_LABEL,
};
use super::Ctx;
use crate::host::{is_dns1123_label, is_ip, validate_domain, validate_wildcard_domain};

/// How an endpoint address is interpreted.
#[derive(Clone, Copy)]
enum AddrMode<'a> {
    /// A standalone WorkloadEntry: IP, FQDN or unix socket; ports not tied to a service.
    Standalone,
    /// STATIC resolution: IP or unix socket; port names must be the ServiceEntry's.
    Static(&'a [&'a str]),
    /// DNS resolution: IP or FQDN; port names must be the ServiceEntry's.
    Dns(&'a [&'a str]),
}

pub(crate) fn validate_service_entry(ctx: &mut Ctx<'_>, se: &ServiceEntry) {
    if let Some(sel) = &se.workload_selector {
        if sel.labels.is_empty() {
            ctx.warn(
                "spec.workloadSelector",
                "workloadSelector has no labels, so it selects every workload in the namespace",
            );
        }
        check_selector_labels(ctx, "spec.workloadSelector.labels", &sel.labels);
        if !se.endpoints.is_empty() {
            ctx.error(
                "spec.workloadSelector",
                "only one of workloadSelector and endpoints may be set",
            );
        }
    }
    let resolution = check_enum(
        ctx,
        "spec.resolution",
        "resolution",
        se.resolution.as_deref(),
        &["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"],
    )
    .or("NONE");
    let location = check_enum(
        ctx,
        "spec.location",
        "location",
        se.location.as_deref(),
        &["MESH_EXTERNAL", "MESH_INTERNAL"],
    )
    .or("MESH_EXTERNAL");
    check_hosts(ctx, se, resolution);
    check_addresses(ctx, se, resolution);
    let port_names = check_ports(ctx, se, resolution);
    match resolution {
        Some("NONE") => {
            if !se.endpoints.is_empty() {
                ctx.error(
                    "spec.endpoints",
                    "resolution NONE forwards to the original destination, so endpoints must not be set (use STATIC or DNS)",
                );
            }
            if se.workload_selector.is_some() {
                ctx.warn(
                    "spec.workloadSelector",
                    "workloadSelector has no effect with resolution NONE (use STATIC)",
                );
            }
        }
        Some("STATIC") => {
            for (i, ep) in se.endpoints.iter().enumerate() {
                check_workload_entry(
                    ctx,
                    ep,
                    &push_index("spec.endpoints", i),
                    AddrMode::Static(&port_names),
                );
            }
        }
        Some(r @ ("DNS" | "DNS_ROUND_ROBIN")) => check_dns(ctx, se, r, &port_names),
        Some(r @ "DYNAMIC_DNS") => check_dynamic_dns(ctx, se, r, location),
        _ => {}
    }
    // Plain TCP carries no host name, so one address/port cannot tell several hosts apart.
    if resolution.is_some_and(|r| r != "NONE") && se.hosts.len() > 1 {
        let opaque = se.ports.iter().find(|p| {
            let proto = parse_protocol(p.protocol.as_deref().unwrap_or(""));
            !is_http_protocol(proto) && !is_tls_protocol(proto)
        });
        if let Some(p) = opaque {
            ctx.error(
                "spec.hosts",
                format!(
                    "several hosts with port {} ({}) need resolution NONE: without HTTP Host or TLS SNI the hosts cannot be told apart",
                    p.number,
                    p.protocol.as_deref().filter(|s| !s.is_empty()).unwrap_or("no protocol")
                ),
            );
        }
    }
    if se.endpoints.len() > 4096 {
        ctx.error(
            "spec.endpoints",
            format!("{} endpoints; at most 4096 are allowed", se.endpoints.len()),
        );
    }
    check_export_to(ctx, "spec.exportTo", &se.export_to, true, false);
}

fn check_hosts(ctx: &mut Ctx<'_>, se: &ServiceEntry, resolution: Option<&str>) {
    if se.hosts.is_empty() {
        ctx.error("spec.hosts", "a ServiceEntry needs at least one host");
    }
    if se.hosts.len() > 256 {
        ctx.error(
            "spec.hosts",
            format!("{} hosts; at most 256 are allowed", se.hosts.len()),
        );
    }
    for (i, h) in se.hosts.iter().enumerate() {
        let path = push_index("spec.hosts", i);
        if h == "*" {
            ctx.error(&path, "host `*` is not allowed in a ServiceEntry: name the hosts (`*.example.com` is fine)");
        } else if let Err(e) = validate_wildcard_domain(h) {
            ctx.error(&path, e);
        } else if resolution != Some("DYNAMIC_DNS") && h.contains('*') && !h.starts_with("*.") {
            ctx.warn(
                &path,
                format!("partial wildcard host `{h}` is not supported: use `*.<domain>`"),
            );
        }
    }
}

fn check_addresses(ctx: &mut Ctx<'_>, se: &ServiceEntry, resolution: Option<&str>) {
    if se.addresses.len() > 256 {
        ctx.error(
            "spec.addresses",
            format!("{} addresses; at most 256 are allowed", se.addresses.len()),
        );
    }
    let mut cidr_reported = false;
    for (i, a) in se.addresses.iter().enumerate() {
        let path = push_index("spec.addresses", i);
        if a.len() > 64 {
            ctx.error(&path, format!("address `{a}` is longer than 64 characters"));
        } else if let Err(e) = check_ip_or_cidr(a) {
            ctx.error(&path, e);
        } else if a.contains('/')
            && !cidr_reported
            && !matches!(resolution, None | Some("NONE" | "STATIC"))
        {
            cidr_reported = true;
            ctx.error(
                &path,
                format!(
                    "CIDR address `{a}` is only allowed with resolution NONE or STATIC, not {}",
                    resolution.unwrap_or("")
                ),
            );
        }
    }
}

/// Checks the ports and returns their names (which endpoint port maps must use).
fn check_ports<'a>(
    ctx: &mut Ctx<'_>,
    se: &'a ServiceEntry,
    resolution: Option<&str>,
) -> Vec<&'a str> {
    if se.ports.len() > 256 {
        ctx.error(
            "spec.ports",
            format!("{} ports; at most 256 are allowed", se.ports.len()),
        );
    }
    let auto_allocate = resolution.is_some_and(|r| r != "NONE")
        && se.addresses.is_empty()
        && !ctx
            .resource()
            .metadata
            .labels
            .get("networking.istio.io/enable-autoallocate-ip")
            .is_some_and(|v| v.eq_ignore_ascii_case("false"));
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut numbers: HashMap<u32, usize> = HashMap::new();
    for (i, p) in se.ports.iter().enumerate() {
        let field = push_index("spec.ports", i);
        let f = |k: &str| push_key(&field, k);
        if let Some(first) = names.get(p.name.as_str()) {
            ctx.error(
                f("name"),
                format!("duplicate port name `{}` (also ports[{first}])", p.name),
            );
        } else {
            names.insert(p.name.as_str(), i);
            if !is_dns1123_label(&p.name) {
                ctx.error(
                    f("name"),
                    format!("invalid port name `{}`: must be {DNS1123_LABEL}", p.name),
                );
            }
        }
        if let Some(first) = numbers.get(&p.number) {
            ctx.error(
                f("number"),
                format!("duplicate port number {} (also ports[{first}])", p.number),
            );
        } else {
            numbers.insert(p.number, i);
            check_port(ctx, &f("number"), "port number", u64::from(p.number));
        }
        if let Some(t) = p.target_port {
            check_port(ctx, &f("targetPort"), "targetPort", u64::from(t));
        }
        let proto = p.protocol.as_deref().unwrap_or("");
        if !proto.is_empty() && parse_protocol(proto).is_none() {
            ctx.error(
                f("protocol"),
                format!(
                    "invalid protocol `{proto}`: must be one of HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, REDIS, MYSQL, UDP, HTTP_PROXY (or empty for sniffing)"
                ),
            );
        }
        if !auto_allocate && se.addresses.is_empty() && (proto.is_empty() || proto == "TCP") {
            ctx.warn(
                &field,
                format!(
                    "port {} serves TCP (or an unset protocol) but the ServiceEntry has no addresses: traffic is matched by port only, for every destination IP",
                    p.number
                ),
            );
        }
    }
    se.ports.iter().map(|p| p.name.as_str()).collect()
}

fn check_dns(ctx: &mut Ctx<'_>, se: &ServiceEntry, resolution: &str, port_names: &[&str]) {
    if se.endpoints.is_empty() {
        if let Some((i, h)) = se
            .hosts
            .iter()
            .enumerate()
            .find(|(_, h)| validate_domain(h).is_err())
        {
            ctx.error(
                push_index("spec.hosts", i),
                format!("host `{h}` must be a fully qualified name (no wildcard): resolution {resolution} without endpoints resolves the host itself"),
            );
        }
    }
    if resolution == "DNS_ROUND_ROBIN" && se.endpoints.len() > 1 {
        ctx.error(
            "spec.endpoints",
            format!(
                "resolution DNS_ROUND_ROBIN allows at most 1 endpoint, found {}",
                se.endpoints.len()
            ),
        );
    }
    for (i, ep) in se.endpoints.iter().enumerate() {
        check_workload_entry(
            ctx,
            ep,
            &push_index("spec.endpoints", i),
            AddrMode::Dns(port_names),
        );
    }
    let tcp_port = se.ports.iter().any(|p| {
        matches!(
            parse_protocol(p.protocol.as_deref().unwrap_or("")),
            Some("TCP" | "HTTPS" | "TLS" | "MONGO" | "REDIS" | "MYSQL")
        )
    });
    if !se.addresses.is_empty() && tcp_port && se.hosts.len() > 1 {
        ctx.warn(
            "spec.hosts",
            "a ServiceEntry with addresses and a TCP port should have only one host",
        );
    }
}

fn check_dynamic_dns(
    ctx: &mut Ctx<'_>,
    se: &ServiceEntry,
    resolution: &str,
    location: Option<&str>,
) {
    for (i, h) in se.hosts.iter().enumerate() {
        if !h.starts_with('*') {
            ctx.error(
                push_index("spec.hosts", i),
                format!("host `{h}` must be a wildcard (e.g. `*.example.com`) with resolution {resolution}"),
            );
        }
    }
    if !se.addresses.is_empty() {
        ctx.error(
            "spec.addresses",
            format!("addresses cannot be set with resolution {resolution}: routes are built from the hosts"),
        );
    }
    if !se.endpoints.is_empty() {
        ctx.error(
            "spec.endpoints",
            format!("endpoints cannot be set with resolution {resolution}: the destination is resolved from the request host"),
        );
    }
    for (i, p) in se.ports.iter().enumerate() {
        let proto = parse_protocol(p.protocol.as_deref().unwrap_or(""));
        if !matches!(proto, Some("HTTP" | "TLS" | "GRPC" | "HTTP2")) {
            ctx.error(
                push_key(&push_index("spec.ports", i), "protocol"),
                format!(
                    "protocol `{}` is not supported with resolution {resolution}: use HTTP, TLS, GRPC or HTTP2",
                    p.protocol.as_deref().unwrap_or("")
                ),
            );
        }
    }
    let waypoint = ctx
        .resource()
        .metadata
        .labels
        .get("istio.io/use-waypoint")
        .is_some_and(|v| !v.is_empty() && !v.eq_ignore_ascii_case("none"));
    if location == Some("MESH_INTERNAL") && waypoint {
        ctx.error(
            "spec.location",
            format!("location MESH_INTERNAL with resolution {resolution} is not supported when using a waypoint"),
        );
    }
}

pub(crate) fn validate_workload_entry(ctx: &mut Ctx<'_>, spec: &WorkloadEntry, field: &str) {
    check_workload_entry(ctx, spec, field, AddrMode::Standalone);
}

fn check_workload_entry(ctx: &mut Ctx<'_>, we: &WorkloadEntry, field: &str, mode: AddrMode<'_>) {
    let f = |k: &str| push_key(field, k);
    let addr = we.address.as_str();
    let network = we.network.as_deref().filter(|n| !n.is_empty());
    let mut unix = false;
    if addr.is_empty() {
        match network {
            None => {
                ctx.error(
                    f("address"),
                    "address is required (an IP, a hostname or unix:///path) unless network is set",
                );
                return;
            }
            Some(n) => ctx.warn(
                f("address"),
                format!("address is unset with network `{n}`: Istio reaches such an endpoint through that network's gateway; sluice knows no network gateways, so the endpoint is left out of load balancing"),
            ),
        }
    } else if addr.len() > 256 {
        ctx.error(
            f("address"),
            format!(
                "address is {} characters long; at most 256 allowed",
                addr.len()
            ),
        );
    } else if let (Some(path), false) = (
        addr.strip_prefix("unix://"),
        matches!(mode, AddrMode::Dns(_)),
    ) {
        unix = true;
        if let Err(e) = check_unix_path(path) {
            ctx.error(f("address"), e);
        }
        if !we.ports.is_empty() {
            ctx.error(f("ports"), "a unix socket endpoint cannot have ports");
        }
    } else if !is_ip(addr) {
        if let AddrMode::Static(_) = mode {
            ctx.error(
                f("address"),
                format!("endpoint address `{addr}` must be an IP address or unix:// socket with resolution STATIC (use DNS for host names)"),
            );
        } else if let Err(e) = validate_domain(addr) {
            ctx.error(
                f("address"),
                format!("endpoint address `{addr}` is not a valid IP address or FQDN: {e}"),
            );
        }
    }
    let service_ports = match mode {
        AddrMode::Standalone => None,
        AddrMode::Static(p) | AddrMode::Dns(p) => Some(p),
    };
    if we.ports.len() > 128 {
        ctx.error(
            f("ports"),
            format!("{} ports; at most 128 are allowed", we.ports.len()),
        );
    }
    for (name, port) in &we.ports {
        let path = push_key(&f("ports"), name);
        if !is_dns1123_label(name) {
            ctx.error(
                &path,
                format!("invalid port name `{name}`: must be {DNS1123_LABEL}"),
            );
        } else if let Some(sp) = service_ports.filter(|sp| !sp.contains(&name.as_str())) {
            ctx.error(
                &path,
                format!(
                    "port name `{name}` is not a port of the ServiceEntry (ports: {})",
                    sp.join(", ")
                ),
            );
        }
        check_port(ctx, &path, "endpoint port", u64::from(*port));
    }
    check_labels(ctx, &f("labels"), &we.labels);
    if we.labels.len() > 256 {
        ctx.error(
            f("labels"),
            format!("{} labels; at most 256 are allowed", we.labels.len()),
        );
    }
    if unix {
        if let Some(sp) = service_ports.filter(|sp| sp.len() != 1) {
            ctx.error(
                f("address"),
                format!(
                    "a unix socket endpoint needs a ServiceEntry with exactly 1 port, found {}",
                    sp.len()
                ),
            );
        }
    }
    for (key, max, v) in [
        ("serviceAccount", 253, we.service_account.as_deref()),
        ("network", 2048, we.network.as_deref()),
        ("locality", 2048, we.locality.as_deref()),
    ] {
        if let Some(v) = v.filter(|v| v.len() > max) {
            ctx.error(
                f(key),
                format!(
                    "{key} is {} characters long; at most {max} allowed",
                    v.len()
                ),
            );
        }
    }
}
