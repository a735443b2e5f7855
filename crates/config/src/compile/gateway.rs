//! Gateway role: one listener per HTTP server port of every Gateway selecting this proxy.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use indexmap::IndexMap;
use sluice_model::{codes, Gateway, Resource, Server, Severity, Spec, VirtualService};
use smallvec::SmallVec;

use super::http_route::{vs_binds, RuleContext};
use super::Compiler;
use crate::host::{fqdn_cow, intersect, intersect_lowercase};
use crate::labels::selector_matches;
use crate::listener::{Listener, ListenerRole};
use crate::pipe::unix_key;
use crate::protocol::Protocol;
use crate::route_table::Route;
use crate::tls::TlsListener;
use crate::vhost::VirtualHost;

/// A Gateway server selecting this proxy.
pub(crate) struct BoundServer<'a> {
    /// `ns/name` of its Gateway.
    pub(crate) gateway: String,
    /// The Gateway's namespace.
    pub(crate) namespace: &'a str,
    /// The server.
    pub(crate) server: &'a Server,
    /// Its Gateway object (diagnostics, paths relative to its file).
    pub(crate) resource: &'a Resource,
    /// Its index in `spec.servers`.
    pub(crate) index: usize,
}

impl BoundServer<'_> {
    /// The declared protocol, as written.
    pub(crate) fn protocol(&self) -> &str {
        self.server
            .port
            .as_ref()
            .map_or("", |p| p.protocol.as_str())
    }
}

/// Marks the virtual hosts of HTTP servers with `tls.httpsRedirect` as requiring TLS, and adds a
/// redirecting virtual host for each of their hosts that no VirtualService covers (Envoy
/// redirects before routing, whether or not a route exists).
fn https_redirects(servers: &[BoundServer<'_>], port: u16, vhosts: &mut Vec<Arc<VirtualHost>>) {
    for b in servers {
        if b.server.tls.as_ref().and_then(|t| t.https_redirect) != Some(true) {
            continue;
        }
        for sh in &b.server.hosts {
            let (_, shost) = split_server_host(sh);
            let mut covered = false;
            for vh in vhosts.iter_mut() {
                if vh.domains.iter().any(|d| intersect(d, shost).is_some()) {
                    Arc::make_mut(vh).require_tls = true;
                    covered |= vh.domains.iter().any(|d| d.eq_ignore_ascii_case(shost));
                }
            }
            if !covered {
                vhosts.push(Arc::new(VirtualHost {
                    name: format!("{shost}:{port}"),
                    domains: vec![shost.to_ascii_lowercase()],
                    routes: Arc::new([]),
                    require_tls: true,
                }));
            }
        }
    }
}

/// A compiled gateway domain whose routes the next domain takes when the same VirtualServices
/// bind it through the same gateways.
struct Twin<'r> {
    fresh: SmallVec<[(usize, &'r str); 2]>,
    unit: Arc<super::reuse::VhostUnit>,
}

/// A VirtualService bound to a gateway domain, with the gateway it reached it through.
type Binding<'r> = (&'r Resource, &'r VirtualService, &'r str);

/// The VirtualServices of a gateway port by domain, in the order the domains were first bound;
/// the index keeps binding 10,000 VirtualServices linear, and most domains have one binding.
#[derive(Default)]
struct Domains<'r> {
    list: IndexMap<Cow<'r, str>, SmallVec<[Binding<'r>; 1]>, foldhash::fast::RandomState>,
}

impl<'r> Domains<'r> {
    /// Appends a binding to the domain's, the domain added last if new.
    fn add(&mut self, domain: Cow<'r, str>, binding: Binding<'r>) {
        self.list.entry(domain).or_default().push(binding);
    }
}

/// Whether one of the server's `hosts` admits the VirtualService host `vh` (FQDN) of a
/// VirtualService in namespace `ns`.
pub(crate) fn server_hosts_admit(bound: &BoundServer<'_>, vh: &str, ns: &str) -> bool {
    bound.server.hosts.iter().any(|sh| {
        let (sns, shost) = split_server_host(sh);
        let ns_ok = sns == "*" || sns == ns || (sns == "." && bound.namespace == ns);
        ns_ok && intersect(vh, shost).is_some()
    })
}

/// Where a gateway server listens: (port, IP).
pub(crate) type ServerAddress = (u16, IpAddr);

/// Splits a server host `ns/host` (namespace `*` when absent).
pub(crate) fn split_server_host(h: &str) -> (&str, &str) {
    h.split_once('/').unwrap_or(("*", h))
}

impl<'a> Compiler<'a> {
    /// The IP a server listens on: its `bind` address (Istio binds the server's listener to it),
    /// else the proxy's gateway address. `None` for a `unix://` bind (see `server_key`).
    pub(crate) fn server_ip(&self, server: &Server) -> Option<IpAddr> {
        match server.bind.as_deref().map(str::trim) {
            None | Some("") => Some(self.proxy.gateway_address),
            Some(b) => b.parse().ok(),
        }
    }

    /// The path of a server's `bind: unix://PATH`.
    pub(crate) fn server_unix(server: &Server) -> Option<&str> {
        server
            .bind
            .as_deref()
            .map(str::trim)
            .and_then(|b| b.strip_prefix("unix://"))
            .filter(|p| !p.is_empty())
    }

    /// The TCP servers of the Gateways selecting this proxy, by port and bind address.
    pub(crate) fn tcp_gateway_servers(&self) -> BTreeMap<ServerAddress, Vec<BoundServer<'a>>> {
        let mut ports: BTreeMap<ServerAddress, Vec<BoundServer<'a>>> = BTreeMap::new();
        for r in self.ordered.iter().copied() {
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
                // A unix domain socket is keyed by an address derived from its path.
                let unix = Self::server_unix(server);
                let Some(ip) = self.server_ip(server).or(unix.map(unix_key)) else {
                    continue;
                };
                if Protocol::parse(&port.protocol) == Some(Protocol::Tcp) {
                    ports.entry((number, ip)).or_default().push(BoundServer {
                        gateway: format!("{}/{}", r.metadata.namespace, r.metadata.name),
                        namespace: &r.metadata.namespace,
                        server,
                        resource: r,
                        index: i,
                    });
                }
            }
        }
        ports
    }

    /// Listeners for the HTTP, HTTPS and TLS server ports of the Gateways selecting this proxy:
    /// plain-text HTTP ports, and TLS ports (one filter chain per server, chosen by SNI). As in
    /// Istio, servers are merged per (port, `bind`): each bind address gets its own listener.
    pub(crate) fn compile_gateways(&mut self) -> (Vec<Listener>, Vec<TlsListener>) {
        let mut ports: BTreeMap<ServerAddress, Vec<BoundServer<'_>>> = BTreeMap::new();
        let mut tls_ports: BTreeMap<ServerAddress, Vec<BoundServer<'_>>> = BTreeMap::new();
        let ordered = self.ordered.clone();
        self.warn_if_no_gateway_selects_me();
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
                let unix = Self::server_unix(server);
                let Some(ip) = self.server_ip(server).or(unix.map(unix_key)) else {
                    continue;
                };
                let bound = BoundServer {
                    gateway: format!("{}/{}", r.metadata.namespace, r.metadata.name),
                    namespace: &r.metadata.namespace,
                    server,
                    resource: r,
                    index: i,
                };
                match Protocol::parse(&port.protocol) {
                    // Served by `compile_tcp_gateways`.
                    Some(Protocol::Tcp) => {}
                    Some(Protocol::Https | Protocol::Tls) => {
                        tls_ports.entry((number, ip)).or_default().push(bound)
                    }
                    Some(p) if p.is_http() && p != Protocol::Unspecified => {
                        ports.entry((number, ip)).or_default().push(bound)
                    }
                    _ => self.diagnostics.push(r.diag(
                        Severity::Warning,
                        codes::NOT_ENFORCED,
                        format!("spec.servers[{i}].port.protocol"),
                        format!("gateway servers with protocol {} are not served yet (only HTTP, HTTP2, GRPC, HTTPS, TLS and TCP); port {number} is not bound", port.protocol),
                    )),
                }
            }
        }
        self.drop_binds_under_wildcards(&mut ports, &mut tls_ports);
        // Istio refuses conflicting protocols on one port; the plain-text servers keep it.
        tls_ports.retain(|key, servers| {
            if !ports.contains_key(key) {
                return true;
            }
            let port = key.0;
            for b in servers.iter() {
                self.diagnostics.push(b.resource.diag(
                    Severity::Warning,
                    codes::GATEWAY_PORT_CONFLICT,
                    format!("spec.servers[{}]", b.index),
                    format!("port {port} already has plain-text HTTP servers; this {} server is ignored (one port cannot serve both)", b.protocol()),
                ));
            }
            false
        });
        let mut out = Vec::new();
        for ((port, ip), servers) in ports {
            let address = SocketAddr::new(ip, port);
            let mut gateways: Vec<String> = servers.iter().map(|s| s.gateway.clone()).collect();
            gateways.dedup();
            let mut vhosts = self.gateway_virtual_hosts(&servers, port, address, "");
            https_redirects(&servers, port, &mut vhosts);
            // Servers bound to one socket path share its listener, keyed by the path's address.
            let unix: Option<Arc<str>> = servers
                .first()
                .and_then(|b| Self::server_unix(b.server))
                .map(Arc::from);
            out.push(Listener {
                name: match &unix {
                    Some(path) => format!("unix://{path}"),
                    None => format!("{}_{}", address.ip(), port),
                },
                address,
                role: ListenerRole::Gateway { gateways },
                virtual_hosts: self.vhost_table(format!("{address}|"), vhosts),
                default_virtual_host: None,
                stat_prefix: None,
                unix,
            });
        }
        let tls = tls_ports
            .into_iter()
            .map(|((port, ip), servers)| {
                let mut l = self.compile_tls_port(SocketAddr::new(ip, port), &servers);
                l.unix = servers
                    .first()
                    .and_then(|b| Self::server_unix(b.server))
                    .map(Arc::from);
                if let Some(path) = &l.unix {
                    l.name = format!("unix://{path}");
                }
                l
            })
            .collect();
        (out, tls)
    }

    /// A port bound on every address (servers without `bind`, the gateway address being a
    /// wildcard) cannot also be bound on one address: the OS refuses it, which would stop the
    /// proxy from starting. The servers with a `bind` on such a port are dropped, said once each.
    fn drop_binds_under_wildcards<'s>(
        &mut self,
        ports: &mut BTreeMap<ServerAddress, Vec<BoundServer<'s>>>,
        tls_ports: &mut BTreeMap<ServerAddress, Vec<BoundServer<'s>>>,
    ) {
        let wildcard_ports: Vec<u16> = ports
            .keys()
            .chain(tls_ports.keys())
            .filter(|(_, ip)| ip.is_unspecified())
            .map(|(port, _)| *port)
            .collect();
        for map in [ports, tls_ports] {
            map.retain(|(port, ip), servers| {
                if ip.is_unspecified() || !wildcard_ports.contains(port) {
                    return true;
                }
                for b in servers.iter() {
                    self.diagnostics.push(b.resource.diag(
                        Severity::Warning,
                        codes::GATEWAY_PORT_CONFLICT,
                        format!("spec.servers[{}].bind", b.index),
                        format!("port {port} is already bound on every address (servers without `bind`); this server's bind {ip} cannot be bound next to it and is ignored"),
                    ));
                }
                false
            });
        }
    }

    /// The virtual hosts of the VirtualServices bound to `servers` (which share a port): one per
    /// host, rules of every VirtualService on it merged oldest first with catch-alls last.
    /// `chain` tells apart the filter chains of one TLS port (empty for plain-text ports).
    pub(crate) fn gateway_virtual_hosts(
        &mut self,
        servers: &[BoundServer<'_>],
        port: u16,
        address: SocketAddr,
        chain: &str,
    ) -> Vec<Arc<VirtualHost>> {
        let ordered = self.ordered.clone();
        // Sized for every host bound: grown by doubling, the list ended with up to twice the
        // room it needed, on every build.
        let hosts = ordered
            .iter()
            .map(|r| match &r.spec {
                Spec::VirtualService(vs) => vs.hosts.len(),
                _ => 0,
            })
            .sum();
        let mut domains = Domains {
            list: IndexMap::with_capacity_and_hasher(hosts, Default::default()),
        };
        for r in &ordered {
            let Spec::VirtualService(vs) = &r.spec else {
                continue;
            };
            bind_virtual_service(r, vs, servers, &mut domains);
        }
        // Keys are made for every domain on every build, kept or not: formatted in one buffer.
        let prefix = format!("{address}|");
        // The routes of the domain before, with the bindings they came from: the hosts of a
        // VirtualService bound through one server come in a row and compile to the same rules
        // (only the listener and the gateway shape them), so they share one list. At 10,000
        // services with two hosts each, a copy per host was a tenth of the heap.
        let mut twin: Option<Twin<'_>> = None;
        let mut out = Vec::with_capacity(domains.list.len());
        let mut name = String::new();
        for (domain, bindings) in domains.list {
            name.clear();
            name.push_str(&prefix);
            name.push_str(&domain);
            name.push('|');
            name.push_str(chain);
            let key = super::reuse::unit_key(&name);
            let fresh: SmallVec<[(usize, &str); 2]> = bindings
                .iter()
                .map(|(r, _, gateway)| (super::reuse::address(r), *gateway))
                .collect();
            let same = twin.take().filter(|t| t.fresh == fresh);
            let vh = self.vhost_unit(key, &fresh, |c| {
                let routes = match &same {
                    Some(t) => {
                        // What compiling them again would have recorded.
                        c.deps.borrow_mut().extend(t.unit.deps.iter().copied());
                        c.diagnostics.extend(t.unit.diagnostics.iter().cloned());
                        Arc::clone(&t.unit.vhost.routes)
                    }
                    None => {
                        let scope = format!("{address}|{domain}");
                        let mut routes = Vec::new();
                        for (r, vs, gateway) in &bindings {
                            let ctx = RuleContext {
                                gateway,
                                port,
                                scope: &scope,
                            };
                            routes.extend(c.compile_http_routes(r, vs, ctx));
                        }
                        // Istio merges every VirtualService of a gateway host and moves
                        // catch-alls last.
                        let (mut specific, catch_all): (Vec<Route>, Vec<Route>) =
                            routes.into_iter().partition(|r| !r.is_catch_all());
                        specific.extend(catch_all);
                        specific.into()
                    }
                };
                VirtualHost {
                    name: format!("{domain}:{port}"),
                    domains: vec![domain.into_owned()],
                    routes,
                    require_tls: false,
                }
            });
            // A unit that delegates is not recorded (its routes depend on more than its
            // bindings): nothing to share.
            twin = match same {
                Some(t) => Some(t),
                None => self
                    .memo
                    .vhosts
                    .get(&key)
                    .filter(|unit| Arc::ptr_eq(&unit.vhost, &vh))
                    .map(|unit| Twin {
                        fresh,
                        unit: Arc::clone(unit),
                    }),
            };
            out.push(vh);
        }
        out
    }

    /// Gateways exist but none selects this proxy: the usual cause of a gateway that binds
    /// nothing (a missing or different `--labels`), said once per Gateway.
    fn warn_if_no_gateway_selects_me(&mut self) {
        let gateways: Vec<&Resource> = self
            .ordered
            .iter()
            .copied()
            .filter(|r| matches!(r.spec, Spec::Gateway(_)))
            .collect();
        if gateways
            .iter()
            .any(|r| matches!(&r.spec, Spec::Gateway(gw) if self.selects_me(gw)))
        {
            return;
        }
        let mine = if self.proxy.labels.is_empty() {
            "no labels".to_string()
        } else {
            self.proxy
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        for r in gateways {
            let Spec::Gateway(gw) = &r.spec else { continue };
            let wants = gw
                .selector
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            self.diagnostics.push(r.diag(
                Severity::Warning,
                codes::GATEWAY_NOT_SELECTED,
                "spec.selector",
                format!("Gateway {}/{} selects {wants}; this proxy has {mine}, so none of its servers is bound here (start it with `--labels {wants}` to serve it)", r.metadata.namespace, r.metadata.name),
            ));
        }
    }

    fn selects_me(&self, gw: &Gateway) -> bool {
        gw.selector
            .as_ref()
            .is_none_or(|sel| selector_matches(sel, &self.proxy.labels))
    }
}

/// Binds `vs` to the domains of `servers` it reaches (each domain once per VirtualService).
fn bind_virtual_service<'r>(
    r: &'r Resource,
    vs: &'r VirtualService,
    servers: &'r [BoundServer<'_>],
    domains: &mut Domains<'r>,
) {
    let ns = &r.metadata.namespace;
    // (domain, gateway through which the VirtualService reaches it)
    let mut hits: SmallVec<[(Cow<'r, str>, &str); 2]> = SmallVec::new();
    for bound in servers.iter().filter(|b| vs_binds(vs, ns, &b.gateway)) {
        for h in &vs.hosts {
            let vh = fqdn_cow(h, ns);
            for sh in &bound.server.hosts {
                let (sns, shost) = split_server_host(sh);
                let ns_ok = sns == "*" || sns == ns || (sns == "." && bound.namespace == ns);
                if !ns_ok {
                    continue;
                }
                if let Some(d) = intersect_lowercase(&vh, shost) {
                    if !hits.iter().any(|(x, _)| *x == d) {
                        hits.push((d, &bound.gateway));
                    }
                }
            }
        }
    }
    for (d, gateway) in hits {
        domains.add(d, (r, vs, gateway));
    }
}
