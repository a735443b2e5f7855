//! Webhook/CRD validation of `Gateway`.

use std::collections::HashMap;

use sluice_model::location::{push_index, push_key};
use sluice_model::{Gateway, GatewayPort, Server, ServerTlsSettings};

use super::common::{
    check_enum, check_port, check_unix_path, is_http_protocol, is_tls_protocol, parse_protocol,
};
use super::Ctx;
use crate::host::{is_dns1123_label, is_ip, validate_wildcard_domain};

const GATEWAY_PROTOCOLS: [&str; 10] = [
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "REDIS", "MYSQL", "TCP", "TLS",
];

const CIPHER_SUITES: [&str; 15] = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

pub(crate) fn validate(ctx: &mut Ctx<'_>, gw: &Gateway) {
    let name = ctx.resource().metadata.name.clone();
    if !is_dns1123_label(&name) {
        ctx.error(
            "metadata.name",
            format!("invalid Gateway name `{name}`: must be a DNS-1123 label (letters, digits and `-`, no dots)"),
        );
    }
    if gw.servers.is_empty() {
        ctx.error("spec.servers", "a Gateway needs at least one server");
    }
    let mut port_names: HashMap<&str, usize> = HashMap::new();
    for (i, s) in gw.servers.iter().enumerate() {
        let field = push_index("spec.servers", i);
        check_server(ctx, &field, s);
        let Some(port) = &s.port else { continue };
        // An empty name is already reported as missing.
        if !port.name.is_empty() {
            if let Some(first) = port_names.get(port.name.as_str()) {
                ctx.error(
                    push_key(&push_key(&field, "port"), "name"),
                    format!("duplicate port name `{}` (also used by servers[{first}]): port names must be unique in a Gateway", port.name),
                );
            } else {
                port_names.insert(port.name.as_str(), i);
            }
        }
        let redirect = s.tls.as_ref().and_then(|t| t.https_redirect) == Some(true);
        let proto = parse_protocol(&port.protocol);
        // Non-HTTP, non-TLS servers already draw a warning for having TLS settings at all.
        if redirect && !is_http_protocol(proto) && is_tls_protocol(proto) {
            ctx.warn(
                push_key(&push_key(&field, "tls"), "httpsRedirect"),
                format!(
                    "tls.httpsRedirect only has an effect on HTTP servers, not {}",
                    port.protocol
                ),
            );
        }
    }
}

fn check_server(ctx: &mut Ctx<'_>, field: &str, s: &Server) {
    let f = |k: &str| push_key(field, k);
    if s.hosts.is_empty() {
        ctx.error(f("hosts"), "a server needs at least one host (`*` for any)");
    }
    for (j, h) in s.hosts.iter().enumerate() {
        if let Err(e) = check_server_host(h) {
            ctx.error(push_index(&f("hosts"), j), e);
        }
    }
    let bind = s.bind.as_deref().unwrap_or("");
    let port_ok = match &s.port {
        None => {
            ctx.error(f("port"), "port is required (number, protocol and name)");
            false
        }
        Some(p) => check_server_port(ctx, &f("port"), p, bind),
    };
    if let Some(path) = bind.strip_prefix("unix://") {
        if let Err(e) = check_unix_path(path) {
            ctx.error(f("bind"), e);
        }
        if let Some(p) = s.port.as_ref().filter(|p| p.number != 0) {
            ctx.error(
                push_key(&f("port"), "number"),
                format!(
                    "port number must be 0 when binding to a unix socket, not {}",
                    p.number
                ),
            );
        }
    } else if !bind.is_empty() && !is_ip(bind) {
        ctx.error(
            f("bind"),
            format!("invalid bind `{bind}`: must be an IP address or unix://<path>"),
        );
    }
    if let Some(t) = &s.tls {
        check_tls(ctx, &f("tls"), t);
    }
    let Some(port) = s.port.as_ref().filter(|_| port_ok) else {
        return;
    };
    let proto = parse_protocol(&port.protocol);
    match &s.tls {
        None if is_tls_protocol(proto) => ctx.error(
            f("tls"),
            format!(
                "a server with protocol {} needs `tls` settings (mode and certificates)",
                port.protocol
            ),
        ),
        Some(t) if !is_tls_protocol(proto) => {
            let passthrough = matches!(
                t.mode.as_deref(),
                None | Some("PASSTHROUGH" | "AUTO_PASSTHROUGH")
            );
            let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
            let certs =
                set(&t.ca_certificates) || set(&t.private_key) || set(&t.server_certificate);
            if !is_http_protocol(proto) {
                // istiod only warns here (WrapWarning in validateServer): the settings are
                // ignored and the server still carries its plain TCP traffic.
                ctx.warn(
                    f("tls"),
                    format!(
                        "a {} server cannot have TLS settings; they are ignored: use protocol HTTPS or TLS to use TLS",
                        port.protocol
                    ),
                );
            } else if !passthrough || certs {
                ctx.error(
                    f("tls"),
                    format!("a plain-text {} server can only use tls.httpsRedirect: use protocol HTTPS to terminate TLS", port.protocol),
                );
            }
        }
        _ => {}
    }
}

/// Server hosts are `[namespace/]dnsName`; short names and partial wildcards cannot match a Host header.
fn check_server_host(h: &str) -> Result<(), String> {
    let name = match h.split_once('/') {
        None => h,
        Some((ns, name)) => {
            if ns.is_empty() || name.is_empty() {
                return Err(format!("invalid host `{h}`: namespace and dnsName in `namespace/dnsName` must not be empty"));
            }
            if ns != "*" && ns != "." && !is_dns1123_label(ns) {
                return Err(format!(
                    "invalid host `{h}`: namespace `{ns}` must be `*`, `.` or a namespace name"
                ));
            }
            name
        }
    };
    if name != "*" && !name.contains('.') {
        return Err(format!(
            "invalid host `{h}`: short names are not allowed on gateways; use the FQDN (e.g. `{name}.example.com`) or `*`"
        ));
    }
    if let Err(e) = validate_wildcard_domain(name) {
        if !is_ip(name) {
            return Err(e);
        }
    }
    if name.contains('*') && name != "*" && !name.starts_with("*.") {
        return Err(format!(
            "invalid host `{h}`: partial wildcards are not allowed; use `*` or `*.<domain>`"
        ));
    }
    Ok(())
}

/// Returns whether the port is usable for the protocol/TLS consistency checks.
fn check_server_port(ctx: &mut Ctx<'_>, field: &str, p: &GatewayPort, bind: &str) -> bool {
    let f = |k: &str| push_key(field, k);
    let mut ok = true;
    match parse_protocol(&p.protocol) {
        Some(known) if GATEWAY_PROTOCOLS.contains(&known) => {}
        Some(known) => ctx.warn(
            f("protocol"),
            format!(
                "protocol {known} has no effect on a gateway server; use one of {}",
                GATEWAY_PROTOCOLS.join(", ")
            ),
        ),
        None => {
            ctx.error(
                f("protocol"),
                format!(
                    "invalid protocol `{}`: must be one of {} (case-insensitive)",
                    p.protocol,
                    GATEWAY_PROTOCOLS.join(", ")
                ),
            );
            ok = false;
        }
    }
    if (p.number > 0 || !bind.starts_with("unix://"))
        && !check_port(ctx, &f("number"), "port number", u64::from(p.number))
    {
        ok = false;
    }
    if p.target_port.is_some_and(|t| t > 0) {
        ctx.error(
            f("targetPort"),
            "targetPort has no effect on Gateways: the number is the gateway Service port",
        );
        ok = false;
    }
    if p.name.is_empty() {
        ctx.error(f("name"), "port name is required");
        ok = false;
    }
    ok
}

fn check_tls(ctx: &mut Ctx<'_>, field: &str, t: &ServerTlsSettings) {
    let f = |k: &str| push_key(field, k);
    let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    let mode = check_enum(
        ctx,
        &f("mode"),
        "tls.mode",
        t.mode.as_deref(),
        &[
            "PASSTHROUGH",
            "SIMPLE",
            "MUTUAL",
            "AUTO_PASSTHROUGH",
            "ISTIO_MUTUAL",
            "OPTIONAL_MUTUAL",
        ],
    );
    let versions = ["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"];
    let min = check_enum(
        ctx,
        &f("minProtocolVersion"),
        "tls.minProtocolVersion",
        t.min_protocol_version.as_deref(),
        &versions,
    );
    check_enum(
        ctx,
        &f("maxProtocolVersion"),
        "tls.maxProtocolVersion",
        t.max_protocol_version.as_deref(),
        &versions,
    );
    if matches!(min.or(""), Some("TLSV1_0" | "TLSV1_1")) && t.cipher_suites.is_empty() {
        ctx.warn(
            f("minProtocolVersion"),
            "TLS versions below TLSV1_2 need compatible cipherSuites: the default suites no longer include any",
        );
    }
    check_ciphers(ctx, &f("cipherSuites"), &t.cipher_suites);
    if t.credential_names.len() > 2 {
        ctx.error(
            f("credentialNames"),
            format!(
                "{} credentialNames; at most 2 are allowed (one RSA, one ECDSA)",
                t.credential_names.len()
            ),
        );
    }
    if t.tls_certificates.len() > 2 {
        ctx.error(
            f("tlsCertificates"),
            format!(
                "{} tlsCertificates; at most 2 are allowed (one RSA, one ECDSA)",
                t.tls_certificates.len()
            ),
        );
    }
    let Some(mode) = mode.or("PASSTHROUGH") else {
        return;
    };
    if mode == "ISTIO_MUTUAL" {
        for (key, present) in [
            ("serverCertificate", set(&t.server_certificate)),
            ("privateKey", set(&t.private_key)),
            ("caCertificates", set(&t.ca_certificates)),
            ("tlsCertificates", !t.tls_certificates.is_empty()),
            ("credentialName", set(&t.credential_name)),
            ("credentialNames", !t.credential_names.is_empty()),
        ] {
            if present {
                ctx.error(
                    f(key),
                    format!("tls mode ISTIO_MUTUAL uses the mesh certificates, so `{key}` must not be set"),
                );
            }
        }
        return;
    }
    let any_cert = set(&t.ca_crl)
        || set(&t.server_certificate)
        || set(&t.private_key)
        || set(&t.ca_certificates)
        || !t.tls_certificates.is_empty()
        || set(&t.credential_name)
        || !t.credential_names.is_empty();
    if (mode == "PASSTHROUGH" || mode == "AUTO_PASSTHROUGH") && any_cert {
        let hint = if t.mode.is_none() {
            " (mode defaults to PASSTHROUGH: set mode: SIMPLE to terminate TLS)"
        } else {
            ""
        };
        ctx.warn(
            f("mode"),
            format!(
                "tls mode {mode} does not terminate TLS, so the certificates are ignored{hint}"
            ),
        );
    }
    let sources: Vec<&str> = [
        (
            "serverCertificate/privateKey",
            set(&t.server_certificate) && set(&t.private_key),
        ),
        ("credentialName", set(&t.credential_name)),
        ("credentialNames", !t.credential_names.is_empty()),
        ("tlsCertificates", !t.tls_certificates.is_empty()),
    ]
    .iter()
    .filter(|(_, s)| *s)
    .map(|(n, _)| *n)
    .collect();
    if sources.len() > 1 {
        ctx.error(
            field,
            format!(
                "only one certificate source may be set, found {}",
                sources.join(", ")
            ),
        );
    }
    let terminating = matches!(mode, "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL");
    let from_secret = set(&t.credential_name) || !t.credential_names.is_empty();
    if terminating && !from_secret {
        if mode != "SIMPLE" && !set(&t.ca_certificates) {
            ctx.error(
                f("caCertificates"),
                format!("tls mode {mode} requires caCertificates (the client CA bundle) or credentialName"),
            );
        }
        if t.tls_certificates.is_empty() {
            check_cert_pair(
                ctx,
                field,
                mode,
                set(&t.server_certificate),
                set(&t.private_key),
            );
        } else {
            for (i, c) in t.tls_certificates.iter().enumerate() {
                let path = push_index(&f("tlsCertificates"), i);
                check_cert_pair(
                    ctx,
                    &path,
                    mode,
                    set(&c.server_certificate),
                    set(&c.private_key),
                );
            }
        }
    }
    if set(&t.ca_crl) {
        if set(&t.credential_name) {
            ctx.error(
                f("caCrl"),
                "caCrl cannot be used with credentialName: put the CRL in the credential secret",
            );
        } else if mode == "SIMPLE" {
            ctx.error(
                f("caCrl"),
                "caCrl is not supported with tls mode SIMPLE (there are no client certificates)",
            );
        }
    }
}

fn check_cert_pair(ctx: &mut Ctx<'_>, field: &str, mode: &str, cert: bool, key: bool) {
    if !cert {
        ctx.error(
            push_key(field, "serverCertificate"),
            format!("tls mode {mode} requires serverCertificate (or credentialName)"),
        );
    }
    if !key {
        ctx.error(
            push_key(field, "privateKey"),
            format!("tls mode {mode} requires privateKey (or credentialName)"),
        );
    }
}

/// Unknown or repeated suites are dropped by Istio, so they only warrant a warning.
fn check_ciphers(ctx: &mut Ctx<'_>, field: &str, suites: &[String]) {
    let mut seen = Vec::new();
    for (i, cs) in suites.iter().enumerate() {
        let path = push_index(field, i);
        let operator =
            cs.is_empty() || cs == "ALL" || !cs.starts_with(|c: char| c.is_alphanumeric());
        if !operator && !CIPHER_SUITES.contains(&cs.as_str()) {
            ctx.warn(
                &path,
                format!(
                    "unknown cipher suite `{cs}` is ignored; known suites: {}",
                    CIPHER_SUITES.join(", ")
                ),
            );
        } else if seen.contains(cs) {
            ctx.warn(&path, format!("duplicate cipher suite `{cs}` is ignored"));
        } else {
            seen.push(cs.clone());
        }
    }
}
