//! VirtualService `http` rules → compiled routes for one listener context (a gateway or the mesh).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use sluice_lb::WeightedSchedule;
use sluice_model::{
    codes, Destination, HttpMatchRequest, HttpRoute, Resource, Severity, SmallMap, VirtualService,
};

use super::Compiler;
use crate::cluster::cluster_name;
use crate::host::fqdn;
use crate::jwt_claim::{claim_path, ClaimMatch};
use crate::labels::selector_matches;
use crate::matcher::{KeyMatch, MoreConditions, RequestMatch, StrMatch};
use crate::policy::HeaderPolicy;
use crate::route_table::{Forward, Route, RouteAction, RouteDestination, RouteSource};

/// The reserved gateway name for sidecars.
pub const MESH: &str = "mesh";

/// Where rules are being compiled for.
#[derive(Debug, Clone, Copy)]
pub struct RuleContext<'c> {
    /// `ns/name` of the gateway, or [`MESH`].
    pub gateway: &'c str,
    /// The listener port (`match.port` and default destination ports).
    pub port: u16,
    /// Key prefix for split counters (listener and virtual host).
    pub scope: &'c str,
}

/// The conditions of a match entry that are settled when compiling for a listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryConditions<'m> {
    /// `gateways` of the entry.
    pub(crate) gateways: &'m [String],
    /// `port` of the entry.
    pub(crate) port: Option<u32>,
    /// `sourceLabels` of the entry.
    pub(crate) source_labels: &'m std::collections::BTreeMap<String, String>,
    /// `sourceNamespace` of the entry.
    pub(crate) source_namespace: Option<&'m str>,
}

/// The root VirtualService a rule is compiled under: config-time filters and the split counter.
#[derive(Debug, Clone, Copy)]
struct RuleScope<'s> {
    /// The root's gateways (a rule without matches applies where the root applies).
    top: &'s [String],
    /// The root's namespace (short gateway names in match entries).
    ns: &'s str,
    /// Unique key of the rule's split counter (within the listener scope).
    split_key: &'s str,
}

/// Expands a `gateways` entry: `name` and `./name` → `<ns>/name`; the legacy `name.ns` and
/// `name.ns.svc.cluster.local` → `ns/name`; `mesh` stays.
pub fn gateway_key(entry: &str, namespace: &str) -> String {
    if entry == MESH {
        return MESH.into();
    }
    if let Some(name) = entry.strip_prefix("./") {
        return format!("{namespace}/{name}");
    }
    if entry.contains('/') {
        return entry.to_string();
    }
    // Istio's resolveGatewayName: any dotted name is the legacy form, whose namespace is the
    // label after the first dot (`gw.ns`, `gw.ns.svc.cluster.local`); istiod only warns about it.
    match entry.split_once('.') {
        Some((name, rest)) => {
            let ns = rest.split('.').next().unwrap_or(rest);
            format!("{ns}/{name}")
        }
        None => format!("{namespace}/{entry}"),
    }
}

/// The gateways a VirtualService applies to (`mesh` when none are listed).
pub fn vs_gateways(vs: &VirtualService, namespace: &str) -> Vec<String> {
    if vs.gateways.is_empty() {
        vec![MESH.into()]
    } else {
        vs.gateways
            .iter()
            .map(|g| gateway_key(g, namespace))
            .collect()
    }
}

/// Whether the `gateways` entry `entry` of an object in `namespace` names `gateway` (as
/// [`gateway_key`] expands it, without building the key: every VirtualService is matched
/// against every gateway server).
pub fn gateway_entry_is(entry: &str, namespace: &str, gateway: &str) -> bool {
    if entry == MESH || entry.contains('/') && !entry.starts_with("./") {
        return entry == gateway;
    }
    let (ns, name) = match entry.strip_prefix("./") {
        Some(name) => (namespace, name),
        None => match entry.split_once('.') {
            Some((name, rest)) => (rest.split('.').next().unwrap_or(rest), name),
            None => (namespace, entry),
        },
    };
    gateway.split_once('/') == Some((ns, name))
}

/// Whether any rule of the VirtualService can apply to `gateway`.
pub fn vs_binds(vs: &VirtualService, namespace: &str, gateway: &str) -> bool {
    let top = if vs.gateways.is_empty() {
        gateway == MESH
    } else {
        vs.gateways
            .iter()
            .any(|g| gateway_entry_is(g, namespace, gateway))
    };
    top || vs.http.iter().any(|r| {
        r.matches.iter().any(|m| {
            m.gateways
                .iter()
                .any(|g| gateway_entry_is(g, namespace, gateway))
        })
    })
}

impl Compiler<'_> {
    /// Compiles the rules of `vs` that exist for `ctx` (config-time filters applied).
    pub(crate) fn compile_http_routes(
        &mut self,
        r: &Resource,
        vs: &VirtualService,
        ctx: RuleContext<'_>,
    ) -> Vec<Route> {
        let ns = &r.metadata.namespace;
        let top = vs_gateways(vs, ns);
        // A rule gives at most one route (a delegating one, its delegate's rules): sized for
        // that, since a route is large and a table lives as long as the snapshot.
        let mut out = Vec::with_capacity(vs.http.len());
        for (i, rule) in vs.http.iter().enumerate() {
            if rule.delegate.is_some() {
                // The root rule is replaced by the delegate's rules merged with it.
                for d in self.delegated_rules(r, i, rule) {
                    let key = format!(
                        "{ns}/{}|{i}|{}/{}|{}",
                        r.metadata.name,
                        d.resource.metadata.namespace,
                        d.resource.metadata.name,
                        d.index
                    );
                    let scope = RuleScope {
                        top: &top,
                        ns,
                        split_key: &key,
                    };
                    out.extend(self.compile_rule(d.resource, d.index, &d.rule, scope, ctx));
                }
                continue;
            }
            let key = format!("{ns}/{}|{i}", r.metadata.name);
            let scope = RuleScope {
                top: &top,
                ns,
                split_key: &key,
            };
            out.extend(self.compile_rule(r, i, rule, scope, ctx));
        }
        out.shrink_to_fit();
        out
    }

    /// Compiles one rule; `origin` and `i` name it (route source, default name, diagnostics).
    fn compile_rule(
        &mut self,
        origin: &Resource,
        i: usize,
        rule: &HttpRoute,
        scope: RuleScope<'_>,
        ctx: RuleContext<'_>,
    ) -> Option<Route> {
        let matches = if rule.matches.is_empty() {
            if !scope.top.iter().any(|g| g == ctx.gateway) {
                return None;
            }
            Vec::new()
        } else {
            let mut kept: Vec<RequestMatch> = Vec::new();
            for (j, m) in rule.matches.iter().enumerate() {
                if self.entry_applies(m, scope.top, scope.ns, ctx) {
                    kept.extend(self.compile_match(origin, i, j, m));
                }
            }
            if kept.is_empty() {
                return None;
            }
            // Routes live as long as the snapshot: no spare capacity (one entry is common).
            kept.shrink_to_fit();
            kept
        };
        let action = self.compile_action(origin, rule, scope.split_key, ctx)?;
        let policy = self.route_policy(origin, i, rule, ctx);
        Some(Route {
            name: rule
                .name
                .clone()
                .unwrap_or_else(|| format!("{}.{i}", origin.metadata.name)),
            source: RouteSource {
                virtual_service: Some(self.route_source(origin)),
                rule: i,
            },
            matches,
            action,
            policy,
        })
    }

    fn entry_applies(
        &self,
        m: &HttpMatchRequest,
        top: &[String],
        ns: &str,
        ctx: RuleContext<'_>,
    ) -> bool {
        self.conditions_hold(
            EntryConditions {
                gateways: &m.gateways,
                port: m.port,
                source_labels: &m.source_labels,
                source_namespace: m.source_namespace.as_deref(),
            },
            top,
            ns,
            ctx,
        )
    }

    /// Whether the compile-time conditions of a match entry (HTTP or L4) hold where the rule
    /// is being compiled: gateway (the root's `gateways` when the entry names none), port,
    /// source labels and source namespace (against this proxy).
    pub(crate) fn conditions_hold(
        &self,
        c: EntryConditions<'_>,
        top: &[String],
        ns: &str,
        ctx: RuleContext<'_>,
    ) -> bool {
        let gateway_ok = if c.gateways.is_empty() {
            top.iter().any(|g| g == ctx.gateway)
        } else {
            c.gateways.iter().any(|g| gateway_key(g, ns) == ctx.gateway)
        };
        let port_ok = c.port.is_none_or(|p| p == u32::from(ctx.port));
        let labels_ok = selector_matches(c.source_labels, &self.proxy.labels);
        let ns_ok = c.source_namespace.is_none_or(|s| s == self.proxy.namespace);
        gateway_ok && port_ok && labels_ok && ns_ok
    }

    fn compile_match(
        &mut self,
        r: &Resource,
        rule: usize,
        entry: usize,
        m: &HttpMatchRequest,
    ) -> Option<RequestMatch> {
        let base = format!("spec.http[{rule}].match[{entry}]");
        let mut err = None;
        let mut one = |field: &str, s: Option<&sluice_model::StringMatch>| -> Option<StrMatch> {
            let s = s?;
            match StrMatch::compile(s) {
                Ok(c) => Some(c),
                Err(e) => {
                    err = Some((format!("{base}.{field}"), e));
                    None
                }
            }
        };
        let uri = one("uri", m.uri.as_deref());
        let scheme = one("scheme", m.scheme.as_deref());
        let method = one("method", m.method.as_deref());
        let authority = one("authority", m.authority.as_deref());
        let mut keyed = |field: &str,
                         map: &sluice_model::SmallMap<String, sluice_model::StringMatch>,
                         lower: bool| {
            let mut matches: Vec<KeyMatch> = map
                .iter()
                .filter_map(|(k, v)| match StrMatch::compile(v) {
                    Ok(value) => Some(KeyMatch {
                        name: if lower {
                            k.to_ascii_lowercase()
                        } else {
                            k.clone()
                        },
                        value,
                    }),
                    Err(e) => {
                        err = Some((format!("{base}.{field}.{k}"), e));
                        None
                    }
                })
                .collect();
            matches.shrink_to_fit();
            matches
        };
        let (claim_keys, header_keys): (SmallMap<_, _>, SmallMap<_, _>) = m
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, _)| claim_path(k).is_some());
        let (without_claim_keys, without_header_keys): (SmallMap<_, _>, SmallMap<_, _>) = m
            .without_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, _)| claim_path(k).is_some());
        let headers = keyed("headers", &header_keys, true);
        let without_headers = keyed("withoutHeaders", &without_header_keys, true);
        let to_claims = |keys: Vec<KeyMatch>| -> Vec<ClaimMatch> {
            keys.into_iter()
                .filter_map(|k| {
                    Some(ClaimMatch {
                        path: claim_path(&k.name)?,
                        value: k.value,
                    })
                })
                .collect()
        };
        let claims = to_claims(keyed("headers", &claim_keys, false));
        let without_claims = to_claims(keyed("withoutHeaders", &without_claim_keys, false));
        let query_params = keyed("queryParams", &m.query_params, false);
        if let Some((field, e)) = err {
            self.diagnostics
                .push(r.diag(Severity::Error, codes::SCHEMA_VALIDATION, field, e));
            return None;
        }
        let more = MoreConditions {
            name: m.name.clone(),
            scheme,
            authority,
            without_headers,
            query_params,
            claims,
            without_claims,
            stat_prefix: m
                .stat_prefix
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(std::sync::Arc::from),
        };
        Some(RequestMatch {
            uri,
            ignore_uri_case: m.ignore_uri_case,
            method,
            headers,
            more: more.boxed(),
        })
    }

    fn compile_action(
        &mut self,
        r: &Resource,
        rule: &HttpRoute,
        split_key: &str,
        ctx: RuleContext<'_>,
    ) -> Option<RouteAction> {
        if let Some(d) = &rule.direct_response {
            return Some(super::actions::direct_response(d));
        }
        if let Some(rd) = &rule.redirect {
            return Some(super::actions::redirect(rd));
        }
        if rule.route.is_empty() {
            // Validation requires an action; delegation is expanded before this point.
            return None;
        }
        let route = rule
            .route
            .iter()
            .map(|d| {
                let headers = super::route_policy::header_policy(d.headers.as_deref());
                (d.destination.as_ref(), d.weight, headers)
            })
            .collect();
        self.compile_forward(r, route, split_key, ctx)
            .map(RouteAction::Forward)
    }

    /// Weighted destinations (HTTP or TCP) and their split schedule; `None` when every weight
    /// is zero.
    pub(crate) fn compile_forward(
        &mut self,
        r: &Resource,
        route: Vec<(Option<&Destination>, Option<i32>, HeaderPolicy)>,
        split_key: &str,
        ctx: RuleContext<'_>,
    ) -> Option<Forward> {
        let ns = &r.metadata.namespace;
        let several = route.len() > 1;
        let mut destinations: Vec<RouteDestination> = route
            .into_iter()
            .filter_map(|(dest, weight, headers)| {
                let weight = if several {
                    u32::try_from(weight.unwrap_or(0)).unwrap_or(0)
                } else {
                    100
                };
                if weight == 0 {
                    return None;
                }
                let mut resolved = self.resolve_destination(dest?, ns, ctx.port, weight);
                if !headers.is_empty() {
                    resolved.headers = Arc::new(headers);
                }
                Some(resolved)
            })
            .collect();
        if destinations.is_empty() {
            return None;
        }
        // The collect reuses the buffer of `route`, whose items are twice as large.
        destinations.shrink_to_fit();
        let weights: Vec<u32> = destinations.iter().map(|d| d.weight).collect();
        let key = format!("split|{}|{split_key}", ctx.scope);
        let split = self.schedule(&weights, self.state.counter(&key));
        Some(Forward {
            destinations,
            split,
        })
    }

    /// The split schedule of `weights` advanced by `counter`, its tables shared with every
    /// other split of the same weights (a handful of distinct ones across thousands of routes).
    pub(crate) fn schedule(&self, weights: &[u32], counter: Arc<AtomicU64>) -> WeightedSchedule {
        let mut schedules = self.schedules.borrow_mut();
        if let Some(s) = schedules.get(weights) {
            return s.with_counter(counter);
        }
        let s = WeightedSchedule::new(weights, counter);
        schedules.insert(weights.to_vec(), s.clone());
        s
    }

    /// One shared copy of a host, subset or cluster name that destinations hold.
    fn shared_name(&self, name: &str) -> Arc<str> {
        let mut names = self.names.borrow_mut();
        if let Some(n) = names.get(name) {
            return Arc::clone(n);
        }
        let n: Arc<str> = Arc::from(name);
        names.insert(Arc::clone(&n));
        n
    }

    /// Resolves a destination to its cluster (host expanded in the VirtualService's namespace).
    pub(crate) fn resolve_destination(
        &self,
        dest: &Destination,
        ns: &str,
        listener_port: u16,
        weight: u32,
    ) -> RouteDestination {
        let host = fqdn(&dest.host, ns);
        // What the unit being compiled depends on (see `reuse`).
        self.deps
            .borrow_mut()
            .push(super::reuse::name_hash(&host.to_ascii_lowercase()));
        let service = self.registry.get(&host);
        let port = dest
            .port
            .and_then(|p| u16::try_from(p.number).ok())
            .or_else(|| match service.map(|s| s.ports.as_slice()) {
                Some([only]) => Some(only.number),
                _ => None,
            })
            .unwrap_or(listener_port);
        let name = cluster_name(&host, port, dest.subset.as_deref());
        let cluster = self.clusters.get(&name).map(Arc::clone);
        RouteDestination {
            host: self.shared_name(&host),
            subset: dest.subset.as_deref().map(|s| self.shared_name(s)),
            port,
            weight,
            cluster_name: self.shared_name(&name),
            cluster,
            headers: Arc::clone(&self.no_headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_entry_is_agrees_with_gateway_key() {
        let entries = [
            "mesh",
            "gw",
            "./gw",
            "prod/gw",
            "gw.prod",
            "gw.prod.svc.cluster.local",
            "other",
            "./other",
        ];
        let gateways = [
            "mesh",
            "default/gw",
            "prod/gw",
            "default/other",
            "prod/other",
        ];
        for e in entries {
            for g in gateways {
                assert_eq!(
                    gateway_entry_is(e, "default", g),
                    gateway_key(e, "default") == g,
                    "{e} vs {g}"
                );
            }
        }
    }
}
