//! Gateway TLS ports: one filter chain per server, chosen by SNI. Terminating servers (`SIMPLE`,
//! `MUTUAL`, `OPTIONAL_MUTUAL`) route the requests inside with their own virtual hosts only;
//! passthrough servers relay the bytes by the VirtualServices' `tls` rules.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_model::{codes, Resource, ServerTlsSettings, Severity, Spec};

use super::gateway::{server_hosts_admit, split_server_host, BoundServer};
use super::http_route::{vs_binds, RuleContext};
use super::Compiler;
use crate::domain_index::DomainIndex;
use crate::host::fqdn;
use crate::listener::{Listener, ListenerRole};
use crate::protocol::Protocol;
use crate::tcp_route::TcpListener;
use crate::tls::{
    CaSource, CertificateSource, ChainAction, ClientAuth, FilterChain, ServerTls, TlsListener,
    TlsVersion,
};
use crate::vhost::VirtualHostTable;

/// TLS 1.2 suites the proxy offers (rustls with the `ring` provider), by their OpenSSL names.
/// TLS 1.3 suites are not configurable, as in Envoy.
pub const SUPPORTED_CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
];

/// A path from a YAML file: absolute as written, relative to the file's directory otherwise.
pub fn resolve_path(r: &Resource, path: &str) -> String {
    let p = std::path::Path::new(path);
    if p.is_absolute() {
        return path.to_string();
    }
    match r
        .origin
        .file
        .as_deref()
        .and_then(|f| std::path::Path::new(f).parent())
    {
        Some(dir) => dir.join(p).to_string_lossy().into_owned(),
        None => path.to_string(),
    }
}

/// A Secret name without Istio's optional `kubernetes://` prefix.
pub fn secret_name(name: &str) -> String {
    name.strip_prefix("kubernetes://")
        .unwrap_or(name)
        .to_string()
}

/// Which rules of a VirtualService a TLS server relays by.
#[derive(Clone, Copy)]
enum L4Kind {
    /// `tls` rules, by SNI (passthrough).
    Tls,
    /// `tcp` rules (the stream inside terminated TLS).
    Tcp,
}

impl Compiler<'_> {
    /// The TLS listener of one gateway port and bind address.
    pub(crate) fn compile_tls_port(
        &mut self,
        address: SocketAddr,
        servers: &[BoundServer<'_>],
    ) -> TlsListener {
        let port = address.port();
        let mut gateways: Vec<String> = servers.iter().map(|s| s.gateway.clone()).collect();
        gateways.dedup();
        let name = format!("{}_{}", address.ip(), port);
        let mut claimed = DomainIndex::default();
        let mut chains = Vec::new();
        for bound in servers {
            let r = bound.resource;
            let field = format!("spec.servers[{}]", bound.index);
            let names: Vec<String> = bound
                .server
                .hosts
                .iter()
                .map(|h| split_server_host(h).1.to_ascii_lowercase())
                .collect();
            // A `*` host puts no constraint on the SNI.
            let server_names = if names.iter().any(|n| n == "*") {
                Vec::new()
            } else {
                names
            };
            let keys: Vec<&str> = if server_names.is_empty() {
                vec!["*"]
            } else {
                server_names.iter().map(String::as_str).collect()
            };
            if let Some(dup) = keys.iter().find(|k| claimed.claims(k)) {
                self.diagnostics.push(r.diag(
                    Severity::Warning,
                    codes::GATEWAY_PORT_CONFLICT,
                    format!("{field}.hosts"),
                    format!("host {dup} is already served by an earlier TLS server on port {port}; this server is skipped, as in Istio"),
                ));
                continue;
            }
            let Some(tls) = &bound.server.tls else {
                continue;
            };
            let mode = tls.mode.as_deref().unwrap_or("PASSTHROUGH");
            let action = match mode {
                "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL" | "ISTIO_MUTUAL"
                    if Protocol::parse(bound.protocol()) == Some(Protocol::Tls) =>
                {
                    // Istio: a TLS server that terminates routes the stream by `tcp` rules.
                    let server_tls = self.server_tls(r, &field, tls, mode);
                    let rules = self.l4_rules_for(bound, port, address, L4Kind::Tcp);
                    ChainAction::TerminateTcp {
                        tls: Arc::new(server_tls),
                        tcp: Arc::new(TcpListener {
                            name: format!("{name}|{}", keys.join(",")),
                            address,
                            role: ListenerRole::Gateway {
                                gateways: vec![bound.gateway.clone()],
                            },
                            rules,
                            unix: None,
                        }),
                    }
                }
                "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL" | "ISTIO_MUTUAL" => {
                    let server_tls = self.server_tls(r, &field, tls, mode);
                    let chain = format!("{}#{}", bound.gateway, bound.index);
                    let vhosts = self.gateway_virtual_hosts(
                        std::slice::from_ref(bound),
                        port,
                        address,
                        &chain,
                    );
                    ChainAction::Terminate {
                        tls: Arc::new(server_tls),
                        http: Arc::new(Listener {
                            name: format!("{name}|{}", keys.join(",")),
                            address,
                            role: ListenerRole::Gateway {
                                gateways: vec![bound.gateway.clone()],
                            },
                            virtual_hosts: Arc::new(VirtualHostTable::new(vhosts)),
                            default_virtual_host: None,
                            // Istio: the server's name is its connection manager's stat prefix.
                            stat_prefix: bound
                                .server
                                .name
                                .as_deref()
                                .filter(|n| !n.is_empty())
                                .map(Arc::from),
                            unix: None,
                        }),
                    }
                }
                "PASSTHROUGH" => {
                    let rules = self.l4_rules_for(bound, port, address, L4Kind::Tls);
                    ChainAction::Passthrough(Arc::new(TcpListener {
                        name: format!("{name}|{}", keys.join(",")),
                        address,
                        role: ListenerRole::Gateway {
                            gateways: vec![bound.gateway.clone()],
                        },
                        rules,
                        unix: None,
                    }))
                }
                "AUTO_PASSTHROUGH" => ChainAction::AutoPassthrough {
                    hosts: bound
                        .server
                        .hosts
                        .iter()
                        .map(|h| split_server_host(h).1.to_ascii_lowercase())
                        .collect(),
                },
                other => {
                    self.diagnostics.push(r.diag(
                        Severity::Warning,
                        codes::NOT_ENFORCED,
                        format!("{field}.tls.mode"),
                        format!("tls mode {other} (mesh mTLS) is not enforced yet; port {port} does not serve this server"),
                    ));
                    continue;
                }
            };
            for k in &keys {
                claimed.insert(k, chains.len());
            }
            chains.push(FilterChain {
                server_names,
                gateway: bound.gateway.clone(),
                action,
            });
        }
        TlsListener::new(name, address, ListenerRole::Gateway { gateways }, chains)
    }

    /// A terminating server's TLS: certificate sources, client verification, versions.
    pub(crate) fn server_tls(
        &mut self,
        r: &Resource,
        field: &str,
        tls: &ServerTlsSettings,
        mode: &str,
    ) -> ServerTls {
        let ns = self.proxy.namespace.clone();
        let mut certificates = Vec::new();
        if mode == "ISTIO_MUTUAL" {
            // The gateway's workload certificate; clients must present a mesh certificate.
            certificates.push(CertificateSource::Mesh);
        }
        let credentials: Vec<&String> = tls
            .credential_name
            .iter()
            .chain(tls.credential_names.iter())
            .collect();
        for c in &credentials {
            certificates.push(CertificateSource::Secret {
                namespace: ns.clone(),
                name: secret_name(c),
            });
        }
        for c in &tls.tls_certificates {
            if let (Some(cert), Some(key)) = (&c.server_certificate, &c.private_key) {
                certificates.push(CertificateSource::Files {
                    certificate: resolve_path(r, cert),
                    private_key: resolve_path(r, key),
                });
            }
        }
        if certificates.is_empty() {
            if let (Some(cert), Some(key)) = (&tls.server_certificate, &tls.private_key) {
                certificates.push(CertificateSource::Files {
                    certificate: resolve_path(r, cert),
                    private_key: resolve_path(r, key),
                });
            }
        }
        let client_auth = match mode {
            "MUTUAL" | "ISTIO_MUTUAL" => ClientAuth::Required,
            "OPTIONAL_MUTUAL" => ClientAuth::Optional,
            _ => ClientAuth::None,
        };
        let client_ca = match client_auth {
            ClientAuth::None => None,
            _ if mode == "ISTIO_MUTUAL" => Some(CaSource::Mesh),
            _ => {
                let file = tls.ca_certificates.as_deref().or_else(|| {
                    tls.tls_certificates
                        .iter()
                        .find_map(|c| c.ca_certificates.as_deref())
                });
                match file {
                    Some(path) => Some(CaSource::File {
                        path: resolve_path(r, path),
                    }),
                    None => tls
                        .ca_cert_credential_name
                        .as_deref()
                        .or(credentials.first().map(|s| s.as_str()))
                        .map(|name| CaSource::Secret {
                            namespace: ns.clone(),
                            name: secret_name(name),
                        }),
                }
            }
        };
        let version = |key: &str, v: Option<&str>, default: TlsVersion| match v {
            None | Some("TLS_AUTO") => (default, None),
            Some(s) => match TlsVersion::parse(s) {
                Some(v) => (v, None),
                None => (TlsVersion::V1_2, Some(format!("{field}.tls.{key}"))),
            },
        };
        let (min_version, min_low) = version(
            "minProtocolVersion",
            tls.min_protocol_version.as_deref(),
            TlsVersion::V1_2,
        );
        let (max_version, max_low) = version(
            "maxProtocolVersion",
            tls.max_protocol_version.as_deref(),
            TlsVersion::V1_3,
        );
        for f in [min_low, max_low].into_iter().flatten() {
            self.diagnostics.push(r.diag(
                Severity::Warning,
                codes::NOT_ENFORCED,
                f,
                "TLS 1.0 and 1.1 are not offered (the TLS library supports 1.2 and 1.3 only); TLS 1.2 is used".to_string(),
            ));
        }
        let mut cipher_suites = Vec::new();
        for (i, entry) in tls.cipher_suites.iter().enumerate() {
            // `[A|B]` is an equal-preference group in Envoy's syntax.
            for name in entry.trim_matches(|c| c == '[' || c == ']').split('|') {
                if SUPPORTED_CIPHER_SUITES.contains(&name) {
                    if !cipher_suites.iter().any(|c| c == name) {
                        cipher_suites.push(name.to_string());
                    }
                } else {
                    self.diagnostics.push(r.diag(
                        Severity::Warning,
                        codes::NOT_ENFORCED,
                        format!("{field}.tls.cipherSuites[{i}]"),
                        format!(
                            "cipher suite {name} is not available and is ignored (available: {})",
                            SUPPORTED_CIPHER_SUITES.join(", ")
                        ),
                    ));
                }
            }
        }
        if !tls.cipher_suites.is_empty() && cipher_suites.is_empty() {
            self.diagnostics.push(r.diag(
                Severity::Warning,
                codes::NOT_ENFORCED,
                format!("{field}.tls.cipherSuites"),
                "none of the cipher suites is available: the default suites are used".to_string(),
            ));
        }
        ServerTls {
            client_auth,
            certificates,
            client_ca,
            subject_alt_names: tls.subject_alt_names.clone(),
            verify_certificate_spki: tls.verify_certificate_spki.clone(),
            verify_certificate_hash: tls.verify_certificate_hash.clone(),
            insecure_skip_verify: tls.insecure_skip_verify == Some(true),
            min_version,
            max_version: max_version.max(min_version),
            cipher_suites,
            // Checked against verified client certificates only (none with SIMPLE).
            ca_crl: tls
                .ca_crl
                .as_deref()
                .filter(|c| !c.is_empty() && client_auth != ClientAuth::None)
                .map(|c| resolve_path(r, c)),
        }
    }

    /// The `tls` rules (passthrough) or `tcp` rules (terminated TLS) of the VirtualServices
    /// bound to a server, in order.
    fn l4_rules_for(
        &mut self,
        bound: &BoundServer<'_>,
        port: u16,
        address: SocketAddr,
        kind: L4Kind,
    ) -> Vec<crate::tcp_route::TcpRule> {
        let ordered = self.ordered.clone();
        let scope = format!("{address}|{}", bound.server.hosts.join(","));
        let mut rules = Vec::new();
        for r in &ordered {
            let Spec::VirtualService(vs) = &r.spec else {
                continue;
            };
            let ns = &r.metadata.namespace;
            let empty = match kind {
                L4Kind::Tls => vs.tls.is_empty(),
                L4Kind::Tcp => vs.tcp.is_empty(),
            };
            if empty
                || !vs_binds(vs, ns, &bound.gateway)
                || !vs
                    .hosts
                    .iter()
                    .any(|h| server_hosts_admit(bound, &fqdn(h, ns), ns))
            {
                continue;
            }
            let ctx = RuleContext {
                gateway: &bound.gateway,
                port,
                scope: &scope,
            };
            rules.extend(match kind {
                L4Kind::Tls => self.compile_tls_rules(r, vs, ctx),
                L4Kind::Tcp => self.compile_tcp_rules(r, vs, ctx),
            });
        }
        rules
    }
}
