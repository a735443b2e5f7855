//! Webhook/CRD validation of `VirtualService`.

use std::collections::BTreeMap;

use sluice_model::location::{push_index, push_key};
use sluice_model::{Destination, RouteDestination, SmallMap, StringMatch, VirtualService};

use super::common::{
    check_export_to, check_gateway_names, check_ip_or_cidr, check_labels, check_port,
};
use super::headers::is_jwt_claim;
use super::http_route::{check_route_destinations, validate_http_route};
use super::Ctx;
use crate::host::{covers, first_overlaps, is_ip, validate_wildcard_domain};

pub(crate) fn validate(ctx: &mut Ctx<'_>, vs: &VirtualService) {
    let delegate = vs.hosts.is_empty();
    if delegate {
        let msg = |what: &str| {
            format!("a VirtualService without hosts is a delegate and cannot set `{what}` (only `http` routes are delegated)")
        };
        if !vs.gateways.is_empty() {
            ctx.error("spec.gateways", msg("gateways"));
        }
        if !vs.tls.is_empty() {
            ctx.error("spec.tls", msg("tls"));
        }
        if !vs.tcp.is_empty() {
            ctx.error("spec.tcp", msg("tcp"));
        }
    }
    // Omitting `gateways` means `mesh`; listing gateways without `mesh` binds only to those gateways.
    let applies_to_gateway = !vs.gateways.is_empty() && !vs.gateways.iter().any(|g| g == "mesh");
    check_gateway_names(ctx, "spec.gateways", &vs.gateways);
    if !applies_to_gateway {
        check_jwt_claims_need_gateway(ctx, vs);
    }
    check_hosts(ctx, vs, applies_to_gateway);
    if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() {
        ctx.error(
            "spec",
            "a VirtualService needs at least one of `http`, `tcp` or `tls` routes",
        );
    }
    for (i, r) in vs.http.iter().enumerate() {
        validate_http_route(ctx, &push_index("spec.http", i), r, delegate);
    }
    for (i, r) in vs.tls.iter().enumerate() {
        let field = push_index("spec.tls", i);
        if r.matches.is_empty() {
            ctx.error(
                push_key(&field, "match"),
                "a TLS route needs at least one match with sniHosts",
            );
        }
        for (j, m) in r.matches.iter().enumerate() {
            let mf = push_index(&push_key(&field, "match"), j);
            check_sni_hosts(
                ctx,
                &push_key(&mf, "sniHosts"),
                &m.sni_hosts,
                vs,
                applies_to_gateway,
            );
            check_l4_match(
                ctx,
                &mf,
                &m.destination_subnets,
                m.port,
                &m.source_labels,
                &m.gateways,
            );
        }
        check_l4_route(ctx, &push_key(&field, "route"), &r.route, "TLS");
    }
    for (i, r) in vs.tcp.iter().enumerate() {
        let field = push_index("spec.tcp", i);
        for (j, m) in r.matches.iter().enumerate() {
            let mf = push_index(&push_key(&field, "match"), j);
            check_l4_match(
                ctx,
                &mf,
                &m.destination_subnets,
                m.port,
                &m.source_labels,
                &m.gateways,
            );
            if let Some(Err(e)) = m.source_subnet.as_deref().map(check_ip_or_cidr) {
                ctx.error(push_key(&mf, "sourceSubnet"), e);
            }
        }
        check_l4_route(ctx, &push_key(&field, "route"), &r.route, "TCP");
    }
    check_export_to(ctx, "spec.exportTo", &vs.export_to, false, false);
}

/// Routing on JWT claims needs the gateway's JWT filter, so sidecars (`mesh`) cannot do it.
fn check_jwt_claims_need_gateway(ctx: &mut Ctx<'_>, vs: &VirtualService) {
    for (i, r) in vs.http.iter().enumerate() {
        for (j, m) in r.matches.iter().enumerate() {
            let mf = push_index(&push_key(&push_index("spec.http", i), "match"), j);
            let maps: [(&str, &SmallMap<String, StringMatch>); 2] = [
                ("headers", &m.headers),
                ("withoutHeaders", &m.without_headers),
            ];
            for (key, map) in maps {
                for name in map.keys().filter(|n| is_jwt_claim(n)) {
                    ctx.error(
                        push_key(&push_key(&mf, key), name),
                        format!("JWT claim routing (`{name}`) is only supported on gateways: set `gateways` to gateway names without `mesh`"),
                    );
                }
            }
        }
    }
}

fn check_hosts(ctx: &mut Ctx<'_>, vs: &VirtualService, applies_to_gateway: bool) {
    let sni = vs
        .tls
        .iter()
        .any(|t| t.matches.iter().any(|m| !m.sni_hosts.is_empty()));
    let mut all_valid = true;
    for (i, h) in vs.hosts.iter().enumerate() {
        let path = push_index("spec.hosts", i);
        let res = if applies_to_gateway {
            validate_gateway_vs_host(sni, h)
        } else {
            validate_wildcard_domain(h)
        };
        match res {
            Err(_) if is_ip(h) => {}
            Err(e) => {
                ctx.error(&path, e);
                all_valid = false;
            }
            Ok(()) if !applies_to_gateway && h == "*" => {
                ctx.error(
                    &path,
                    "host `*` is not allowed for a VirtualService that applies to the mesh (sidecars): name the services",
                );
                all_valid = false;
            }
            Ok(()) => {}
        }
    }
    if !all_valid {
        return;
    }
    for (j, first) in first_overlaps(&vs.hosts).into_iter().enumerate() {
        if let Some(i) = first {
            ctx.error(
                push_index("spec.hosts", j),
                format!(
                    "duplicate host: `{}` overlaps `{}` (hosts[{i}]) in the same VirtualService",
                    vs.hosts[j], vs.hosts[i]
                ),
            );
        }
    }
}

/// Gateway-bound TLS VirtualServices may use the auto-generated SNI `outbound_.<port>_._.<host>`.
fn validate_gateway_vs_host(sni: bool, h: &str) -> Result<(), String> {
    if sni && h.starts_with("outbound_") {
        let parts: Vec<&str> = h.split('_').collect();
        let ok = parts.len() >= 4
            && h.len() <= 255
            && parts[1].bytes().any(|b| b.is_ascii_digit())
            && parts[3].bytes().any(|b| b.is_ascii_alphabetic());
        return if ok {
            Ok(())
        } else {
            Err(format!(
                "invalid host `{h}`: auto-generated SNI names must follow `outbound_.<port>_._.<hostname>`"
            ))
        };
    }
    validate_wildcard_domain(h)
}

fn check_sni_hosts(
    ctx: &mut Ctx<'_>,
    field: &str,
    sni_hosts: &[String],
    vs: &VirtualService,
    gw: bool,
) {
    if sni_hosts.is_empty() {
        ctx.error(field, "a TLS match needs at least one sniHosts entry");
    }
    for (k, s) in sni_hosts.iter().enumerate() {
        let path = push_index(field, k);
        let res = if gw {
            validate_gateway_vs_host(true, s)
        } else {
            validate_wildcard_domain(s)
        };
        if let Err(e) = res {
            if is_ip(s) {
                ctx.warn(
                    &path,
                    format!("sniHosts entry `{s}` is an IP address, which the SNI spec forbids and most clients never send"),
                );
            } else {
                ctx.error(&path, e);
            }
            continue;
        }
        if !vs.hosts.iter().any(|h| covers(h, s)) {
            ctx.error(
                &path,
                format!(
                    "sniHosts entry `{s}` is not covered by any of the VirtualService hosts [{}]",
                    vs.hosts.join(", ")
                ),
            );
        }
    }
}

fn check_l4_match(
    ctx: &mut Ctx<'_>,
    field: &str,
    subnets: &[String],
    port: Option<u32>,
    source_labels: &BTreeMap<String, String>,
    gateways: &[String],
) {
    let subnet_field = push_key(field, "destinationSubnets");
    for (k, s) in subnets.iter().enumerate() {
        if let Err(e) = check_ip_or_cidr(s) {
            ctx.error(push_index(&subnet_field, k), e);
        }
    }
    if let Some(p) = port.filter(|p| *p != 0) {
        check_port(ctx, &push_key(field, "port"), "match port", u64::from(p));
    }
    check_labels(ctx, &push_key(field, "sourceLabels"), source_labels);
    check_gateway_names(ctx, &push_key(field, "gateways"), gateways);
}

fn check_l4_route(ctx: &mut Ctx<'_>, field: &str, route: &[RouteDestination], kind: &str) {
    if route.is_empty() {
        ctx.error(
            field,
            format!("a {kind} rule needs at least one `route` destination"),
        );
        return;
    }
    let dests: Vec<(Option<&Destination>, Option<i32>)> = route
        .iter()
        .map(|d| (d.destination.as_ref(), d.weight))
        .collect();
    check_route_destinations(ctx, field, &dests);
}
