//! A Sidecar's egress listeners bound for real (`bind`, `captureMode`), as Istio binds them:
//! on a proxy that does not intercept every egress listener is a real one, at its `bind` else
//! the default address; on a proxy that intercepts, only a listener with `captureMode: NONE` is,
//! at its `bind` else 127.0.0.1 (Istio's `bindToPort`).

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use sluice_model::{codes, Diagnostic, Severity};

use super::mesh::{Claims, MeshPort};
use super::Compiler;
use crate::authz::sidecar_ingress::select_sidecar;
use crate::listener::{Listener, ListenerRole};
use crate::protocol::Protocol;
use crate::registry::Service;
use crate::scope::EgressScope;
use crate::tcp_route::{TcpListener, TcpRule};

/// Where Istio binds an egress listener with `captureMode: NONE` and no `bind`.
const NONE_DEFAULT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

impl Compiler<'_> {
    /// Moves or adds the mesh listeners of the ports a bound egress listener serves.
    /// `intercepting`: the proxy takes outbound traffic by interception and has no
    /// per-service mesh listeners (`--outbound-port`).
    pub(crate) fn bind_egress_listeners(
        &mut self,
        egress: &EgressScope,
        ports: &[MeshPort],
        listeners: &mut Vec<Listener>,
        tcp_listeners: &mut Vec<TcpListener>,
        intercepting: bool,
    ) {
        // A unix domain socket listener is bound whatever the capture (Istio's `bindToPort`).
        let unix = self.unix_egress_listeners(egress, ports);
        listeners.extend(unix);
        let unix_streams = self.unix_egress_stream_listeners(egress);
        tcp_listeners.extend(unix_streams);
        let binds = self.egress_binds(egress, intercepting);
        if binds.is_empty() {
            return;
        }
        // Gateway servers keep their ports.
        let taken: HashSet<SocketAddr> = listeners
            .iter()
            .filter(|l| l.is_gateway())
            .map(|l| l.address)
            .chain(
                tcp_listeners
                    .iter()
                    .filter(|l| !matches!(l.role, ListenerRole::Mesh))
                    .map(|l| l.address),
            )
            .collect();
        if intercepting {
            self.add_bound(&binds, ports, listeners, tcp_listeners, &taken);
        } else {
            self.move_bound(&binds, listeners, tcp_listeners, &taken);
        }
    }

    /// The HTTP listeners on unix domain sockets (`port: 0`, `bind: unix://PATH`): by Host, the
    /// services the listener imports on every HTTP port (a name on several ports goes to the
    /// lowest), as Istio's route table for a socket listener holds them.
    fn unix_egress_listeners(&mut self, egress: &EgressScope, ports: &[MeshPort]) -> Vec<Listener> {
        let mut out = Vec::new();
        for l in egress.unix_listeners() {
            let Some(path) = l.unix.as_deref() else {
                continue;
            };
            if !l.http {
                // Served by `unix_egress_stream_listeners`.
                continue;
            }
            let admitted: HashSet<&str> = self
                .registry
                .services()
                .filter(|s| l.admits(&s.namespace, &s.hostname))
                .map(|s| s.hostname.as_str())
                .collect();
            let vhosts: Vec<_> = ports
                .iter()
                .flat_map(|mp| mp.table.vhosts.iter())
                .filter(|vh| {
                    vh.name
                        .rsplit_once(':')
                        .is_some_and(|(host, _)| admitted.contains(host))
                })
                .cloned()
                .collect();
            out.push(Listener {
                name: format!("unix://{path}"),
                address: SocketAddr::new(crate::pipe::unix_key(path), 0),
                role: ListenerRole::Mesh,
                virtual_hosts: std::sync::Arc::new(crate::vhost::VirtualHostTable::new(vhosts)),
                default_virtual_host: None,
                stat_prefix: None,
                unix: Some(std::sync::Arc::from(path)),
            });
        }
        out
    }

    /// The TCP and TLS listeners on unix domain sockets (`port: 0`, `bind: unix://PATH`, a TCP or
    /// TLS protocol). A TCP stream has no Host: as in Istio, where the services the listener
    /// imports conflict on it, the first service's first TCP port (with its VirtualService
    /// `tcp` rules) is served and the others are said. A TLS port chooses by the ClientHello's
    /// SNI: the mesh `tls` rules of the imported services' TLS ports, then each service by its
    /// host name.
    fn unix_egress_stream_listeners(&mut self, egress: &EgressScope) -> Vec<TcpListener> {
        let mut out = Vec::new();
        let candidates = self.mesh_candidates();
        let claims = Claims::new(&candidates);
        let tls_by_port = {
            // Computed again for the sidecar's outbound table; its diagnostics are said there.
            let said = self.diagnostics.len();
            let t = self.outbound_tls();
            self.diagnostics.truncate(said);
            t
        };
        for l in egress.unix_listeners() {
            let Some(path) = l.unix.as_deref() else {
                continue;
            };
            let tls = match l.protocol {
                Some(Protocol::Tcp) => false,
                Some(Protocol::Tls | Protocol::Https) => true,
                // HTTP: `unix_egress_listeners`.
                Some(p) if p.is_http() && p != Protocol::Unspecified => continue,
                _ => {
                    self.sidecar_warning(
                        l.index,
                        "bind",
                        "a unix domain socket egress listener serves HTTP, TCP and TLS ports; this port's protocol is none of them, so the socket is not bound",
                    );
                    continue;
                }
            };
            let services: Vec<Arc<Service>> = self
                .registry
                .services()
                .filter(|s| l.admits(&s.namespace, &s.hostname))
                .cloned()
                .collect();
            let mut served: Vec<(Arc<Service>, u16)> = Vec::new();
            for svc in &services {
                let port = svc.ports.iter().find(|p| {
                    if tls {
                        matches!(p.protocol, Protocol::Tls | Protocol::Https)
                    } else {
                        p.protocol == Protocol::Tcp
                    }
                });
                if let Some(p) = port {
                    served.push((svc.clone(), p.number));
                }
            }
            let rules = if tls {
                let mut rules: Vec<TcpRule> = Vec::new();
                let mut ports: Vec<u16> = served.iter().map(|(_, p)| *p).collect();
                ports.sort_unstable();
                ports.dedup();
                for p in ports {
                    if let Some(t) = tls_by_port.get(&p) {
                        rules.extend(t.rules.iter().cloned());
                    }
                }
                for (svc, port) in &served {
                    rules.extend(self.sni_default_rule(svc, *port));
                }
                rules
            } else {
                let Some((first, port)) = served.first().cloned() else {
                    out.push(empty_unix_listener(path));
                    continue;
                };
                for (other, _) in served.iter().skip(1) {
                    self.sidecar_diagnostic(
                        l.index,
                        "bind",
                        codes::EGRESS_LISTENER_CONFLICT,
                        &format!("{} is not served on unix://{path}: {} already is (a TCP stream has no Host to tell them apart)", other.hostname, first.hostname),
                    );
                }
                self.tcp_service_rules(&first, port, &claims)
            };
            let mut listener = empty_unix_listener(path);
            listener.rules = rules;
            out.push(listener);
        }
        out
    }

    /// The address each port is bound at, for the ports whose egress listener is bound.
    fn egress_binds(&mut self, egress: &EgressScope, intercepting: bool) -> BTreeMap<u16, IpAddr> {
        let mut out = BTreeMap::new();
        let mut virtual_binds = Vec::new();
        for svc in self.registry.services() {
            for p in &svc.ports {
                let Some(l) = egress.listener_for(&svc.namespace, &svc.hostname, p.number) else {
                    continue;
                };
                let ip = match (intercepting, l.capture_none, l.bind) {
                    (false, _, Some(ip)) | (true, true, Some(ip)) => ip,
                    (true, true, None) => NONE_DEFAULT,
                    (true, false, Some(_)) => {
                        virtual_binds.push(l.index);
                        continue;
                    }
                    // The default address: the mesh listeners stay where they are.
                    (false, _, None) | (true, false, None) => continue,
                };
                out.entry(p.number).or_insert(ip);
            }
        }
        virtual_binds.sort_unstable();
        virtual_binds.dedup();
        for i in virtual_binds {
            self.sidecar_warning(
                i,
                "bind",
                "an egress `bind` without `captureMode: NONE` on a proxy that intercepts is the address Istio matches intercepted connections by; sluice serves the port for every destination the sidecar intercepts, and binds nothing",
            );
        }
        out
    }

    /// A warning at `spec.egress[i].<field>` of the Sidecar that applies.
    fn sidecar_warning(&mut self, i: usize, field: &str, message: &str) {
        self.sidecar_diagnostic(i, field, codes::NOT_ENFORCED, message);
    }

    /// A warning with `code` at `spec.egress[i].<field>` of the Sidecar that applies.
    fn sidecar_diagnostic(&mut self, i: usize, field: &str, code: &'static str, message: &str) {
        let field = format!("spec.egress[{i}].{field}");
        let d = match select_sidecar(&self.ordered, self.proxy) {
            Some((r, _)) => r.diag(Severity::Warning, code, field, message),
            None => Diagnostic::warning(code, format!("{field}: {message}")),
        };
        if !self.diagnostics.contains(&d) {
            self.diagnostics.push(d);
        }
    }

    /// No interception: the mesh listeners of a bound port move to the egress listener's
    /// address (one listener per port there: its virtual hosts are the port's).
    fn move_bound(
        &mut self,
        binds: &BTreeMap<u16, IpAddr>,
        listeners: &mut Vec<Listener>,
        tcp_listeners: &mut Vec<TcpListener>,
        taken: &HashSet<SocketAddr>,
    ) {
        let mut placed: HashSet<SocketAddr> = HashSet::new();
        let mut kept = Vec::with_capacity(listeners.len());
        for mut l in listeners.drain(..) {
            let Some(ip) = binds.get(&l.port()).filter(|_| !l.is_gateway()) else {
                kept.push(l);
                continue;
            };
            let address = SocketAddr::new(*ip, l.port());
            if super::port_taken(taken, address) {
                self.not_bound(address);
                continue;
            }
            if placed.insert(address) {
                // Several service addresses of the port merge into one listener.
                l.default_virtual_host = None;
                l.name = format!("{ip}_{}", l.port());
                l.address = address;
                kept.push(l);
            }
        }
        *listeners = kept;
        let mut kept = Vec::with_capacity(tcp_listeners.len());
        for mut l in tcp_listeners.drain(..) {
            let port = l.address.port();
            let Some(ip) = binds
                .get(&port)
                .filter(|_| matches!(l.role, ListenerRole::Mesh))
            else {
                kept.push(l);
                continue;
            };
            let address = SocketAddr::new(*ip, port);
            if super::port_taken(taken, address) || !placed.insert(address) {
                // TCP has no Host header: one service per address and port.
                self.not_bound(address);
                continue;
            }
            l.name = format!("{ip}_{port}");
            l.address = address;
            kept.push(l);
        }
        *tcp_listeners = kept;
    }

    /// Interception: a bound port gets a real listener besides the intercepted traffic.
    fn add_bound(
        &mut self,
        binds: &BTreeMap<u16, IpAddr>,
        ports: &[MeshPort],
        listeners: &mut Vec<Listener>,
        tcp_listeners: &mut Vec<TcpListener>,
        taken: &HashSet<SocketAddr>,
    ) {
        // The TCP listeners the per-service mode would bind, to take their rules from (their
        // diagnostics are about listeners this proxy does not have).
        let said = self.diagnostics.len();
        let tcp = self.compile_tcp_mesh(&HashSet::new());
        self.diagnostics.truncate(said);
        for (&port, ip) in binds {
            let address = SocketAddr::new(*ip, port);
            if super::port_taken(taken, address) {
                self.not_bound(address);
                continue;
            }
            if let Some(mp) = ports.iter().find(|mp| mp.port == port) {
                listeners.push(Listener {
                    name: format!("{ip}_{port}"),
                    address,
                    role: ListenerRole::Mesh,
                    virtual_hosts: mp.table.clone(),
                    default_virtual_host: None,
                    stat_prefix: None,
                    unix: None,
                });
            } else if let Some(t) = tcp.iter().find(|t| t.address.port() == port) {
                tcp_listeners.push(TcpListener {
                    name: format!("{ip}_{port}"),
                    address,
                    role: ListenerRole::Mesh,
                    rules: t.rules.clone(),
                    unix: None,
                });
            }
        }
    }

    fn not_bound(&mut self, address: SocketAddr) {
        self.diagnostics.push(Diagnostic::warning(
            codes::NOT_ENFORCED,
            format!("egress listener {address} is not bound: another listener already uses it"),
        ));
    }
}

/// A mesh TCP listener on the unix domain socket `path`, without rules yet.
fn empty_unix_listener(path: &str) -> TcpListener {
    TcpListener {
        name: format!("unix://{path}"),
        address: SocketAddr::new(crate::pipe::unix_key(path), 0),
        role: ListenerRole::Mesh,
        rules: Vec::new(),
        unix: Some(Arc::from(path)),
    }
}
