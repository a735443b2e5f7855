//! The service registry built from ServiceEntry and WorkloadEntry objects.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use sluice_model::{Resource, ResourceRef, ServiceEntry, Spec, WorkloadEntry};

use crate::labels::selector_matches;
use crate::protocol::Protocol;

/// A service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePort {
    /// Port number clients use.
    pub number: u16,
    /// Port name (keys WorkloadEntry `ports`).
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Endpoint port when the endpoint does not say.
    pub target_port: Option<u16>,
}

/// A workload instance serving a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// IP or DNS name.
    pub address: String,
    /// Port per service port name.
    pub ports: BTreeMap<String, u16>,
    /// Labels (subset selection, telemetry).
    pub labels: sluice_model::SmallMap<String, String>,
    /// Load-balancing weight (≥ 1).
    pub weight: u32,
    /// The WorkloadEntry it came from, if standalone.
    pub workload: Option<String>,
    /// The workload's service account (`serviceAccount`), whose identity auto-mTLS expects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// `region/zone/subzone` of the workload (empty: unknown).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub locality: String,
    /// The DNS name `address` was resolved from (empty: `address` is as configured).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// The L3 network of the workload (`network`; empty: the proxy's own).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network: String,
}

impl Endpoint {
    /// The endpoint's port for a service port, Istio's way: explicit map, else targetPort, else number.
    pub fn port_for(&self, port: &ServicePort) -> u16 {
        self.ports
            .get(&port.name)
            .copied()
            .or(port.target_port)
            .unwrap_or(port.number)
    }
}

/// A registry service (one per ServiceEntry host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    /// Fully qualified host name.
    pub hostname: String,
    /// Namespace of the ServiceEntry.
    pub namespace: String,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// Virtual IPs.
    pub addresses: Vec<IpAddr>,
    /// Endpoints.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Resolution mode (`STATIC`, `DNS`, `NONE`, ...).
    pub resolution: String,
    /// `location: MESH_INTERNAL` (Kubernetes Services are): only such services get automatic
    /// mTLS.
    pub mesh_internal: bool,
    /// The ServiceEntry's `subjectAltNames`: identities its endpoints may present.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// The ServiceEntry that defined it.
    pub source: ResourceRef,
}

impl Service {
    /// The port with this number.
    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.number == number)
    }
}

/// All services, by host name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Sorted by host name, one per host. (A map by name copied every name and was rebuilt
    /// on every edit, twice: for the compile and for the analysis.)
    services: Vec<Arc<Service>>,
}

/// `{"services": {host: service}}`, as the map it replaces was written.
impl Serialize for Registry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeStruct};
        struct ByHost<'a>(&'a [Arc<Service>]);
        impl Serialize for ByHost<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for s in self.0 {
                    map.serialize_entry(&s.hostname, s)?;
                }
                map.end()
            }
        }
        let mut st = serializer.serialize_struct("Registry", 1)?;
        st.serialize_field("services", &ByHost(&self.services))?;
        st.end()
    }
}

impl Registry {
    /// Builds the registry from validated objects; the first ServiceEntry to claim a host wins.
    pub fn build<'r>(resources: impl IntoIterator<Item = &'r Resource> + Clone) -> Registry {
        Registry::build_reusing(resources, |_| None, |_, _| {})
    }

    /// [`Registry::build`], taking a ServiceEntry's services from `kept` when it has them (an
    /// unchanged object of the previous build) and telling `made` the services of each
    /// ServiceEntry, one per host, whether or not an earlier one claimed the host.
    pub fn build_reusing<'r, 'k>(
        resources: impl IntoIterator<Item = &'r Resource> + Clone,
        kept: impl Fn(&Resource) -> Option<&'k [Arc<Service>]>,
        mut made: impl FnMut(&Resource, &[Arc<Service>]),
    ) -> Registry {
        let workloads: Vec<(&Resource, &WorkloadEntry)> = resources
            .clone()
            .into_iter()
            .filter_map(|r| match &r.spec {
                Spec::WorkloadEntry(we) => Some((r, &**we)),
                _ => None,
            })
            .collect();
        let mut services: Vec<Arc<Service>> = Vec::new();
        for r in resources {
            let Spec::ServiceEntry(se) = &r.spec else {
                continue;
            };
            if let Some(kept) = kept(r) {
                services.extend(kept.iter().cloned());
                made(r, kept);
                continue;
            }
            let endpoints = endpoints_of(r, se, &workloads);
            let ports = se
                .ports
                .iter()
                .filter_map(|p| {
                    Some(ServicePort {
                        number: u16::try_from(p.number).ok().filter(|n| *n > 0)?,
                        name: p.name.clone(),
                        protocol: Protocol::resolve(p.protocol.as_deref(), &p.name),
                        target_port: p.target_port.and_then(|t| u16::try_from(t).ok()),
                    })
                })
                .collect::<Vec<_>>();
            let addresses = se
                .addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect::<Vec<_>>();
            let resolves_itself = endpoints.is_empty() && resolves_host_itself(se);
            // Istio reaches an endpoint without an address (only a `network`) through that
            // network's gateway; with no gateway known (sluice has none) it is left out.
            let endpoints: Vec<Arc<Endpoint>> = endpoints
                .into_iter()
                .filter(|e| !e.address.is_empty())
                .collect();
            let mut own = Vec::with_capacity(se.hosts.len());
            for host in &se.hosts {
                let hostname = host.trim_end_matches('.').to_ascii_lowercase();
                let endpoints = if resolves_itself {
                    vec![host_endpoint(host)]
                } else {
                    endpoints.clone()
                };
                let svc = Arc::new(Service {
                    hostname: hostname.clone(),
                    namespace: r.metadata.namespace.clone(),
                    ports: ports.clone(),
                    addresses: addresses.clone(),
                    endpoints,
                    resolution: se.resolution.clone().unwrap_or_else(|| "NONE".into()),
                    mesh_internal: se.location.as_deref() == Some("MESH_INTERNAL"),
                    subject_alt_names: se.subject_alt_names.clone(),
                    source: r.key(),
                });
                services.push(Arc::clone(&svc));
                own.push(svc);
            }
            made(r, &own);
        }
        // Stable: of the services of one host, the first claim stays first, and is kept.
        services.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        services.dedup_by(|later, first| later.hostname == first.hostname);
        services.shrink_to_fit();
        Registry { services }
    }

    /// The registry with each service replaced by what `f` makes of it (`None`: dropped).
    pub fn filter_map(self, mut f: impl FnMut(&Arc<Service>) -> Option<Arc<Service>>) -> Registry {
        let services = self.services.iter().filter_map(&mut f).collect();
        Registry { services }
    }

    /// The service with this exact host name.
    pub fn get(&self, host: &str) -> Option<&Arc<Service>> {
        self.services
            .binary_search_by(|s| s.hostname.as_str().cmp(host))
            .ok()
            .and_then(|i| self.services.get(i))
    }

    /// Every service, ordered by host name.
    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.iter()
    }

    /// Services whose host a (possibly wildcard) name covers.
    pub fn matching<'a>(&'a self, pattern: &'a str) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        // An exact name covers only itself: one lookup, not a scan of every service (a scan per
        // DestinationRule was quadratic at 10,000 services). Host names are kept lowercase.
        let wildcard = pattern.starts_with('*');
        let exact = if wildcard {
            None
        } else {
            self.get(&pattern.to_ascii_lowercase())
        };
        let scanned = if wildcard { self.services.len() } else { 0 };
        exact.into_iter().chain(
            self.services
                .iter()
                .take(scanned)
                .filter(move |s| crate::host::covers(pattern, &s.hostname)),
        )
    }
}

fn endpoints_of(
    r: &Resource,
    se: &ServiceEntry,
    workloads: &[(&Resource, &WorkloadEntry)],
) -> Vec<Arc<Endpoint>> {
    let convert = |we: &WorkloadEntry, workload: Option<String>| Endpoint {
        address: we.address.clone(),
        ports: we
            .ports
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), u16::try_from(*v).ok()?)))
            .collect(),
        labels: we.labels.clone(),
        weight: we.weight.filter(|w| *w > 0).unwrap_or(1),
        workload,
        service_account: we.service_account.clone().filter(|s| !s.is_empty()),
        locality: locality_of(we),
        hostname: String::new(),
        network: we.network.clone().unwrap_or_default(),
    };
    if let Some(sel) = &se.workload_selector {
        return workloads
            .iter()
            .filter(|(wr, we)| {
                wr.metadata.namespace == r.metadata.namespace
                    && selector_matches(&sel.labels, &we.labels)
            })
            .map(|(wr, we)| Arc::new(convert(we, Some(wr.metadata.name.clone()))))
            .collect();
    }
    se.endpoints
        .iter()
        .map(|we| Arc::new(convert(we, None)))
        .collect()
}

/// A DNS ServiceEntry without endpoints or selector resolves each of its hosts by name (Envoy's
/// STRICT_DNS/LOGICAL_DNS cluster per host), so every host needs an endpoint of its own.
fn resolves_host_itself(se: &ServiceEntry) -> bool {
    se.workload_selector.is_none()
        && matches!(
            se.resolution.as_deref(),
            Some("DNS") | Some("DNS_ROUND_ROBIN")
        )
}

/// An endpoint's `locality`, else Istio's `istio-locality` label (`region.zone.subzone`, as label
/// values cannot hold `/`).
fn locality_of(we: &WorkloadEntry) -> String {
    match we
        .locality
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        Some(l) => l.to_string(),
        None => we
            .labels
            .get("istio-locality")
            .map(|l| l.trim().replace('.', "/"))
            .unwrap_or_default(),
    }
}

/// The endpoint of a host that resolves itself: its own name, on the service port.
fn host_endpoint(host: &str) -> Arc<Endpoint> {
    Arc::new(Endpoint {
        address: host.to_string(),
        ports: BTreeMap::new(),
        labels: sluice_model::SmallMap::new(),
        weight: 1,
        workload: None,
        service_account: None,
        locality: String::new(),
        hostname: String::new(),
        network: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(yaml: &str) -> Registry {
        let parsed = sluice_model::parse_text(yaml, None);
        Registry::build(&parsed.resources)
    }

    fn addresses(r: &Registry, host: &str) -> Vec<String> {
        r.get(host)
            .map(|s| s.endpoints.iter().map(|e| e.address.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn each_host_of_a_dns_service_entry_without_endpoints_resolves_itself() {
        let r = registry(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec:\n  hosts: [api.example.com, www.example.org]\n  ports: [{number: 443, name: https, protocol: HTTPS}]\n  resolution: DNS\n",
        );
        assert_eq!(addresses(&r, "api.example.com"), ["api.example.com"]);
        assert_eq!(addresses(&r, "www.example.org"), ["www.example.org"]);
    }

    /// Of two ServiceEntries claiming a host, the first wins, whatever the names' order; the
    /// services come out by host name, written as a map by host.
    #[test]
    fn the_first_claim_of_a_host_wins_and_services_are_ordered_by_host() {
        let se = |name: &str, hosts: &str, address: &str| {
            format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{hosts}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: {address}}}]\n---\n")
        };
        let r = registry(&format!(
            "{}{}{}",
            se("z", "b.example.com, c.example.com", "10.0.0.1"),
            se("a", "b.example.com, a.example.com", "10.0.0.2"),
            se("m", "c.example.com", "10.0.0.3"),
        ));
        let hosts: Vec<&str> = r.services().map(|s| s.hostname.as_str()).collect();
        assert_eq!(hosts, ["a.example.com", "b.example.com", "c.example.com"]);
        assert_eq!(addresses(&r, "b.example.com"), ["10.0.0.1"]);
        assert_eq!(addresses(&r, "c.example.com"), ["10.0.0.1"]);
        assert_eq!(addresses(&r, "a.example.com"), ["10.0.0.2"]);
        assert!(r.get("d.example.com").is_none());
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(
            json["services"]["b.example.com"]["source"]["name"],
            serde_json::json!("z")
        );
    }

    #[test]
    fn explicit_endpoints_are_shared_by_every_host() {
        let r = registry(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec:\n  hosts: [a.example.com, b.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n  endpoints: [{address: backend.example.net}]\n",
        );
        assert_eq!(addresses(&r, "a.example.com"), ["backend.example.net"]);
        assert_eq!(addresses(&r, "b.example.com"), ["backend.example.net"]);
    }

    #[test]
    fn endpoint_locality_comes_from_the_field_or_the_istio_locality_label() {
        let r = registry(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: hw}\nspec:\n  hosts: [hw.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints:\n  - {address: 10.0.0.1, locality: region1/zone1}\n  - {address: 10.0.0.2, labels: {istio-locality: region2.zone3}}\n  - {address: 10.0.0.3}\n",
        );
        let localities: Vec<String> = r
            .get("hw.example.com")
            .map(|s| s.endpoints.iter().map(|e| e.locality.clone()).collect())
            .unwrap_or_default();
        assert_eq!(localities, ["region1/zone1", "region2/zone3", ""]);
    }
}
