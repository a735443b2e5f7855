//! VirtualService `tcp` rules → TCP listeners: gateway servers with protocol TCP, and the TCP
//! ports of registry services (sidecar outbound).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use sluice_model::{codes, L4MatchAttributes, Resource, Spec, VirtualService};

use super::gateway::server_hosts_admit;
use super::http_route::{vs_binds, vs_gateways, EntryConditions, RuleContext, MESH};
use super::mesh::Claims;
use super::Compiler;
use crate::host::fqdn;
use crate::listener::ListenerRole;
use crate::policy::HeaderPolicy;
use crate::registry::Service;
use crate::route_table::RouteSource;
use crate::tcp_route::{L4Match, TcpListener, TcpRule};

/// A `destinationSubnets` / `sourceSubnet` entry: a CIDR or a single address.
fn subnet(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// One `tcp` or `tls` rule before compilation: its match entries and destinations.
struct L4Rule<'m> {
    entries: Vec<(EntryConditions<'m>, L4Match)>,
    route: &'m [sluice_model::RouteDestination],
}

/// The compile-time conditions of a `tcp` match entry.
fn l4_conditions(m: &L4MatchAttributes) -> EntryConditions<'_> {
    EntryConditions {
        gateways: &m.gateways,
        port: m.port,
        source_labels: &m.source_labels,
        source_namespace: m.source_namespace.as_deref(),
    }
}

/// The per-connection conditions of a match entry.
fn l4_match(
    destination_subnets: &[String],
    source_subnet: Option<&str>,
    sni_hosts: &[String],
) -> L4Match {
    L4Match {
        destination_subnets: destination_subnets
            .iter()
            .filter_map(|s| subnet(s))
            .collect(),
        source_subnet: source_subnet.and_then(subnet),
        sni_hosts: sni_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
    }
}

impl<'a> Compiler<'a> {
    /// The `tcp` rules of `vs` that can apply in `ctx`, in order.
    pub(crate) fn compile_tcp_rules(
        &mut self,
        r: &Resource,
        vs: &VirtualService,
        ctx: RuleContext<'_>,
    ) -> Vec<TcpRule> {
        let rules = vs.tcp.iter().map(|rule| L4Rule {
            entries: rule
                .matches
                .iter()
                .map(|m| {
                    (
                        l4_conditions(m),
                        l4_match(&m.destination_subnets, m.source_subnet.as_deref(), &[]),
                    )
                })
                .collect(),
            route: &rule.route,
        });
        self.compile_l4_rules(r, vs, ctx, "tcp", rules)
    }

    /// The `tls` rules of `vs` that can apply in `ctx` (a passthrough server), in order.
    pub(crate) fn compile_tls_rules(
        &mut self,
        r: &Resource,
        vs: &VirtualService,
        ctx: RuleContext<'_>,
    ) -> Vec<TcpRule> {
        let rules = vs.tls.iter().map(|rule| L4Rule {
            entries: rule
                .matches
                .iter()
                .map(|m| {
                    let conditions = EntryConditions {
                        gateways: &m.gateways,
                        port: m.port,
                        source_labels: &m.source_labels,
                        source_namespace: m.source_namespace.as_deref(),
                    };
                    (
                        conditions,
                        l4_match(&m.destination_subnets, None, &m.sni_hosts),
                    )
                })
                .collect(),
            route: &rule.route,
        });
        self.compile_l4_rules(r, vs, ctx, "tls", rules)
    }

    /// Compiles L4 rules (`tcp` or `tls`): entries whose compile-time conditions fail are
    /// dropped, and a rule left without entries does not apply here.
    fn compile_l4_rules<'m>(
        &mut self,
        r: &Resource,
        vs: &VirtualService,
        ctx: RuleContext<'_>,
        kind: &str,
        rules: impl Iterator<Item = L4Rule<'m>>,
    ) -> Vec<TcpRule> {
        let ns = &r.metadata.namespace;
        let top = vs_gateways(vs, ns);
        let mut out = Vec::new();
        for (i, rule) in rules.enumerate() {
            let matches = if rule.entries.is_empty() {
                if !top.iter().any(|g| g == ctx.gateway) {
                    continue;
                }
                Vec::new()
            } else {
                let kept: Vec<L4Match> = rule
                    .entries
                    .into_iter()
                    .filter(|(c, _)| self.conditions_hold(*c, &top, ns, ctx))
                    .map(|(_, m)| m)
                    .collect();
                if kept.is_empty() {
                    continue;
                }
                kept
            };
            let route = rule
                .route
                .iter()
                .map(|d| (d.destination.as_ref(), d.weight, HeaderPolicy::default()))
                .collect();
            let split_key = format!("{kind}|{ns}/{}|{i}", r.metadata.name);
            let Some(forward) = self.compile_forward(r, route, &split_key, ctx) else {
                continue;
            };
            out.push(TcpRule {
                name: format!("{}.{i}", r.metadata.name),
                source: RouteSource {
                    virtual_service: Some(self.route_source(r)),
                    rule: i,
                },
                matches,
                forward,
            });
        }
        out
    }

    /// One TCP listener per TCP server port of the Gateways selecting this proxy, carrying the
    /// `tcp` rules of the VirtualServices bound to them.
    pub(crate) fn compile_tcp_gateways(&mut self, taken: &HashSet<SocketAddr>) -> Vec<TcpListener> {
        let ports = self.tcp_gateway_servers();
        let ordered = self.ordered.clone();
        let mut out = Vec::new();
        for ((port, ip), servers) in ports {
            let address = SocketAddr::new(ip, port);
            let mut gateways: Vec<String> = servers.iter().map(|s| s.gateway.clone()).collect();
            gateways.dedup();
            if super::port_taken(taken, address) {
                self.diagnostics.push(sluice_model::Diagnostic::warning(
                    codes::NOT_ENFORCED,
                    format!("gateway port {port} already has HTTP or TLS servers on {ip} (or on every address); its TCP servers are not served there (gateways {})", gateways.join(", ")),
                ));
                continue;
            }
            let mut rules = Vec::new();
            for r in &ordered {
                let Spec::VirtualService(vs) = &r.spec else {
                    continue;
                };
                if vs.tcp.is_empty() {
                    continue;
                }
                let ns = &r.metadata.namespace;
                // The first server of the port that the VirtualService binds and whose hosts
                // admit one of its hosts (`*` for the usual TCP gateway).
                let bound = servers.iter().find(|b| {
                    vs_binds(vs, ns, &b.gateway)
                        && vs
                            .hosts
                            .iter()
                            .any(|h| server_hosts_admit(b, &fqdn(h, ns), ns))
                });
                let Some(bound) = bound else { continue };
                let scope = format!("{address}");
                let ctx = RuleContext {
                    gateway: &bound.gateway,
                    port,
                    scope: &scope,
                };
                rules.extend(self.compile_tcp_rules(r, vs, ctx));
            }
            if rules.is_empty() {
                self.diagnostics.push(sluice_model::Diagnostic::warning(
                    codes::TCP_PORT_UNROUTED,
                    format!("gateway TCP port {port} ({}) has no VirtualService `tcp` rule bound to it: every connection to it is closed", gateways.join(", ")),
                ));
            }
            // Servers bound to one socket path share its listener, keyed by the path's address.
            let unix: Option<std::sync::Arc<str>> = servers
                .first()
                .and_then(|b| Self::server_unix(b.server))
                .map(std::sync::Arc::from);
            out.push(TcpListener {
                name: match &unix {
                    Some(path) => format!("unix://{path}"),
                    None => format!("{}_{}", address.ip(), port),
                },
                address,
                role: ListenerRole::Gateway { gateways },
                rules,
                unix,
            });
        }
        out
    }

    /// VirtualServices that apply on sidecars (no `gateways`, or `mesh`).
    pub(crate) fn mesh_candidates(&self) -> Vec<&'a Resource> {
        self.ordered
            .iter()
            .copied()
            .filter(|r| matches!(&r.spec, Spec::VirtualService(vs) if vs_binds(vs, &r.metadata.namespace, MESH)))
            .collect()
    }

    /// The rules of one TCP service port on sidecars: the claiming VirtualService's `tcp` rules,
    /// then the whole service (as Istio's sidecars fall back to the service's cluster).
    pub(super) fn tcp_service_rules(
        &mut self,
        svc: &Service,
        port: u16,
        claims: &Claims<'a>,
    ) -> Vec<TcpRule> {
        let scope = format!("mesh|{}:{port}", svc.hostname);
        let ctx = RuleContext {
            gateway: MESH,
            port,
            scope: &scope,
        };
        let mut rules = match claims.claiming(&svc.hostname) {
            Some((r, vs)) => self.compile_tcp_rules(r, vs, ctx),
            None => Vec::new(),
        };
        rules.extend(self.service_default_rule(svc, port));
        rules
    }

    /// One TCP listener per TCP service port and bound address (the service's loopback
    /// addresses, else the mesh address).
    pub(crate) fn compile_tcp_mesh(&mut self, taken: &HashSet<SocketAddr>) -> Vec<TcpListener> {
        let ports = self.tcp_mesh_ports();
        if ports.is_empty() {
            // Indexing every VirtualService's hosts costs as much as the config is large.
            return Vec::new();
        }
        let candidates = self.mesh_candidates();
        let claims = Claims::new(&candidates);
        let mut out = Vec::new();
        for (&port, svcs) in &ports {
            // Each address serves one service: its own loopback addresses, or the mesh address.
            let mut binds: BTreeMap<IpAddr, &Arc<Service>> = BTreeMap::new();
            for svc in svcs {
                let mut ips: Vec<IpAddr> = svc
                    .addresses
                    .iter()
                    .copied()
                    .filter(IpAddr::is_loopback)
                    .collect();
                if ips.is_empty() {
                    ips.push(self.proxy.mesh_address);
                }
                for ip in ips {
                    match binds.get(&ip) {
                        Some(first) => self.diagnostics.push(sluice_model::Diagnostic::warning(
                            codes::NOT_ENFORCED,
                            format!(
                                "TCP port {port} of {} is not served on {ip}: {} already uses it (TCP has no Host header to tell them apart)",
                                svc.hostname, first.hostname
                            ),
                        )),
                        None => {
                            binds.insert(ip, svc);
                        }
                    }
                }
            }
            for (ip, svc) in binds {
                let address = SocketAddr::new(ip, port);
                if super::port_taken(taken, address)
                    || taken.contains(&SocketAddr::new(self.proxy.gateway_address, port))
                {
                    self.diagnostics.push(sluice_model::Diagnostic::warning(
                        codes::NOT_ENFORCED,
                        format!("TCP listener {address} for {} is not bound: another listener already uses the port", svc.hostname),
                    ));
                    continue;
                }
                let rules = self.tcp_service_rules(svc, port, &claims);
                out.push(TcpListener {
                    name: format!("{ip}_{port}"),
                    address,
                    role: ListenerRole::Mesh,
                    rules,
                    unix: None,
                });
            }
        }
        out
    }

    /// The sidecar's outbound TCP rules by original destination: every address of a service
    /// with TCP ports. A service without an address cannot be told apart by a redirected
    /// connection (no Host header), so connections to it pass through, as in Istio.
    pub(crate) fn outbound_tcp(&mut self) -> HashMap<SocketAddr, Arc<TcpListener>> {
        let ports = self.tcp_mesh_ports();
        if ports.is_empty() {
            // Indexing every VirtualService's hosts costs as much as the config is large.
            return HashMap::new();
        }
        let candidates = self.mesh_candidates();
        let claims = Claims::new(&candidates);
        let mut out = HashMap::new();
        for (&port, svcs) in &ports {
            for svc in svcs {
                if svc.addresses.is_empty() {
                    self.diagnostics.push(sluice_model::Diagnostic::warning(
                        codes::NOT_ENFORCED,
                        format!("TCP port {port} of {} has no service address: connections the sidecar intercepts to it pass through to their original destination", svc.hostname),
                    ));
                    continue;
                }
                let rules = self.tcp_service_rules(svc, port, &claims);
                for ip in &svc.addresses {
                    let address = SocketAddr::new(*ip, port);
                    out.entry(address).or_insert_with(|| {
                        Arc::new(TcpListener {
                            name: format!("{ip}_{port}"),
                            address,
                            role: ListenerRole::Mesh,
                            rules: rules.clone(),
                            unix: None,
                        })
                    });
                }
            }
        }
        out
    }

    /// The TCP ports of registry services, with the services on each.
    pub(crate) fn tcp_mesh_ports(&self) -> BTreeMap<u16, Vec<Arc<Service>>> {
        let mut ports: BTreeMap<u16, Vec<Arc<Service>>> = BTreeMap::new();
        for svc in self.registry.services() {
            for p in &svc.ports {
                if p.protocol == crate::protocol::Protocol::Tcp {
                    ports.entry(p.number).or_default().push(svc.clone());
                }
            }
        }
        ports
    }
}
