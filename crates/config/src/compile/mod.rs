//! Compilation: validated objects → listeners, virtual hosts, routes and clusters for one proxy.

mod actions;
pub mod auto_mtls;
mod cluster_policy;
mod delegate;
pub mod destination_rules;
mod egress_bind;
mod egress_proxy;
mod gateway;
pub mod gateway_tls;
pub mod http_route;
mod locality_lb;
mod mesh;
mod mesh_tls;
mod outbound;
mod passthrough_lb;
pub mod reuse;
#[cfg(test)]
mod reuse_tests;
mod route_policy;
mod security;
mod tcp;
mod tls_mesh;
mod zone_aware;

use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use sluice_lb::StateStore;
use sluice_model::{codes, Diagnostic, Resource};

use crate::cluster::{Cluster, Viewer};
use crate::cluster_map::ClusterMap;
use crate::dns::DnsAnswers;
use crate::labels::selector_matches;
use crate::listener::Listener;
use crate::local_cluster::LocalCluster;
use crate::outbound::OutboundTable;
use crate::policy::{ClusterPolicy, HeaderPolicy, RoutePolicy};
use crate::proxy::ProxyConfig;
use crate::registry::Registry;
use crate::tcp_route::TcpListener;
use crate::tls::TlsListener;
use destination_rules::DestinationRuleIndex;
pub use reuse::Memo;
use reuse::Reuse;

/// The output of compilation, before it is wrapped into a snapshot.
#[derive(Debug)]
pub struct Compiled {
    /// Listeners to bind.
    pub listeners: Vec<Arc<Listener>>,
    /// Listeners relaying TCP connections (`tcp` rules).
    pub tcp_listeners: Vec<Arc<TcpListener>>,
    /// Gateway ports whose connections start with TLS (terminated or passed through by SNI).
    pub tls_listeners: Vec<Arc<TlsListener>>,
    /// Mesh listeners reached by original destination (sidecar outbound interception).
    pub outbound: OutboundTable,
    /// All clusters by name (the previous build's map when every cluster was kept).
    pub clusters: Arc<ClusterMap>,
    /// The compiled units, for the next build to take from.
    pub memo: Memo,
    /// The service registry.
    pub registry: Registry,
    /// Authorization, peer authentication, JWT rules and Sidecar ingress of this proxy.
    pub security: Arc<crate::authz::Security>,
    /// Findings made while compiling.
    pub diagnostics: Vec<Diagnostic>,
}

/// Compiler state for one run.
pub(crate) struct Compiler<'a> {
    pub(crate) proxy: &'a ProxyConfig,
    pub(crate) state: &'a StateStore,
    /// The resolver's answers (`None`: names stay names).
    pub(crate) dns: Option<&'a DnsAnswers>,
    pub(crate) registry: Registry,
    pub(crate) clusters: Arc<ClusterMap>,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Objects in Istio's precedence order: oldest creationTimestamp first, then load order.
    pub(crate) ordered: Vec<&'a Resource>,
    /// Route policies already compiled, by the rule they come from (see `route_policy`).
    pub(crate) policies: HashMap<PolicyKey, Arc<RoutePolicy>>,
    /// Policies that set only a timeout and retries, shared by every rule with the same ones.
    pub(crate) plain_policies: RefCell<HashMap<PlainPolicy, Arc<RoutePolicy>>>,
    /// The one empty per-destination header policy every destination without operations shares.
    pub(crate) no_headers: Arc<HeaderPolicy>,
    /// Split schedules by weights, whose tables every split of the same weights shares (see
    /// `schedule`).
    pub(crate) schedules: RefCell<HashMap<Vec<u32>, sluice_lb::WeightedSchedule>>,
    /// Host, subset and cluster names of route destinations, one copy each (see
    /// `resolve_destination`).
    pub(crate) names: RefCell<HashSet<Arc<str>>>,
    /// The key of each object routes were compiled from, by address, shared by those routes.
    pub(crate) route_sources: HashMap<usize, Arc<sluice_model::ResourceRef>>,
    /// What may be kept from the previous build (`None`: everything is compiled).
    pub(crate) reuse: Option<Reuse<'a>>,
    /// The units of this build, for the next one.
    pub(crate) memo: Memo,
    /// Hosts resolved since the current unit started, as [`reuse::name_hash`]es (see
    /// [`Compiler::vhost_unit`]).
    pub(crate) deps: RefCell<Vec<u64>>,
    /// Whether the current unit merged delegate VirtualServices (not tracked: never kept).
    pub(crate) delegated: Cell<bool>,
}

/// A rule of an object of this compile (by address: the objects outlive the compile) and the
/// listener port when the rule's mirrors depend on it (0 otherwise).
pub(crate) type PolicyKey = (usize, u16);

/// What a route policy without faults, mirrors, rewrites, header operations or CORS holds.
pub(crate) type PlainPolicy = (
    Option<std::time::Duration>,
    Option<crate::policy::RetryPolicy>,
);

/// Orders objects the way Istio does when several claim the same thing.
pub fn precedence_order<R: Borrow<Resource>>(resources: &[R]) -> Vec<&Resource> {
    fn stamp<R: Borrow<Resource>>(r: &R) -> Option<&str> {
        r.borrow().metadata.creation_timestamp.as_deref()
    }
    // Objects without timestamps (files) are in order already: every build checks, and a
    // check needs no copy of the list.
    if resources.windows(2).all(|w| stamp(&w[0]) <= stamp(&w[1])) {
        return resources.iter().map(Borrow::borrow).collect();
    }
    // Each object's timestamp read once: the sort then compares the copies.
    let mut ordered: Vec<(&str, usize, &Resource)> = resources
        .iter()
        .map(Borrow::borrow)
        .enumerate()
        .map(|(i, r)| {
            let ts = r.metadata.creation_timestamp.as_deref().unwrap_or("");
            (ts, i, r)
        })
        .collect();
    ordered.sort_by(|(ta, ia, _), (tb, ib, _)| ta.cmp(tb).then(ia.cmp(ib)));
    ordered.into_iter().map(|(_, _, r)| r).collect()
}

/// Compiles validated objects for `proxy`; DNS endpoints keep their names (resolved at connect
/// time, as `analyze` and `explain` need no resolver).
pub fn compile<R: Borrow<Resource>>(
    resources: &[R],
    proxy: &ProxyConfig,
    state: &StateStore,
) -> Compiled {
    compile_resolved(resources, proxy, state, None)
}

/// [`compile`] with the resolver's latest answers: DNS services get an endpoint per address
/// (see [`crate::dns`]).
pub fn compile_resolved<R: Borrow<Resource>>(
    resources: &[R],
    proxy: &ProxyConfig,
    state: &StateStore,
    dns: Option<&DnsAnswers>,
) -> Compiled {
    compile_from(resources, None, None, proxy, state, dns)
}

/// [`compile_resolved`] of shared objects, keeping what it can of the previous build of the
/// same proxy: `previous` is its memo and registry (see [`reuse`]).
pub fn compile_incremental(
    resources: &[Arc<Resource>],
    previous: Option<(&Memo, &Registry)>,
    proxy: &ProxyConfig,
    state: &StateStore,
    dns: Option<&DnsAnswers>,
) -> Compiled {
    compile_from(
        resources,
        Some(resources.to_vec()),
        previous,
        proxy,
        state,
        dns,
    )
}

/// A compile; `shared` holds the same objects as `resources` when they are shared, which makes
/// the memo of this build usable by the next.
fn compile_from<R: Borrow<Resource>>(
    resources: &[R],
    shared: Option<Vec<Arc<Resource>>>,
    previous: Option<(&Memo, &Registry)>,
    proxy: &ProxyConfig,
    state: &StateStore,
    dns: Option<&DnsAnswers>,
) -> Compiled {
    let memo = Memo::new(shared, proxy, dns);
    // Only what is exported to this proxy's namespace exists for it; a sidecar's Sidecar then
    // narrows that to its egress hosts, before anything is compiled.
    let ordered = crate::scope::exported_objects(precedence_order(resources), proxy);
    let scope = crate::scope::sidecar_scope(&ordered, proxy);
    let mut reuse = previous.and_then(|(memo, _)| {
        let all: Vec<&Resource> = resources.iter().map(Borrow::borrow).collect();
        Reuse::new(memo, &all, proxy, dns)
    });
    let mut memo = memo;
    // Sized as the previous build's: these maps are filled with one entry per service and
    // virtual host, and growing them rehashes every entry several times.
    if let Some((before, _)) = previous {
        memo.reserve_like(before);
    }
    let registry = Registry::build_reusing(
        ordered.iter().copied(),
        |r| reuse.as_ref().and_then(|u| u.services_of(r)),
        |r, made| {
            memo.services
                .insert(reuse::address(r), made.iter().cloned().collect());
        },
    );
    // The proxy's own service, whatever its Sidecar's egress hosts (Istio's self-discovery).
    let local = LocalCluster::of(&registry, proxy);
    let (ordered, registry) = match &scope.egress {
        Some(egress) => crate::scope::apply_egress(ordered, registry, egress),
        None => (ordered, registry),
    };
    if let (Some(reuse), Some((_, before))) = (reuse.as_mut(), previous) {
        reuse.services_changed(before, &registry);
        reuse.local_cluster_changed(&local);
    }
    memo.local = local;
    let mut c = Compiler {
        reuse,
        memo,
        deps: RefCell::default(),
        delegated: Cell::default(),
        proxy,
        state,
        dns,
        registry,
        clusters: Arc::default(),
        diagnostics: Vec::new(),
        ordered,
        policies: HashMap::new(),
        plain_policies: RefCell::default(),
        no_headers: Arc::default(),
        route_sources: HashMap::new(),
        names: RefCell::default(),
        schedules: RefCell::default(),
    };
    let security = c.compile_security();
    c.build_clusters(&security.peer_authentication);
    c.warn_cross_network_endpoints();
    c.warn_zone_aware_without_local_cluster();
    let mut listeners = Vec::new();
    let mut tls_listeners = Vec::new();
    if proxy.gateway_role {
        let (http, tls) = c.compile_gateways();
        listeners.extend(http);
        tls_listeners.extend(tls);
    }
    let mut tcp_listeners = Vec::new();
    if proxy.gateway_role {
        let taken: HashSet<SocketAddr> = listeners
            .iter()
            .map(|l| l.address)
            .chain(tls_listeners.iter().map(|l| l.address))
            .collect();
        tcp_listeners.extend(c.compile_tcp_gateways(&taken));
    }
    let mut outbound = OutboundTable::default();
    if proxy.mesh_role || proxy.outbound_role {
        let ports = c.mesh_ports();
        if proxy.mesh_role {
            let mut taken: HashSet<SocketAddr> = listeners.iter().map(|l| l.address).collect();
            taken.extend(tcp_listeners.iter().map(|l| l.address));
            taken.extend(tls_listeners.iter().map(|l| l.address));
            listeners.extend(c.compile_mesh(&ports, &taken));
            if !proxy.outbound_role {
                c.warn_original_dst_without_interception();
            }
            taken.extend(listeners.iter().map(|l| l.address));
            tcp_listeners.extend(c.compile_tcp_mesh(&taken));
            taken.extend(tcp_listeners.iter().map(|l| l.address));
            tcp_listeners.extend(c.compile_tls_mesh(&taken));
        }
        if let Some(egress) = &scope.egress {
            let intercepting = !proxy.mesh_role;
            c.bind_egress_listeners(
                egress,
                &ports,
                &mut listeners,
                &mut tcp_listeners,
                intercepting,
            );
        }
        if proxy.outbound_role {
            outbound = outbound::outbound_table(&ports);
            outbound.tcp_by_address = c.outbound_tcp();
            outbound.tls_by_port = c.outbound_tls();
        }
    }
    if !proxy.outbound_role {
        c.warn_passthrough_without_interception();
    }
    if scope.mode == crate::scope::OutboundMode::RegistryOnly {
        outbound.black_hole = Some(Arc::new(Cluster::black_hole(state)));
    } else if let Some((egress, sidecar)) = &scope.egress_proxy {
        outbound.egress_proxy = c.egress_proxy_cluster(egress, sidecar);
    }
    Compiled {
        listeners: listeners.into_iter().map(Arc::new).collect(),
        tcp_listeners: tcp_listeners.into_iter().map(Arc::new).collect(),
        tls_listeners: tls_listeners.into_iter().map(Arc::new).collect(),
        outbound,
        clusters: c.clusters,
        memo: c.memo,
        registry: c.registry,
        security,
        diagnostics: first_of_each(c.diagnostics),
    }
}

impl Compiler<'_> {
    /// Istio's split horizon: an endpoint on another network than the proxy's (both known) is
    /// reached through that network's gateway, and directly when no gateway serves the network
    /// (`EndpointsByNetworkFilter`). sluice knows no network gateways (no meshNetworks), so such
    /// endpoints stay in the load-balancing set; said once per service and network.
    fn warn_cross_network_endpoints(&mut self) {
        let mine = self.proxy.network.as_str();
        if mine.is_empty() {
            return;
        }
        let mut found = Vec::new();
        for svc in self.registry.services() {
            let mut networks: Vec<&str> = svc
                .endpoints
                .iter()
                .map(|e| e.network.as_str())
                .filter(|n| !n.is_empty() && *n != mine)
                .collect();
            networks.sort_unstable();
            networks.dedup();
            for n in networks {
                found.push(Diagnostic::warning(
                    codes::CROSS_NETWORK_ENDPOINT,
                    format!("{} has endpoints on network `{n}` while this proxy is on `{mine}`: Istio sends such traffic through `{n}`'s network gateway, and none is known (sluice has no meshNetworks gateways), so as Istio does without a gateway they are reached directly; make sure `{n}` is routable from here", svc.hostname),
                ));
            }
        }
        self.diagnostics.extend(found);
    }

    /// The key of `r` as routes name their source: one shared copy per object.
    pub(crate) fn route_source(&mut self, r: &Resource) -> Arc<sluice_model::ResourceRef> {
        Arc::clone(
            self.route_sources
                .entry(reuse::address(r))
                .or_insert_with(|| Arc::new(r.key())),
        )
    }

    /// One cluster per service port, plus one per DestinationRule subset and port.
    fn build_clusters(&mut self, peers: &crate::authz::PeerAuthn) {
        // Indexed when a service's clusters are built: a reload that keeps them all needs none.
        let index = std::cell::OnceCell::new();
        let services: Vec<Arc<crate::registry::Service>> =
            self.registry.services().cloned().collect();
        let shared = self.reuse.as_ref().and_then(|r| r.all_clusters(&services));
        let mut clusters = Vec::new();
        // Most clusters (every subset without its own trafficPolicy, every service without a
        // DestinationRule) get the same policy as the one built before: share it.
        let mut last_policy: Option<Arc<ClusterPolicy>> = None;
        for svc in &services {
            if let Some(kept) = self.reuse.as_ref().and_then(|r| r.clusters(&svc.hostname)) {
                if shared.is_none() {
                    clusters.extend(kept.iter().cloned());
                }
                self.memo
                    .clusters
                    .insert(svc.hostname.clone(), Arc::clone(kept));
                continue;
            }
            let mut built = Vec::new();
            // Istio's lookup order: the proxy's namespace, the service's, the root namespace.
            let namespaces = [
                self.proxy.namespace.as_str(),
                svc.namespace.as_str(),
                self.proxy.root_namespace.as_str(),
            ];
            let index = index.get_or_init(|| {
                DestinationRuleIndex::new(&self.ordered).for_proxy(&self.proxy.labels)
            });
            let subsets = index.subsets_for(&svc.hostname, &namespaces);
            let endpoints = match self.dns {
                Some(answers) => crate::dns::resolve_endpoints(svc, answers),
                None => svc.endpoints.clone(),
            };
            for port in &svc.ports {
                let h2 = port.protocol.upstream_h2();
                let all = std::iter::once((None, endpoints.clone()));
                let by_subset = subsets.iter().map(|s| {
                    let eps = endpoints
                        .iter()
                        .filter(|e| selector_matches(&s.labels, &e.labels))
                        .cloned()
                        .collect::<Vec<_>>();
                    (Some(s.name.as_str()), eps)
                });
                for (subset, eps) in all.chain(by_subset) {
                    let (mut policy, dr_tls) = cluster_policy::cluster_policy(
                        index,
                        &svc.hostname,
                        &namespaces,
                        port.number,
                        h2,
                        subset,
                    );
                    let target = auto_mtls::Target {
                        service: svc,
                        port: port.number,
                        subset,
                        endpoints: &eps,
                        h2,
                    };
                    if let Some(mesh) =
                        auto_mtls::mesh_client_tls(&dr_tls, &target, self.proxy, peers)
                    {
                        policy.tls = Some(mesh);
                    }
                    let policy = match last_policy.take() {
                        Some(last) if *last == policy => last,
                        _ => Arc::new(policy),
                    };
                    last_policy = Some(Arc::clone(&policy));
                    let c = Cluster::new(
                        svc,
                        port,
                        subset,
                        eps,
                        policy,
                        self.state,
                        Viewer {
                            proxy: self.proxy,
                            local: &self.memo.local,
                        },
                    );
                    let c = Arc::new(c);
                    clusters.push(Arc::clone(&c));
                    built.push(c);
                }
            }
            self.memo
                .clusters
                .insert(svc.hostname.clone(), built.into());
        }
        self.clusters = shared.unwrap_or_else(|| Arc::new(ClusterMap::new(clusters)));
        self.memo.cluster_map = Arc::clone(&self.clusters);
    }
}

/// The diagnostics without repeats, in the order first made (units compiled apart may each
/// make the same finding).
fn first_of_each(diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut seen = HashSet::with_capacity(diagnostics.len());
    diagnostics
        .into_iter()
        .filter(|d| seen.insert(d.clone()))
        .collect()
}

/// Whether `address` cannot be bound next to the listeners in `taken`: the same address, or the
/// same port where either side is a wildcard address (Linux refuses both).
pub(crate) fn port_taken(taken: &HashSet<SocketAddr>, address: SocketAddr) -> bool {
    taken.iter().any(|t| {
        t.port() == address.port()
            && (t.ip() == address.ip() || t.ip().is_unspecified() || address.ip().is_unspecified())
    })
}
