//! Scoping, as Istio does it: `exportTo` decides which objects a proxy's namespace sees, and the
//! Sidecar that applies to a sidecar proxy narrows that to its `egress` hosts and sets what
//! happens to destinations outside the registry (`outboundTrafficPolicy`).

pub mod egress;
pub mod export;

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use sluice_model::{Resource, ResourceRef, Spec, VirtualService};

use crate::authz::sidecar_ingress::select_sidecar;
use crate::host::{covers, fqdn};
use crate::labels::selector_matches;
use crate::proxy::ProxyConfig;
use crate::registry::{Registry, Service};
pub use egress::EgressScope;
pub use export::{audiences_overlap, exported_to, visible_in};

/// MeshConfig / Sidecar `outboundTrafficPolicy.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundMode {
    /// Unknown destinations pass through to where the caller was going (Istio's default).
    #[default]
    AllowAny,
    /// Unknown destinations are refused: `502` with flag `NR` for HTTP, the connection closed
    /// for TCP (Istio's `BlackHoleCluster`).
    RegistryOnly,
}

impl OutboundMode {
    /// Parses Istio's spelling (`ALLOW_ANY`, `REGISTRY_ONLY`).
    pub fn parse(s: &str) -> Option<OutboundMode> {
        match s {
            "ALLOW_ANY" => Some(OutboundMode::AllowAny),
            "REGISTRY_ONLY" => Some(OutboundMode::RegistryOnly),
            _ => None,
        }
    }

    /// Whether this is the default, `ALLOW_ANY`.
    pub fn is_allow_any(&self) -> bool {
        *self == OutboundMode::AllowAny
    }
}

/// What the Sidecar that applies to this proxy says about its outbound side.
#[derive(Debug, Clone, Default)]
pub struct SidecarScope {
    /// The egress hosts, when the Sidecar lists any (`None`: everything exported).
    pub egress: Option<EgressScope>,
    /// The outbound traffic policy: the Sidecar's, else the mesh default.
    pub mode: OutboundMode,
    /// `outboundTrafficPolicy.egressProxy`: where unknown destinations go instead of passing
    /// through (with `ALLOW_ANY`), and the Sidecar that says so.
    pub egress_proxy: Option<(EgressProxy, ResourceRef)>,
}

/// A Sidecar's `egressProxy` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressProxy {
    /// Host, expanded against the Sidecar's namespace.
    pub host: String,
    /// Subset, if any.
    pub subset: Option<String>,
    /// Port (`None`: the service's only port).
    pub port: Option<u16>,
}

impl EgressProxy {
    /// Reads Istio's `Destination` shape (`host`, `subset`, `port.number`).
    fn of(v: &serde_json::Value, namespace: &str) -> Option<EgressProxy> {
        let host = v.get("host")?.as_str()?.trim();
        if host.is_empty() {
            return None;
        }
        Some(EgressProxy {
            host: fqdn(host, namespace),
            subset: v
                .get("subset")
                .and_then(|s| s.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            port: v
                .get("port")
                .and_then(|p| p.get("number"))
                .and_then(|n| n.as_u64())
                .and_then(|n| u16::try_from(n).ok()),
        })
    }
}

/// The objects `proxy` sees: those exported to its namespace, in the same order.
pub fn exported_objects<'r>(ordered: Vec<&'r Resource>, proxy: &ProxyConfig) -> Vec<&'r Resource> {
    ordered
        .into_iter()
        .filter(|r| visible_in(r, &proxy.namespace))
        .collect()
}

/// The Sidecar scope of `proxy`. A proxy that serves a Gateway is a gateway, and gateways ignore
/// Sidecars (as in Istio): it sees everything exported to its namespace, with the mesh default
/// policy.
pub fn sidecar_scope(ordered: &[&Resource], proxy: &ProxyConfig) -> SidecarScope {
    let mesh_default = SidecarScope {
        egress: None,
        mode: proxy.outbound_traffic_policy,
        egress_proxy: None,
    };
    if acts_as_gateway(ordered, proxy) {
        return mesh_default;
    }
    let Some((r, sc)) = select_sidecar(ordered, proxy) else {
        return mesh_default;
    };
    SidecarScope {
        egress: EgressScope::of(sc, &r.metadata.namespace),
        mode: sc
            .outbound_traffic_policy
            .as_ref()
            .and_then(|p| p.mode.as_deref())
            .and_then(OutboundMode::parse)
            .unwrap_or(proxy.outbound_traffic_policy),
        egress_proxy: sc
            .outbound_traffic_policy
            .as_ref()
            .and_then(|p| p.egress_proxy.as_ref())
            .and_then(|v| EgressProxy::of(v, &r.metadata.namespace))
            .map(|e| (e, r.key())),
    }
}

/// Whether some Gateway selects this proxy in its gateway role.
fn acts_as_gateway(ordered: &[&Resource], proxy: &ProxyConfig) -> bool {
    proxy.gateway_role
        && ordered.iter().any(|r| match &r.spec {
            Spec::Gateway(gw) => gw
                .selector
                .as_ref()
                .is_none_or(|sel| selector_matches(sel, &proxy.labels)),
            _ => false,
        })
}

/// Narrows the objects and the registry to an egress scope: the VirtualServices it imports, and
/// the services it imports (on the listeners' ports) plus every service those VirtualServices
/// route or mirror to, as Istio infers them.
pub fn apply_egress<'r>(
    ordered: Vec<&'r Resource>,
    registry: Registry,
    egress: &EgressScope,
) -> (Vec<&'r Resource>, Registry) {
    let ordered: Vec<&Resource> = ordered
        .into_iter()
        .filter(|r| match &r.spec {
            // A delegate has no hosts: it is kept or not with the root that names it.
            Spec::VirtualService(vs) if vs.hosts.is_empty() => true,
            Spec::VirtualService(vs) => {
                let ns = &r.metadata.namespace;
                let hosts: Vec<String> = vs.hosts.iter().map(|h| fqdn(h, ns)).collect();
                egress.admits_virtual_service(ns, hosts.iter().map(String::as_str))
            }
            _ => true,
        })
        .collect();
    let mut destinations: HashSet<String> = HashSet::new();
    for r in &ordered {
        if let Spec::VirtualService(vs) = &r.spec {
            destinations.extend(destination_hosts(vs, &r.metadata.namespace));
        }
    }
    let wildcard_destinations: Vec<&String> =
        destinations.iter().filter(|h| h.starts_with('*')).collect();
    let routed_to = |host: &str| {
        destinations.contains(host) || wildcard_destinations.iter().any(|w| covers(w, host))
    };
    let registry = registry.filter_map(|svc| {
        if routed_to(&svc.hostname) {
            return Some(svc.clone());
        }
        if !egress.admits_host(&svc.namespace, &svc.hostname) {
            return None;
        }
        let ports: Vec<_> = svc
            .ports
            .iter()
            .filter(|p| egress.admits_port(&svc.namespace, &svc.hostname, p.number))
            .cloned()
            .collect();
        if ports.len() == svc.ports.len() {
            return Some(svc.clone());
        }
        (!ports.is_empty()).then(|| {
            Arc::new(Service {
                ports,
                ..(**svc).clone()
            })
        })
    });
    (ordered, registry)
}

/// The fully qualified hosts a VirtualService routes or mirrors to.
fn destination_hosts(vs: &VirtualService, ns: &str) -> Vec<String> {
    let http = vs.http.iter().flat_map(|h| {
        h.route
            .iter()
            .filter_map(|d| d.destination.as_ref())
            .chain(h.mirror.as_deref())
            .chain(h.mirrors.iter().filter_map(|m| m.destination.as_ref()))
    });
    let tcp = vs
        .tcp
        .iter()
        .flat_map(|t| t.route.iter().filter_map(|d| d.destination.as_ref()));
    let tls = vs
        .tls
        .iter()
        .flat_map(|t| t.route.iter().filter_map(|d| d.destination.as_ref()));
    http.chain(tcp)
        .chain(tls)
        .map(|d| fqdn(&d.host, ns))
        .collect()
}
