//! The published, immutable routing state and the pure routing function.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use sluice_model::{Diagnostic, Resource};

use crate::cluster_map::ClusterMap;
use crate::listener::Listener;
use crate::matcher::{RequestInfo, StrMatch};
use crate::outbound::OutboundTable;
use crate::proxy::ProxyConfig;
use crate::registry::Registry;
use crate::route_table::Route;
use crate::tcp_route::TcpListener;
use crate::tls::TlsListener;
use crate::vhost::VirtualHost;

/// Everything the data plane needs, compiled once and swapped atomically.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Monotonic config version.
    pub version: u64,
    /// Proxy identity it was compiled for.
    pub proxy: ProxyConfig,
    /// Listeners to bind.
    pub listeners: Vec<Arc<Listener>>,
    /// Listeners relaying TCP connections.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tcp_listeners: Vec<Arc<TcpListener>>,
    /// Listeners whose connections start with TLS (gateway HTTPS and TLS ports).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_listeners: Vec<Arc<TlsListener>>,
    /// Mesh listeners for intercepted outbound connections, by original destination.
    #[serde(skip_serializing_if = "OutboundTable::is_empty")]
    pub outbound: OutboundTable,
    /// Clusters by name.
    pub clusters: Arc<ClusterMap>,
    /// Service registry.
    pub registry: Registry,
    /// Security config of this proxy (authorization, mTLS modes, JWT rules, Sidecar ingress).
    #[serde(skip)]
    pub security: Arc<crate::authz::Security>,
    /// The objects this snapshot was compiled from.
    #[serde(skip)]
    pub resources: Arc<Vec<Arc<Resource>>>,
    /// Warnings and findings (no blocking errors: those reject the config).
    pub diagnostics: Vec<Diagnostic>,
    /// Canary overlays applied to the compiled routes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub canaries: Vec<crate::canary::AppliedCanary>,
    /// How long each phase of the build took.
    #[serde(skip)]
    pub timings: BuildTimings,
    /// The compiled units, for the next build to take from.
    #[serde(skip)]
    pub(crate) memo: crate::compile::Memo,
    /// Each object's validation findings, by address, for the next build to take from.
    #[serde(skip)]
    pub(crate) validated: crate::load::Validated,
    /// What the analysis found, for the next build to take from.
    #[serde(skip)]
    pub(crate) analysis: crate::analyze::memo::AnalysisMemo,
    #[serde(skip)]
    by_address: HashMap<SocketAddr, usize, foldhash::fast::RandomState>,
    #[serde(skip)]
    tcp_by_address: HashMap<SocketAddr, usize, foldhash::fast::RandomState>,
    #[serde(skip)]
    tls_by_address: HashMap<SocketAddr, usize, foldhash::fast::RandomState>,
}

/// Where a build spent its time (logged with each reload, to tell which phase grows).
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildTimings {
    /// Per-object validation and duplicates.
    pub check: std::time::Duration,
    /// Cross-object analysis (beside the compile, on a thread of its own).
    pub analyze: std::time::Duration,
    /// Compilation for the proxy, canary overlays included, until the analysis is in too.
    pub compile: std::time::Duration,
    /// VirtualServices whose own checks ran (the others kept their findings).
    pub reanalyzed: usize,
}

/// The outcome of routing one request.
#[derive(Debug)]
pub enum Routed<'s> {
    /// A rule matched.
    Matched(RouteMatch<'s>),
    /// No virtual host for the Host header (404 NR).
    NoVirtualHost,
    /// A virtual host, but no rule matched (404 NR).
    NoRoute(&'s Arc<VirtualHost>),
    /// The virtual host requires TLS and the request came in plain text (301 to `https://`).
    RequireTls(&'s Arc<VirtualHost>),
}

/// A matched rule.
#[derive(Debug)]
pub struct RouteMatch<'s> {
    /// The virtual host.
    pub virtual_host: &'s Arc<VirtualHost>,
    /// The rule.
    pub route: &'s Route,
    /// Its index in the virtual host's rules.
    pub index: usize,
    /// Which match entry matched (`None` for a rule without matches).
    pub entry: Option<usize>,
}

impl RouteMatch<'_> {
    /// The URI prefix the matching entry used, if it was a prefix match.
    pub fn matched_prefix(&self) -> Option<&str> {
        let m = self.route.matches.get(self.entry?)?;
        match &m.uri {
            Some(StrMatch::Prefix(p)) => Some(p),
            _ => None,
        }
    }
}

impl Snapshot {
    /// Wraps compiled state.
    pub fn new(
        version: u64,
        proxy: ProxyConfig,
        compiled: crate::compile::Compiled,
        resources: Arc<Vec<Arc<Resource>>>,
        diagnostics: Vec<Diagnostic>,
    ) -> Snapshot {
        let by_address = compiled
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (l.address, i))
            .collect();
        let tcp_by_address = compiled
            .tcp_listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (l.address, i))
            .collect();
        let tls_by_address = compiled
            .tls_listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (l.address, i))
            .collect();
        Snapshot {
            version,
            proxy,
            listeners: compiled.listeners,
            tcp_listeners: compiled.tcp_listeners,
            tls_listeners: compiled.tls_listeners,
            outbound: compiled.outbound,
            clusters: compiled.clusters,
            registry: compiled.registry,
            security: compiled.security,
            resources,
            diagnostics,
            canaries: Vec::new(),
            timings: BuildTimings::default(),
            memo: compiled.memo,
            validated: Default::default(),
            analysis: Default::default(),
            by_address,
            tcp_by_address,
            tls_by_address,
        }
    }

    /// Every address to bind: HTTP and TCP listeners.
    pub fn bind_addresses(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|l| l.unix.is_none())
            .map(|l| l.address)
            .chain(
                self.tcp_listeners
                    .iter()
                    .filter(|l| l.unix.is_none())
                    .map(|l| l.address),
            )
            .chain(
                self.tls_listeners
                    .iter()
                    .filter(|l| l.unix.is_none())
                    .map(|l| l.address),
            )
            .chain(
                self.security
                    .sidecar_ingress
                    .iter()
                    .filter(|_| !self.proxy.inbound_intercepted)
                    .map(|i| self.inbound_address(i)),
            )
            .collect()
    }

    /// The unix domain sockets to listen on (HTTP, TCP and TLS listeners), with the key address
    /// of each one's listener.
    pub fn unix_listeners(&self) -> Vec<(Arc<str>, SocketAddr)> {
        let http = self
            .listeners
            .iter()
            .filter_map(|l| l.unix.clone().map(|path| (path, l.address)));
        let tcp = self
            .tcp_listeners
            .iter()
            .filter_map(|l| l.unix.clone().map(|path| (path, l.address)));
        let tls = self
            .tls_listeners
            .iter()
            .filter_map(|l| l.unix.clone().map(|path| (path, l.address)));
        http.chain(tcp).chain(tls).collect()
    }

    /// Where a Sidecar ingress listener binds: its `bind`, else the gateway address (all
    /// interfaces by default, as a workload's inbound port is reached from other hosts).
    pub fn inbound_address(&self, ingress: &crate::authz::SidecarIngress) -> SocketAddr {
        SocketAddr::new(
            ingress.bind.unwrap_or(self.proxy.gateway_address),
            ingress.port,
        )
    }

    /// The Sidecar ingress listener bound at `address`.
    pub fn inbound_listener(&self, address: SocketAddr) -> Option<&crate::authz::SidecarIngress> {
        if self.proxy.inbound_intercepted {
            return None;
        }
        self.security
            .sidecar_ingress
            .iter()
            .find(|i| self.inbound_address(i) == address)
    }

    /// The TLS listener bound at `address`.
    pub fn tls_listener(&self, address: SocketAddr) -> Option<&Arc<TlsListener>> {
        self.tls_by_address
            .get(&address)
            .and_then(|&i| self.tls_listeners.get(i))
    }

    /// The TCP listener bound at `address`.
    pub fn tcp_listener(&self, address: SocketAddr) -> Option<&Arc<TcpListener>> {
        self.tcp_by_address
            .get(&address)
            .and_then(|&i| self.tcp_listeners.get(i))
    }

    /// The mesh listener for an intercepted outbound connection to `original_dst`.
    pub fn outbound_listener(&self, original_dst: SocketAddr) -> Option<&Arc<Listener>> {
        self.outbound.listener(original_dst)
    }

    /// The listener bound at `address`.
    pub fn listener(&self, address: SocketAddr) -> Option<&Arc<Listener>> {
        self.by_address
            .get(&address)
            .and_then(|&i| self.listeners.get(i))
    }
}

/// Routes a request arriving on `listener`: virtual host by Host, then the first matching rule.
pub fn route<'s>(listener: &'s Listener, req: &RequestInfo<'_>) -> Routed<'s> {
    let Some(vh) = listener.virtual_host(req.authority) else {
        return Routed::NoVirtualHost;
    };
    if vh.require_tls && req.scheme != "https" {
        return Routed::RequireTls(vh);
    }
    for (index, route) in vh.routes.iter().enumerate() {
        if route.matches.is_empty() {
            return Routed::Matched(RouteMatch {
                virtual_host: vh,
                route,
                index,
                entry: None,
            });
        }
        if let Some(i) = route.matches.iter().position(|m| m.matches(req)) {
            return Routed::Matched(RouteMatch {
                virtual_host: vh,
                route,
                index,
                entry: Some(i),
            });
        }
    }
    Routed::NoRoute(vh)
}
