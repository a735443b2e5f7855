//! Sidecar `tls` rules: TLS is routed by the ClientHello's SNI (Istio's egress TLS routing),
//! on intercepted connections by original destination port, and without interception on the
//! per-service mesh listeners of TLS and HTTPS ports (Istio's outbound listener for such a port).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use sluice_model::Spec;

use super::http_route::{RuleContext, MESH};
use super::Compiler;
use crate::host::fqdn;
use crate::listener::ListenerRole;
use crate::protocol::Protocol;
use crate::tcp_route::{L4Match, TcpListener, TcpRule};

/// Where an entry of a `tls` rule without `port` applies when no registry service says.
const DEFAULT_TLS_PORT: u16 = 443;

impl Compiler<'_> {
    /// `resolution: NONE` forwards to the original destination, which only an intercepted
    /// connection has: on this proxy's own mesh listeners the destination is the proxy itself.
    pub(crate) fn warn_original_dst_without_interception(&mut self) {
        let mut warned = std::collections::BTreeSet::new();
        let sources: Vec<_> = self
            .registry
            .services()
            .filter(|s| s.resolution == "NONE" && s.endpoints.is_empty())
            .map(|s| s.source.clone())
            .filter(|k| warned.insert(k.clone()))
            .collect();
        for key in sources {
            let Some(r) = self.ordered.iter().find(|r| r.key() == key) else {
                continue;
            };
            self.diagnostics.push(r.diag(
                sluice_model::Severity::Warning,
                sluice_model::codes::ORIGINAL_DST_WITHOUT_INTERCEPTION,
                "spec.resolution",
                "resolution NONE forwards connections the sidecar intercepts (`--outbound-port`) to their original destination; this proxy's per-service mesh listeners have none, so they answer 503 UH (no healthy upstream)",
            ));
        }
    }

    /// The mesh `tls` rules by destination port: an entry's `port`, else the TLS and HTTPS
    /// ports of the services the VirtualService's hosts name (443 when none).
    pub(crate) fn outbound_tls(&mut self) -> HashMap<u16, Arc<TcpListener>> {
        let candidates = self.mesh_candidates();
        let mut by_port: BTreeMap<u16, Vec<TcpRule>> = BTreeMap::new();
        for r in candidates {
            let Spec::VirtualService(vs) = &r.spec else {
                continue;
            };
            if vs.tls.is_empty() {
                continue;
            }
            let ns = &r.metadata.namespace;
            let mut ports: BTreeSet<u16> = vs
                .tls
                .iter()
                .flat_map(|rule| rule.matches.iter())
                .filter_map(|m| m.port.and_then(|p| u16::try_from(p).ok()))
                .collect();
            let unported = vs
                .tls
                .iter()
                .flat_map(|rule| rule.matches.iter())
                .any(|m| m.port.is_none());
            if unported {
                let mut service_ports = BTreeSet::new();
                for h in &vs.hosts {
                    let host = fqdn(h, ns);
                    for svc in self.registry.matching(&host) {
                        service_ports.extend(
                            svc.ports
                                .iter()
                                .filter(|p| matches!(p.protocol, Protocol::Tls | Protocol::Https))
                                .map(|p| p.number),
                        );
                    }
                }
                if service_ports.is_empty() {
                    ports.insert(DEFAULT_TLS_PORT);
                }
                ports.extend(service_ports);
            }
            for port in ports {
                let scope = format!("mesh-tls|{port}");
                let ctx = RuleContext {
                    gateway: MESH,
                    port,
                    scope: &scope,
                };
                let rules = self.compile_tls_rules(r, vs, ctx);
                by_port.entry(port).or_default().extend(rules);
            }
        }
        self.dynamic_dns_tls_routes(&mut by_port);
        by_port
            .into_iter()
            .filter(|(_, rules)| !rules.is_empty())
            .map(|(port, rules)| {
                let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                let listener = TcpListener {
                    name: format!("0.0.0.0_{port}|tls"),
                    address,
                    role: ListenerRole::Mesh,
                    rules,
                    unix: None,
                };
                (port, Arc::new(listener))
            })
            .collect()
    }

    /// A `DYNAMIC_DNS` ServiceEntry's TLS ports take what the sidecar intercepts for its hosts
    /// by SNI, after the `tls` rules, as Istio's filter chain for the service does (Envoy's
    /// `sni_dynamic_forward_proxy`: the server name is resolved when the connection arrives).
    fn dynamic_dns_tls_routes(&mut self, by_port: &mut BTreeMap<u16, Vec<TcpRule>>) {
        let services: Vec<Arc<crate::registry::Service>> = self
            .registry
            .services()
            .filter(|s| s.resolution == "DYNAMIC_DNS")
            .cloned()
            .collect();
        for svc in services {
            for p in &svc.ports {
                if !matches!(p.protocol, Protocol::Tls | Protocol::Https) {
                    continue;
                }
                if let Some(rule) = self.sni_default_rule(&svc, p.number) {
                    by_port.entry(p.number).or_default().push(rule);
                }
            }
        }
    }
}

impl Compiler<'_> {
    /// A service's default route on a TLS `port`, taken by a ClientHello naming the service
    /// (Istio's filter chain for a TLS service port, matched by its host name).
    pub(crate) fn sni_default_rule(
        &self,
        svc: &crate::registry::Service,
        port: u16,
    ) -> Option<TcpRule> {
        let mut rule = self.service_default_rule(svc, port)?;
        rule.matches = vec![L4Match {
            sni_hosts: vec![svc.hostname.clone()],
            ..L4Match::default()
        }];
        Some(rule)
    }

    /// A service's default route on `port` as an L4 rule matching every connection.
    pub(crate) fn service_default_rule(
        &self,
        svc: &crate::registry::Service,
        port: u16,
    ) -> Option<TcpRule> {
        let route = self.default_route(svc, port);
        match route.action {
            crate::route_table::RouteAction::Forward(forward) => Some(TcpRule {
                name: "default".into(),
                source: route.source,
                matches: Vec::new(),
                forward,
            }),
            _ => None,
        }
    }
}
