//! Why a request goes where it goes: the same routing as the proxy, with every decision recorded.

mod render;
mod request;

use serde::Serialize;

pub use render::render;
pub use request::{explain_request, ExplainError, ExplainRequest};

use crate::listener::Listener;
use crate::matcher::RequestInfo;
use crate::policy::{ClusterPolicy, RoutePolicy};
use crate::route_table::{Route, RouteAction};
use crate::snapshot::{route, Routed};

/// The verdict on one rule.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleVerdict {
    /// Rule name.
    pub name: String,
    /// `namespace/name` of its VirtualService and the rule index, when it has one.
    pub source: Option<String>,
    /// `matched`, `no match` or `not reached`.
    pub verdict: &'static str,
    /// Why each match entry failed (empty when matched or not reached).
    pub reasons: Vec<String>,
}

/// One endpoint of a chosen cluster.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    /// `host:port`.
    pub address: String,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Weight.
    pub weight: u32,
}

/// One destination of the matched rule.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationView {
    /// Cluster name.
    pub cluster: String,
    /// Weight and its share of the total.
    pub weight: u32,
    /// Share in percent.
    pub share_percent: f64,
    /// Whether the cluster exists (else 503 NC).
    pub exists: bool,
    /// Its endpoints (empty: 503 UH).
    pub endpoints: Vec<EndpointView>,
    /// Its DestinationRule policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<ClusterPolicy>,
}

/// The whole explanation.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Listener name and address.
    pub listener: String,
    /// The virtual host chosen by Host, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_host: Option<String>,
    /// Every rule of the virtual host in order.
    pub rules: Vec<RuleVerdict>,
    /// The outcome in one line (`forward`, `redirect …`, `direct response …`, `404 NR`).
    pub outcome: String,
    /// Destinations of the matched rule.
    pub destinations: Vec<DestinationView>,
    /// Policies of the matched rule (timeout, retries, fault, mirrors, rewrite, headers, CORS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<RoutePolicy>,
}

fn source(r: &Route) -> Option<String> {
    r.source
        .virtual_service
        .as_ref()
        .map(|v| format!("{}/{} http[{}]", v.namespace, v.name, r.source.rule))
}

/// Explains how `listener` routes `req`.
pub fn explain(listener: &Listener, req: &RequestInfo<'_>) -> Explanation {
    let mut out = Explanation {
        listener: format!("{} ({})", listener.name, listener.address),
        virtual_host: None,
        rules: Vec::new(),
        outcome: "404 NR: no virtual host for this Host".into(),
        destinations: Vec::new(),
        policy: None,
    };
    let Some(vh) = listener.virtual_host(req.authority) else {
        return out;
    };
    out.virtual_host = Some(format!("{} (domains: {})", vh.name, vh.domains.join(", ")));
    let matched = match route(listener, req) {
        Routed::Matched(m) => Some(m),
        Routed::RequireTls(_) => {
            out.outcome = format!(
                "301 to https://{}{}: the Gateway server has tls.httpsRedirect",
                req.authority, req.path_and_query
            );
            return out;
        }
        _ => None,
    };
    let mut reached = true;
    for r in vh.routes.iter() {
        let is_match = matched.as_ref().is_some_and(|m| std::ptr::eq(m.route, r));
        let (verdict, reasons) = if !reached {
            ("not reached", Vec::new())
        } else if is_match {
            reached = false;
            ("matched", Vec::new())
        } else {
            let reasons = r
                .matches
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.mismatch(req).map(|why| format!("match[{i}]: {why}")))
                .collect();
            ("no match", reasons)
        };
        out.rules.push(RuleVerdict {
            name: r.name.clone(),
            source: source(r),
            verdict,
            reasons,
        });
    }
    let Some(m) = matched else {
        out.outcome = "404 NR: no rule matched".into();
        return out;
    };
    out.policy = Some((*m.route.policy).clone());
    match &m.route.action {
        RouteAction::Forward(f) => {
            let total: u32 = f.destinations.iter().map(|d| d.weight).sum();
            out.outcome = format!("forward by rule `{}`", m.route.name);
            for d in &f.destinations {
                out.destinations.push(DestinationView {
                    cluster: d.cluster_name.to_string(),
                    weight: d.weight,
                    share_percent: if total == 0 {
                        0.0
                    } else {
                        f64::from(d.weight) * 100.0 / f64::from(total)
                    },
                    exists: d.cluster.is_some(),
                    endpoints: d
                        .cluster
                        .iter()
                        .flat_map(|c| c.endpoints.iter())
                        .map(|e| EndpointView {
                            address: e.authority.clone(),
                            labels: e.endpoint.labels.clone().into(),
                            weight: e.endpoint.weight,
                        })
                        .collect(),
                    policy: d.cluster.as_ref().map(|c| (*c.policy).clone()),
                });
            }
        }
        RouteAction::Redirect(r) => {
            out.outcome = format!(
                "redirect {} to {}",
                r.code,
                r.location(req, m.matched_prefix(), listener.port())
            );
        }
        RouteAction::DirectResponse(d) => {
            out.outcome = format!("direct response {} ({} bytes)", d.status, d.body.len());
        }
    }
    out
}
