//! Gateway role: one listener per HTTP server port of every Gateway selecting this proxy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use sluice_model::{codes, Gateway, Resource, Server, Severity, Spec, VirtualService};

use super::http_route::{vs_binds, RuleContext};
use super::Compiler;
use crate::host::{fqdn, intersect};
use crate::labels::selector_matches;
use crate::listener::{Listener, ListenerRole};
use crate::protocol::Protocol;
use crate::route_table::Route;
use crate::vhost::{VirtualHost, VirtualHostTable};

struct BoundServer<'a> {
    gateway: String,
    namespace: &'a str,
    server: &'a Server,
}

/// Splits a server host `ns/host` (namespace `*` when absent).
fn split_server_host(h: &str) -> (&str, &str) {
    h.split_once('/').unwrap_or(("*", h))
}

impl Compiler<'_> {
    pub(crate) fn compile_gateways(&mut self) -> Vec<Listener> {
        let mut ports: BTreeMap<u16, Vec<BoundServer<'_>>> = BTreeMap::new();
        let ordered = self.ordered.clone();
        for r in &ordered {
            let Spec::Gateway(gw) = &r.spec else { continue };
            if !self.selects_me(gw) {
                continue;
            }
            for (i, server) in gw.servers.iter().enumerate() {
                let Some(port) = server.port.as_ref() else {
                    continue;
                };
                let Ok(number) = u16::try_from(port.number) else {
                    continue;
                };
                let protocol = Protocol::parse(&port.protocol);
                if !protocol.is_some_and(|p| p.is_http() && p != Protocol::Unspecified) {
                    self.diagnostics.push(r.diag(
                        Severity::Warning,
                        codes::NOT_ENFORCED,
                        format!("spec.servers[{i}].port.protocol"),
                        format!("gateway servers with protocol {} are not served yet (only HTTP, HTTP2 and GRPC); port {number} is not bound", port.protocol),
                    ));
                    continue;
                }
                ports.entry(number).or_default().push(BoundServer {
                    gateway: format!("{}/{}", r.metadata.namespace, r.metadata.name),
                    namespace: &r.metadata.namespace,
                    server,
                });
            }
        }
        let mut out = Vec::new();
        for (port, servers) in ports {
            let address = SocketAddr::new(self.proxy.gateway_address, port);
            let mut gateways: Vec<String> = servers.iter().map(|s| s.gateway.clone()).collect();
            gateways.dedup();
            let mut domains: Vec<(String, Vec<Route>)> = Vec::new();
            for r in &ordered {
                let Spec::VirtualService(vs) = &r.spec else {
                    continue;
                };
                self.bind_virtual_service(r, vs, &servers, port, address, &mut domains);
            }
            let vhosts = domains
                .into_iter()
                .map(|(domain, routes)| {
                    // Istio merges every VirtualService of a gateway host and moves catch-alls last.
                    let (mut specific, catch_all): (Vec<Route>, Vec<Route>) =
                        routes.into_iter().partition(|r| !r.is_catch_all());
                    specific.extend(catch_all);
                    Arc::new(VirtualHost {
                        name: format!("{domain}:{port}"),
                        domains: vec![domain],
                        routes: specific,
                    })
                })
                .collect();
            out.push(Listener {
                name: format!("{}_{}", address.ip(), port),
                address,
                role: ListenerRole::Gateway { gateways },
                virtual_hosts: Arc::new(VirtualHostTable::new(vhosts)),
                default_virtual_host: None,
            });
        }
        out
    }

    fn selects_me(&self, gw: &Gateway) -> bool {
        gw.selector
            .as_ref()
            .is_none_or(|sel| selector_matches(sel, &self.proxy.labels))
    }

    fn bind_virtual_service(
        &mut self,
        r: &Resource,
        vs: &VirtualService,
        servers: &[BoundServer<'_>],
        port: u16,
        address: SocketAddr,
        domains: &mut Vec<(String, Vec<Route>)>,
    ) {
        let ns = &r.metadata.namespace;
        // (domain, gateway through which the VirtualService reaches it)
        let mut hits: Vec<(String, &str)> = Vec::new();
        for bound in servers.iter().filter(|b| vs_binds(vs, ns, &b.gateway)) {
            for h in &vs.hosts {
                let vh = fqdn(h, ns);
                for sh in &bound.server.hosts {
                    let (sns, shost) = split_server_host(sh);
                    let ns_ok = sns == "*" || sns == ns || (sns == "." && bound.namespace == ns);
                    if !ns_ok {
                        continue;
                    }
                    if let Some(d) = intersect(&vh, shost) {
                        let d = d.to_ascii_lowercase();
                        if !hits.iter().any(|(x, _)| *x == d) {
                            hits.push((d, &bound.gateway));
                        }
                    }
                }
            }
        }
        for (d, gateway) in hits {
            let scope = format!("{address}|{d}");
            let ctx = RuleContext {
                gateway,
                port,
                scope: &scope,
            };
            let routes = self.compile_http_routes(r, vs, ctx);
            match domains.iter_mut().find(|(x, _)| *x == d) {
                Some((_, existing)) => existing.extend(routes),
                None => domains.push((d, routes)),
            }
        }
    }
}
