//! Compiled routes: ordered rules with their matches and actions.

use std::sync::Arc;

use serde::Serialize;
use sluice_lb::WeightedSchedule;
use sluice_model::ResourceRef;

use crate::cluster::Cluster;
use crate::matcher::{RequestInfo, RequestMatch};
use crate::policy::{HeaderPolicy, RoutePolicy};

/// Where a route came from, for `explain`, `/routes` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct RouteSource {
    /// The VirtualService (absent for the default route of a service), shared by the routes
    /// compiled from it.
    pub virtual_service: Option<Arc<ResourceRef>>,
    /// Index of the rule in `spec.http`.
    pub rule: usize,
}

/// One HTTP rule: matches (OR'ed; empty = everything) and an action.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Route name (`<rule name>` or `<vs>.<index>`; `default` for the service route).
    pub name: String,
    /// Origin.
    pub source: RouteSource,
    /// Match entries; the rule applies when any matches.
    pub matches: Vec<RequestMatch>,
    /// What to do.
    pub action: RouteAction,
    /// Timeouts, retries, faults, mirrors, rewrites, header operations, CORS.
    pub policy: Arc<RoutePolicy>,
}

impl Route {
    /// Whether the rule matches every request.
    pub fn is_catch_all(&self) -> bool {
        self.matches.is_empty() || self.matches.iter().any(RequestMatch::is_catch_all)
    }
}

/// What a matched route does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RouteAction {
    /// Forward to weighted destinations.
    Forward(Forward),
    /// Answer with a redirect (boxed, as the rarer actions are: one action is kept per route).
    Redirect(Box<Redirect>),
    /// Answer with a fixed response.
    DirectResponse(Box<DirectResponse>),
}

/// A compiled `HTTPRedirect`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    /// Replacement path.
    pub uri: Option<String>,
    /// Replacement for the matched prefix.
    pub prefix_rewrite: Option<String>,
    /// Replacement host.
    pub authority: Option<String>,
    /// Replacement scheme.
    pub scheme: Option<String>,
    /// Explicit port.
    pub port: Option<u16>,
    /// Use the listener's port.
    pub port_from_request: bool,
    /// Status code.
    pub code: u16,
}

impl Redirect {
    /// The `Location` for a request; `matched_prefix` is the prefix the rule matched, if any.
    pub fn location(
        &self,
        req: &RequestInfo<'_>,
        matched_prefix: Option<&str>,
        listener_port: u16,
    ) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(req.scheme);
        let host = self
            .authority
            .as_deref()
            .unwrap_or_else(|| crate::host::strip_port(req.authority));
        let port = self
            .port
            .or(self.port_from_request.then_some(listener_port))
            .or_else(|| {
                // Without a port rule the original port is kept unless the scheme changes.
                let original = req
                    .authority
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok());
                if self.scheme.is_some() || self.authority.is_some() {
                    None
                } else {
                    original
                }
            });
        let port = port.filter(|p| !matches!((scheme, p), ("http", 80) | ("https", 443)));
        let path = match (&self.uri, &self.prefix_rewrite, matched_prefix) {
            (Some(u), _, _) => {
                let q = req.query().map(|q| format!("?{q}")).unwrap_or_default();
                format!("{u}{q}")
            }
            (None, Some(rw), Some(prefix)) => {
                let rest = req.path_and_query.get(prefix.len()..).unwrap_or("");
                format!("{rw}{rest}")
            }
            _ => req.path_and_query.to_string(),
        };
        match port {
            Some(p) => format!("{scheme}://{host}:{p}{path}"),
            None => format!("{scheme}://{host}{path}"),
        }
    }
}

/// A compiled `HTTPDirectResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DirectResponse {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    #[serde(serialize_with = "ser_body")]
    pub body: Vec<u8>,
}

fn ser_body<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

/// Weighted destinations and the split schedule between them.
#[derive(Debug, Clone, Serialize)]
pub struct Forward {
    /// Destinations with weight > 0 (or the single destination).
    pub destinations: Vec<RouteDestination>,
    #[serde(skip)]
    pub(crate) split: WeightedSchedule,
}

impl Forward {
    /// Picks the next destination; exact proportions over every window of `sum(weights)`.
    pub fn pick(&self) -> Option<&RouteDestination> {
        if self.destinations.len() == 1 {
            return self.destinations.first();
        }
        self.destinations.get(self.split.next()?)
    }

    /// The destination a hash key maps to: always the same for one key, and over many keys
    /// the shares follow the weights (version-sticky canaries).
    pub fn pick_by_hash(&self, hash: u64) -> Option<&RouteDestination> {
        if self.destinations.len() == 1 {
            return self.destinations.first();
        }
        self.destinations.get(self.split.at(hash)?)
    }
}

/// One destination of a route.
#[derive(Debug, Clone, Serialize)]
pub struct RouteDestination {
    /// Service host (FQDN). The names are shared by every destination naming them: a service
    /// is the destination of routes on several listeners.
    pub host: Arc<str>,
    /// Subset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<Arc<str>>,
    /// Service port.
    pub port: u16,
    /// Relative weight.
    pub weight: u32,
    /// Cluster name (`outbound|port|subset|host`).
    pub cluster_name: Arc<str>,
    /// The cluster; `None` when it does not exist (unknown host, port or subset → 503 NC).
    #[serde(skip)]
    pub cluster: Option<Arc<Cluster>>,
    /// Per-destination header operations (applied after the route's); shared, since most
    /// destinations have none and inline they were a third of a destination's size.
    #[serde(skip_serializing_if = "HeaderPolicy::is_empty")]
    pub headers: Arc<HeaderPolicy>,
}
