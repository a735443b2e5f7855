//! The per-service mesh listeners of TLS and HTTPS service ports, on a proxy without outbound
//! interception: as Istio's outbound listener for such a port, the ClientHello's SNI chooses
//! (the mesh `tls` rules of the port, then each service by its host name, then the service that
//! owns the listener's address) and the connection is relayed untouched, never terminated.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sluice_model::{codes, ResourceRef, Spec};

use super::Compiler;
use crate::host::{covers, fqdn};
use crate::listener::ListenerRole;
use crate::protocol::Protocol;
use crate::registry::Service;
use crate::tcp_route::{TcpListener, TcpRule};

impl Compiler<'_> {
    /// One listener per TLS/HTTPS service port and bound address (the services' loopback
    /// addresses, else the mesh address). Built fresh at every compile, like the TCP mesh
    /// listeners: it depends on every mesh VirtualService's `tls` rules and on the registry.
    pub(crate) fn compile_tls_mesh(&mut self, taken: &HashSet<SocketAddr>) -> Vec<TcpListener> {
        let ports = self.tls_mesh_ports();
        if ports.is_empty() {
            return Vec::new();
        }
        let by_port = self.outbound_tls();
        let mut out = Vec::new();
        for (port, svcs) in ports {
            let port_rules: &[TcpRule] = by_port.get(&port).map_or(&[], |l| l.rules.as_slice());
            let ruled = self.services_with_tls_rules(port_rules, &svcs);
            // By host name: each service of the port without `tls` rules of its own (Istio
            // builds a service's default filter chain only when no `tls` match applies to it).
            // A DYNAMIC_DNS service's chain is among the port's rules already.
            let by_name: Vec<TcpRule> = svcs
                .iter()
                .filter(|s| s.resolution != "DYNAMIC_DNS" && !ruled.contains(&s.hostname))
                .filter_map(|s| self.sni_default_rule(s, port))
                .collect();
            for (ip, owner) in self.tls_binds(&svcs) {
                let address = SocketAddr::new(ip, port);
                // Another listener on the address and port, or on every address of the port.
                if super::port_taken(taken, address) {
                    self.diagnostics.push(sluice_model::Diagnostic::warning(
                        codes::NOT_ENFORCED,
                        format!("TLS listener {address} is not bound: another listener already uses the port"),
                    ));
                    continue;
                }
                let mut rules: Vec<TcpRule> = port_rules.to_vec();
                rules.extend(by_name.iter().cloned());
                // Without SNI, or naming no service: the address's own service (Istio's
                // filter chain for the service's address).
                if let Some(svc) = owner.filter(|s| !ruled.contains(&s.hostname)) {
                    rules.extend(self.service_default_rule(&svc, port));
                }
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

    /// The TLS and HTTPS ports of registry services, with the services on each.
    fn tls_mesh_ports(&self) -> BTreeMap<u16, Vec<Arc<Service>>> {
        let mut ports: BTreeMap<u16, Vec<Arc<Service>>> = BTreeMap::new();
        for svc in self.registry.services() {
            for p in &svc.ports {
                if matches!(p.protocol, Protocol::Tls | Protocol::Https) {
                    ports.entry(p.number).or_default().push(svc.clone());
                }
            }
        }
        ports
    }

    /// Where a port's listeners are bound: each loopback address of its services (with the
    /// service owning it, `None` when several share it), and the mesh address when a service
    /// has no loopback address (owned by none: there the SNI alone chooses).
    fn tls_binds(&self, svcs: &[Arc<Service>]) -> BTreeMap<IpAddr, Option<Arc<Service>>> {
        let mut binds: BTreeMap<IpAddr, Option<Arc<Service>>> = BTreeMap::new();
        let mut unaddressed = false;
        for svc in svcs {
            let mut loopback = svc.addresses.iter().filter(|a| a.is_loopback()).peekable();
            unaddressed |= loopback.peek().is_none();
            for ip in loopback {
                binds
                    .entry(*ip)
                    .and_modify(|o| *o = None)
                    .or_insert_with(|| Some(svc.clone()));
            }
        }
        if unaddressed {
            binds.entry(self.proxy.mesh_address).or_insert(None);
        }
        binds
    }

    /// The host names of `svcs` that a VirtualService with `tls` rules on this port names
    /// (Istio attaches a VirtualService's `tls` rules to the services its hosts name).
    fn services_with_tls_rules(&self, rules: &[TcpRule], svcs: &[Arc<Service>]) -> HashSet<String> {
        let sources: HashSet<&ResourceRef> = rules
            .iter()
            .filter_map(|r| r.source.virtual_service.as_deref())
            .collect();
        let mut hosts: Vec<String> = Vec::new();
        for r in self.ordered.iter().filter(|r| sources.contains(&r.key())) {
            if let Spec::VirtualService(vs) = &r.spec {
                hosts.extend(vs.hosts.iter().map(|h| fqdn(h, &r.metadata.namespace)));
            }
        }
        svcs.iter()
            .filter(|s| {
                hosts
                    .iter()
                    .any(|h| covers(h, &s.hostname) || covers(&s.hostname, h))
            })
            .map(|s| s.hostname.clone())
            .collect()
    }
}
