//! DNS resolution of ServiceEntry endpoints, Envoy's way, with no I/O: the resolver (outside
//! this crate) hands in the latest answers, and a `resolution: DNS` service gets one endpoint per
//! address (STRICT_DNS) while `DNS_ROUND_ROBIN` gets one endpoint at the first address of the
//! latest answer (LOGICAL_DNS).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::registry::{Endpoint, Registry, Service};

/// The shortest re-resolution interval, however short a record's TTL.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// The latest addresses of each name the resolver tracks, in answer order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsAnswers {
    names: BTreeMap<String, Vec<IpAddr>>,
}

impl DnsAnswers {
    /// No answers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the latest addresses of `name` (an empty list: the name has no address records).
    pub fn insert(&mut self, name: &str, addresses: Vec<IpAddr>) {
        self.names.insert(normalize(name), addresses);
    }

    /// Forgets `name` (no service names it any more).
    pub fn remove(&mut self, name: &str) {
        self.names.remove(&normalize(name));
    }

    /// The latest addresses of `name`; `None` while it has never been answered.
    pub fn get(&self, name: &str) -> Option<&[IpAddr]> {
        self.names.get(&normalize(name)).map(Vec::as_slice)
    }

    /// Every name with an answer.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }
}

/// How a service's endpoint names become addresses (Envoy's cluster discovery types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// `resolution: DNS`: every address of every name is an endpoint (STRICT_DNS).
    Strict,
    /// `resolution: DNS_ROUND_ROBIN`: one endpoint, the first address of the latest answer
    /// (LOGICAL_DNS).
    Logical,
}

impl DnsMode {
    /// The mode of a ServiceEntry `resolution`, if it resolves names.
    pub fn of(resolution: &str) -> Option<DnsMode> {
        match resolution {
            "DNS" => Some(DnsMode::Strict),
            "DNS_ROUND_ROBIN" => Some(DnsMode::Logical),
            _ => None,
        }
    }
}

/// A record's TTL as a re-resolution interval: at least [`MIN_REFRESH`], at most `refresh`
/// (`--dns-refresh`), so a TTL of 0 does not spin and a day-long TTL still follows changes.
pub fn refresh_interval(ttl: Duration, refresh: Duration) -> Duration {
    ttl.min(refresh).max(MIN_REFRESH)
}

/// Whether an endpoint address is a name to resolve (not an IP or a Unix socket path).
pub fn is_name(address: &str) -> bool {
    !address.is_empty()
        && !address.starts_with("unix://")
        && address
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_err()
}

/// Every name the registry's DNS services need resolved.
pub fn wanted_names(registry: &Registry) -> BTreeSet<String> {
    registry
        .services()
        .filter_map(|s| Some((s, DnsMode::of(&s.resolution)?)))
        .flat_map(|(s, mode)| {
            let take = match mode {
                DnsMode::Strict => s.endpoints.len(),
                DnsMode::Logical => 1,
            };
            s.endpoints.iter().take(take)
        })
        .filter(|e| is_name(&e.address))
        .map(|e| normalize(&e.address))
        .collect()
}

/// The endpoints of `service` once its names are replaced by their latest addresses; a name
/// not answered yet has no endpoint (Envoy's DNS cluster has no host until its first answer).
/// Services that do not resolve names keep their endpoints.
pub fn resolve_endpoints(service: &Service, answers: &DnsAnswers) -> Vec<Arc<Endpoint>> {
    let Some(mode) = DnsMode::of(&service.resolution) else {
        return service.endpoints.clone();
    };
    match mode {
        DnsMode::Strict => service
            .endpoints
            .iter()
            .flat_map(|e| addresses_of(e, answers, usize::MAX))
            .collect(),
        // Envoy's LOGICAL_DNS cluster takes exactly one endpoint; Istio gives it the first.
        DnsMode::Logical => service
            .endpoints
            .first()
            .map(|e| addresses_of(e, answers, 1))
            .unwrap_or_default(),
    }
}

/// One endpoint per address of `e`'s name (at most `limit`), each with `e`'s labels, locality
/// and full weight: Envoy gives every host a STRICT_DNS endpoint resolves to the endpoint's
/// `load_balancing_weight`, it does not divide it.
fn addresses_of(e: &Arc<Endpoint>, answers: &DnsAnswers, limit: usize) -> Vec<Arc<Endpoint>> {
    if !is_name(&e.address) {
        return vec![e.clone()];
    }
    let Some(addresses) = answers.get(&e.address) else {
        return Vec::new();
    };
    addresses
        .iter()
        .take(limit)
        .map(|ip| {
            Arc::new(Endpoint {
                address: ip.to_string(),
                hostname: normalize(&e.address),
                ..Endpoint::clone(e)
            })
        })
        .collect()
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(yaml: &str) -> Registry {
        let parsed = sluice_model::parse_text(yaml, None);
        Registry::build(&parsed.resources)
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().filter_map(|s| s.parse().ok()).collect()
    }

    fn resolved(r: &Registry, host: &str, answers: &DnsAnswers) -> Vec<(String, u32, String)> {
        r.get(host)
            .map(|s| resolve_endpoints(s, answers))
            .unwrap_or_default()
            .iter()
            .map(|e| (e.address.clone(), e.weight, e.hostname.clone()))
            .collect()
    }

    #[test]
    fn ttl_is_clamped_between_one_second_and_the_refresh_rate() {
        let refresh = Duration::from_secs(30);
        assert_eq!(refresh_interval(Duration::ZERO, refresh), MIN_REFRESH);
        assert_eq!(
            refresh_interval(Duration::from_millis(300), refresh),
            MIN_REFRESH
        );
        assert_eq!(
            refresh_interval(Duration::from_secs(7), refresh),
            Duration::from_secs(7)
        );
        assert_eq!(
            refresh_interval(Duration::from_secs(86_400), refresh),
            refresh
        );
        // A refresh rate below the floor still leaves one second between queries.
        assert_eq!(
            refresh_interval(Duration::from_secs(5), Duration::from_millis(10)),
            MIN_REFRESH
        );
    }

    #[test]
    fn names_are_told_from_addresses() {
        assert!(is_name("api.example.com"));
        assert!(is_name("localhost"));
        assert!(!is_name("10.0.0.1"));
        assert!(!is_name("::1"));
        assert!(!is_name("[::1]"));
        assert!(!is_name("unix:///var/run/app.sock"));
        assert!(!is_name(""));
    }

    #[test]
    fn strict_dns_makes_an_endpoint_of_every_address_with_the_full_weight() {
        let r = registry(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec:\n  hosts: [svc.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n  endpoints:\n  - {address: Pool.Example.Net., weight: 3, labels: {v: a}}\n  - {address: 10.9.9.9}\n",
        );
        let mut answers = DnsAnswers::new();
        answers.insert("pool.example.net", ips(&["127.0.0.2", "127.0.0.3"]));
        assert_eq!(
            resolved(&r, "svc.example.com", &answers),
            [
                ("127.0.0.2".into(), 3, "pool.example.net".into()),
                ("127.0.0.3".into(), 3, "pool.example.net".into()),
                ("10.9.9.9".into(), 1, String::new()),
            ]
        );
        let labels: Vec<_> = r
            .get("svc.example.com")
            .map(|s| resolve_endpoints(s, &answers))
            .unwrap_or_default()
            .iter()
            .map(|e| e.labels.get("v").cloned())
            .collect();
        assert_eq!(labels, [Some("a".into()), Some("a".into()), None]);
        assert_eq!(
            wanted_names(&r).into_iter().collect::<Vec<_>>(),
            ["pool.example.net"]
        );
    }

    #[test]
    fn a_name_not_answered_yet_has_no_endpoint() {
        let r = registry(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec:\n  hosts: [svc.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n",
        );
        assert!(resolved(&r, "svc.example.com", &DnsAnswers::new()).is_empty());
    }

    #[test]
    fn each_host_without_endpoints_resolves_its_own_name() {
        let r = registry(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec:\n  hosts: [a.example.com, b.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n",
        );
        let mut answers = DnsAnswers::new();
        answers.insert("a.example.com", ips(&["127.0.0.2"]));
        answers.insert("b.example.com", ips(&["127.0.0.3", "127.0.0.4"]));
        let addrs = |h| -> Vec<String> {
            resolved(&r, h, &answers)
                .into_iter()
                .map(|(a, _, _)| a)
                .collect()
        };
        assert_eq!(addrs("a.example.com"), ["127.0.0.2"]);
        assert_eq!(addrs("b.example.com"), ["127.0.0.3", "127.0.0.4"]);
        assert_eq!(wanted_names(&r).len(), 2);
    }

    #[test]
    fn logical_dns_takes_the_first_address_of_the_first_endpoint() {
        let r = registry(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec:\n  hosts: [svc.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS_ROUND_ROBIN\n  endpoints:\n  - {address: one.example.net}\n  - {address: two.example.net}\n",
        );
        let mut answers = DnsAnswers::new();
        answers.insert("one.example.net", ips(&["127.0.0.5", "127.0.0.6"]));
        answers.insert("two.example.net", ips(&["127.0.0.7"]));
        assert_eq!(
            resolved(&r, "svc.example.com", &answers),
            [("127.0.0.5".into(), 1, "one.example.net".into())]
        );
        assert_eq!(
            wanted_names(&r).into_iter().collect::<Vec<_>>(),
            ["one.example.net"]
        );
    }

    #[test]
    fn static_services_keep_their_endpoints() {
        let r = registry(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec:\n  hosts: [svc.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n",
        );
        assert_eq!(
            resolved(&r, "svc.example.com", &DnsAnswers::new()),
            [("10.0.0.1".into(), 1, String::new())]
        );
        assert!(wanted_names(&r).is_empty());
    }
}
