//! Sidecar: the webhook's rules for the fields sluice reads (spec §8, traffic doc).

use std::collections::HashSet;
use std::net::IpAddr;

use sluice_model::location::{push_index, push_key};
use sluice_model::Sidecar;

use super::common::{check_port, check_selector_labels, parse_protocol};
use super::Ctx;

/// Validates a Sidecar.
pub(crate) fn validate(ctx: &mut Ctx<'_>, sc: &Sidecar) {
    if sc.ingress.is_empty()
        && sc.egress.is_empty()
        && sc.outbound_traffic_policy.is_none()
        && sc.inbound_connection_pool.is_none()
    {
        ctx.error(
            "spec",
            "empty Sidecar: set `ingress`, `egress` or `outboundTrafficPolicy`",
        );
    }
    if let Some(w) = &sc.workload_selector {
        if w.labels.is_empty() {
            ctx.warn(
                "spec.workloadSelector",
                "workloadSelector has no labels, so the Sidecar applies to every workload in the namespace",
            );
        }
        check_selector_labels(ctx, "spec.workloadSelector.labels", &w.labels);
    }
    let mut ports = HashSet::new();
    for (i, l) in sc.ingress.iter().enumerate() {
        let field = push_index("spec.ingress", i);
        match &l.port {
            None => ctx.error(
                push_key(&field, "port"),
                "an ingress listener needs a `port`",
            ),
            Some(p) => {
                let pf = push_key(&field, "port");
                if check_port(ctx, &push_key(&pf, "number"), "port", u64::from(p.number))
                    && !ports.insert(p.number)
                {
                    ctx.error(
                        push_key(&pf, "number"),
                        format!("port {} is used by another ingress listener", p.number),
                    );
                }
                if parse_protocol(&p.protocol).is_none() {
                    ctx.error(
                        push_key(&pf, "protocol"),
                        format!("unknown protocol `{}`", p.protocol),
                    );
                }
            }
        }
        if let Some(b) = l.bind.as_deref().filter(|b| !b.is_empty()) {
            if b.parse::<IpAddr>().is_err() {
                ctx.error(
                    push_key(&field, "bind"),
                    format!("bind `{b}` must be an IP address"),
                );
            }
        }
        if let Some(e) = l.default_endpoint.as_deref().filter(|e| !e.is_empty()) {
            if let Some(p) = default_endpoint_problem(e) {
                ctx.error(push_key(&field, "defaultEndpoint"), p);
            }
        }
        if let Some(tls) = &l.tls {
            let f = push_key(&push_key(&field, "tls"), "mode");
            match tls.mode.as_deref() {
                Some("SIMPLE" | "MUTUAL") => {}
                other => ctx.error(
                    f,
                    format!(
                        "ingress tls mode `{}` is not supported: use SIMPLE or MUTUAL",
                        other.unwrap_or("")
                    ),
                ),
            }
            let files = tls.server_certificate.is_some() && tls.private_key.is_some();
            if !files && tls.credential_name.is_none() && tls.credential_names.is_empty() {
                ctx.error(
                    push_key(&field, "tls"),
                    "ingress tls needs `credentialName` or `serverCertificate` and `privateKey`",
                );
            }
        }
    }
    let mut egress_ports = HashSet::new();
    let mut unix_binds = HashSet::new();
    for (i, e) in sc.egress.iter().enumerate() {
        let field = push_index("spec.egress", i);
        check_egress_bind(ctx, &field, e, i + 1 == sc.egress.len());
        if let Some(p) = &e.port {
            let taken = if p.number == 0 {
                !unix_binds.insert(e.bind.clone().unwrap_or_default())
            } else {
                !egress_ports.insert(p.number)
            };
            if taken {
                ctx.error(
                    push_key(&field, "port"),
                    "egress listeners bound to IP addresses need distinct ports, and unix domain sockets distinct paths",
                );
            }
        }
        if e.hosts.is_empty() {
            ctx.error(
                push_key(&field, "hosts"),
                "an egress listener needs `hosts`",
            );
        }
        for (j, h) in e.hosts.iter().enumerate() {
            match h.split_once('/') {
                Some((ns, host)) if !ns.is_empty() && !host.is_empty() => {}
                _ => ctx.error(
                    push_index(&push_key(&field, "hosts"), j),
                    format!("egress host `{h}` must be `namespace/dnsName`"),
                ),
            }
        }
    }
    if let Some(p) = &sc.outbound_traffic_policy {
        if let Some(proxy) = &p.egress_proxy {
            check_egress_proxy(ctx, p.mode.as_deref(), proxy);
        }
    }
}

/// Istio's rules for an egress listener's `port`, `bind` and `captureMode`: port 0 means a unix
/// domain socket `bind` (captured DEFAULT or NONE), any other port an IP `bind`; one listener
/// without a port, last.
fn check_egress_bind(
    ctx: &mut Ctx<'_>,
    field: &str,
    e: &sluice_model::IstioEgressListener,
    last: bool,
) {
    let mode = e.capture_mode.as_deref().unwrap_or("DEFAULT");
    if !matches!(mode, "DEFAULT" | "IPTABLES" | "NONE") {
        ctx.error(
            push_key(field, "captureMode"),
            format!("unknown captureMode `{mode}`: use DEFAULT, IPTABLES or NONE"),
        );
    }
    let bind = e.bind.as_deref().unwrap_or("");
    let Some(port) = &e.port else {
        if !last {
            ctx.error(
                field,
                "the egress listener without a port must be the last one (and the only one)",
            );
        }
        return;
    };
    if port.number == 0 {
        match bind.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => {}
            _ => ctx.error(
                push_key(field, "bind"),
                "an egress listener on port 0 needs a unix domain socket bind (`unix:///path`)",
            ),
        }
        if mode == "IPTABLES" {
            ctx.error(
                push_key(field, "captureMode"),
                "captureMode must be DEFAULT or NONE for a unix domain socket listener",
            );
        }
    } else {
        check_port(
            ctx,
            &push_key(&push_key(field, "port"), "number"),
            "port",
            u64::from(port.number),
        );
        if !bind.is_empty() && bind.parse::<IpAddr>().is_err() {
            ctx.error(
                push_key(field, "bind"),
                format!("bind `{bind}` must be an IP address (a unix domain socket takes port 0)"),
            );
        }
    }
}

/// Istio's rules for `outboundTrafficPolicy.egressProxy`: only with mode `ALLOW_ANY` (an unset
/// mode is `REGISTRY_ONLY`, the enum's zero), an FQDN host and a port.
fn check_egress_proxy(ctx: &mut Ctx<'_>, mode: Option<&str>, proxy: &serde_json::Value) {
    let field = "spec.outboundTrafficPolicy.egressProxy";
    if mode != Some("ALLOW_ANY") {
        ctx.error(
            field,
            "egressProxy must be set only with outboundTrafficPolicy mode ALLOW_ANY",
        );
        return;
    }
    match proxy.get("host").and_then(|h| h.as_str()) {
        Some(h) if crate::host::validate_domain(h).is_ok() && !h.contains('*') => {}
        other => ctx.error(
            push_key(field, "host"),
            format!(
                "egressProxy host `{}` must be a fully qualified domain name",
                other.unwrap_or("")
            ),
        ),
    }
    if proxy.get("port").and_then(|p| p.get("number")).is_none() {
        ctx.error(push_key(field, "port"), "egressProxy port is required");
    }
}

/// Istio accepts `127.0.0.1:PORT`, `0.0.0.0:PORT`, `[::1]:PORT`, `[::]:PORT` and `unix://`.
fn default_endpoint_problem(e: &str) -> Option<String> {
    if let Some(path) = e.strip_prefix("unix://") {
        return super::common::check_unix_path(path).err();
    }
    let ok = e
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.port() != 0 && (a.ip().is_loopback() || a.ip().is_unspecified()));
    (!ok).then(|| {
        format!("defaultEndpoint `{e}` must be `127.0.0.1:PORT`, `0.0.0.0:PORT`, `[::1]:PORT` or `unix:///path`")
    })
}
