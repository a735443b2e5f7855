//! Mesh role: a sidecar's outbound listeners, one per service port, virtual hosts chosen by Host.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sluice_model::{codes, Resource, Spec, VirtualService};

use super::http_route::{vs_binds, RuleContext, MESH};
use super::Compiler;
use crate::host::{covers, fqdn_cow, DOMAIN_SUFFIX};
use crate::listener::{Listener, ListenerRole};
use crate::registry::Service;
use crate::route_table::{Forward, Route, RouteAction, RouteSource};
use crate::vhost::{VirtualHost, VirtualHostTable};

/// One HTTP port of the mesh: the virtual hosts of every service on it and who owns each address.
pub(crate) struct MeshPort {
    pub(crate) port: u16,
    pub(crate) table: Arc<VirtualHostTable>,
    /// Every service address on this port; `Some` when one service owns it (its fallback).
    pub(crate) owners: BTreeMap<IpAddr, Option<Arc<VirtualHost>>>,
    /// Some service on this port has no loopback address (served on the mesh address).
    pub(crate) unaddressed: bool,
}

impl Compiler<'_> {
    /// The virtual hosts of every HTTP service port, compiled once for the bound mesh listeners
    /// and the sidecar's outbound interception alike.
    pub(crate) fn mesh_ports(&mut self) -> Vec<MeshPort> {
        let mut ports: BTreeMap<u16, Vec<Arc<Service>>> = BTreeMap::new();
        let services: Vec<Arc<Service>> = self.registry.services().cloned().collect();
        for svc in &services {
            for p in &svc.ports {
                // TCP ports are served by `compile_tcp_mesh`, TLS and HTTPS ones by
                // `compile_tls_mesh` (or, intercepted, by SNI).
                if p.protocol.is_http() {
                    ports.entry(p.number).or_default().push(svc.clone());
                }
            }
        }
        let candidates: Vec<&Resource> = self
            .ordered
            .iter()
            .copied()
            .filter(|r| matches!(&r.spec, Spec::VirtualService(vs) if vs_binds(vs, &r.metadata.namespace, MESH)))
            .collect();
        let claims = Claims::new(&candidates);
        let mut out = Vec::new();
        for (port, svcs) in ports {
            let mut vhosts = Vec::new();
            let mut owners: BTreeMap<IpAddr, Option<Arc<VirtualHost>>> = BTreeMap::new();
            let mut unaddressed = false;
            for svc in &svcs {
                let vh = self.service_vhost(svc, port, &claims);
                unaddressed |= !svc.addresses.iter().any(IpAddr::is_loopback);
                for ip in &svc.addresses {
                    // An address owned by one service falls back to that service for unknown Hosts.
                    owners
                        .entry(*ip)
                        .and_modify(|d| *d = None)
                        .or_insert_with(|| Some(vh.clone()));
                }
                vhosts.push(vh);
            }
            out.push(MeshPort {
                port,
                table: self.vhost_table(format!("mesh|{port}"), vhosts),
                owners,
                unaddressed,
            });
        }
        out
    }

    /// The mesh listeners to bind: each port on its services' loopback addresses, or on the mesh
    /// address for services without one.
    pub(crate) fn compile_mesh(
        &mut self,
        ports: &[MeshPort],
        taken: &HashSet<SocketAddr>,
    ) -> Vec<Listener> {
        let mut out = Vec::new();
        for mp in ports {
            let port = mp.port;
            let mut binds: BTreeMap<IpAddr, Option<Arc<VirtualHost>>> = mp
                .owners
                .iter()
                .filter(|(ip, _)| ip.is_loopback())
                .map(|(ip, vh)| (*ip, vh.clone()))
                .collect();
            if mp.unaddressed {
                binds.entry(self.proxy.mesh_address).or_insert(None);
            }
            for (ip, default_vh) in binds {
                let address = SocketAddr::new(ip, port);
                let wildcard_gateway = SocketAddr::new(self.proxy.gateway_address, port);
                if super::port_taken(taken, address)
                    || (self.proxy.gateway_address.is_unspecified()
                        && taken.contains(&wildcard_gateway))
                {
                    self.diagnostics.push(sluice_model::Diagnostic::warning(
                        codes::NOT_ENFORCED,
                        format!("mesh listener {address} is not bound: a gateway server already uses port {port} on {}", self.proxy.gateway_address),
                    ));
                    continue;
                }
                out.push(Listener {
                    name: format!("{ip}_{port}"),
                    address,
                    role: ListenerRole::Mesh,
                    virtual_hosts: mp.table.clone(),
                    default_virtual_host: default_vh,
                    stat_prefix: None,
                    unix: None,
                });
            }
        }
        out
    }

    /// The virtual host of one service on one port: its VirtualService's rules, else a default route.
    fn service_vhost(
        &mut self,
        svc: &Arc<Service>,
        port: u16,
        claims: &Claims<'_>,
    ) -> Arc<VirtualHost> {
        // The key is made for every service on every build, kept or not: the rest only when
        // the virtual host is compiled.
        let scope = format!("mesh|{}:{port}", svc.hostname);
        let claim = claims.claiming(&svc.hostname);
        let fresh: smallvec::SmallVec<[(usize, &str); 1]> = claim
            .iter()
            .map(|(r, _)| (super::reuse::address(r), MESH))
            .collect();
        self.vhost_unit(super::reuse::unit_key(&scope), &fresh, |c| {
            let name = format!("{}:{port}", svc.hostname);
            let scope = format!("mesh|{name}");
            // Its domains and default route come from the service itself.
            c.deps
                .borrow_mut()
                .push(super::reuse::name_hash(&svc.hostname));
            let routes = match claim {
                Some((r, vs)) => {
                    let ctx = RuleContext {
                        gateway: MESH,
                        port,
                        scope: &scope,
                    };
                    c.compile_http_routes(r, vs, ctx)
                }
                None => vec![c.default_route(svc, port)],
            };
            VirtualHost {
                domains: service_domains(svc, &c.proxy.namespace),
                name,
                routes: routes.into(),
                require_tls: false,
            }
        })
    }

    pub(crate) fn default_route(&self, svc: &Service, port: u16) -> Route {
        let dest = sluice_model::Destination {
            host: svc.hostname.clone(),
            subset: None,
            port: Some(sluice_model::PortSelector {
                number: u32::from(port),
            }),
        };
        let d = self.resolve_destination(&dest, &svc.namespace, port, 100);
        let split = self.schedule(&[1], Arc::new(Default::default()));
        Route {
            name: "default".into(),
            source: RouteSource {
                virtual_service: None,
                rule: 0,
            },
            matches: Vec::new(),
            action: RouteAction::Forward(Forward {
                destinations: vec![d],
                split,
            }),
            policy: self.default_route_policy(),
        }
    }
}

/// The VirtualServices bound to the mesh, indexed by host, to find the one claiming a
/// service: one lookup per service instead of a scan of every VirtualService (quadratic at
/// 10,000 services).
pub(crate) struct Claims<'a> {
    /// The oldest VirtualService naming each exact host (lowercase FQDN).
    exact: HashMap<Cow<'a, str>, (&'a Resource, &'a VirtualService), foldhash::fast::RandomState>,
    /// Wildcard hosts (FQDN) with their VirtualService, oldest first.
    wildcards: Vec<(String, &'a Resource, &'a VirtualService)>,
}

impl<'a> Claims<'a> {
    /// Indexes `candidates`, given in precedence order.
    pub(crate) fn new(candidates: &[&'a Resource]) -> Claims<'a> {
        let mut exact = HashMap::with_capacity_and_hasher(candidates.len(), Default::default());
        let mut wildcards = Vec::new();
        for r in candidates {
            let Spec::VirtualService(vs) = &r.spec else {
                continue;
            };
            for h in &vs.hosts {
                let h = fqdn_cow(h, &r.metadata.namespace);
                if h.starts_with('*') {
                    wildcards.push((h.into_owned(), *r, &**vs));
                } else {
                    // The namespace part of an expanded short name may still carry capitals.
                    let h = match h {
                        Cow::Owned(mut h) => {
                            h.make_ascii_lowercase();
                            Cow::Owned(h)
                        }
                        borrowed => borrowed,
                    };
                    exact.entry(h).or_insert((*r, &**vs));
                }
            }
        }
        Claims { exact, wildcards }
    }

    /// The VirtualService that claims a host on sidecars: exact hosts first, then the most
    /// specific wildcard; among equals the oldest. Later claimants are ignored (IST0109).
    pub(crate) fn claiming(&self, hostname: &str) -> Option<(&'a Resource, &'a VirtualService)> {
        // Only wildcards cover a wildcard name.
        if !hostname.starts_with('*') {
            if let Some(found) = self.exact.get(&*crate::host::lowercase(hostname)) {
                return Some(*found);
            }
        }
        let mut best: Option<(usize, &'a Resource, &'a VirtualService)> = None;
        for (h, r, vs) in &self.wildcards {
            if covers(h, hostname) && best.as_ref().is_none_or(|(b, _, _)| h.len() > *b) {
                best = Some((h.len(), *r, *vs));
            }
        }
        best.map(|(_, r, vs)| (r, vs))
    }
}

/// Domains a sidecar answers for a service: FQDN, Kubernetes short forms, and its addresses.
fn service_domains(svc: &Service, proxy_namespace: &str) -> Vec<String> {
    let mut d = vec![svc.hostname.clone()];
    let k8s_suffix = format!(".svc.{DOMAIN_SUFFIX}");
    if let Some(stem) = svc.hostname.strip_suffix(&k8s_suffix) {
        if let Some((name, ns)) = stem.split_once('.') {
            if ns == proxy_namespace {
                d.push(name.to_string());
            }
            d.push(format!("{name}.{ns}"));
            d.push(format!("{name}.{ns}.svc"));
        }
    }
    d.extend(svc.addresses.iter().map(|a| match a {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }));
    d
}
