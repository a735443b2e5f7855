//! `sluice explain`: which listener, virtual host and rule a request hits, and why earlier rules
//! did not match — computed by the proxy's own routing function, without sockets.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use http::{HeaderMap, HeaderName, HeaderValue};
use sluice_config::explain::{explain, Explanation};
use sluice_config::listener::ListenerRole;
use sluice_config::{build_snapshot, ProxyConfig, RequestInfo};
use sluice_lb::StateStore;
use sluice_model::Spec;

/// `sluice explain` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// Config files or directories.
    #[arg(short = 'c', long = "config", required = true)]
    pub paths: Vec<PathBuf>,
    /// Explain for this Gateway (`name` or `namespace/name`) instead of the mesh.
    #[arg(long, conflicts_with = "mesh")]
    pub gateway: Option<String>,
    /// Explain for the mesh (sidecar outbound); the default.
    #[arg(long)]
    pub mesh: bool,
    /// Workload labels of the calling proxy (for `sourceLabels`), `k=v,k2=v2`.
    #[arg(long, value_parser = crate::cli::parse_labels, default_value = "")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Namespace of the calling proxy.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Request header `K: V` (repeatable); `Host` overrides the URL's host.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "human")]
    pub output: crate::analyze::Format,
    /// HTTP method.
    pub method: String,
    /// Request URL (`http://host[:port]/path?query`).
    pub url: String,
}

/// Runs the explanation and renders it.
pub fn run(a: &ExplainArgs) -> anyhow::Result<String> {
    let uri: http::Uri = a
        .url
        .parse()
        .with_context(|| format!("invalid URL `{}`", a.url))?;
    let port = uri.port_u16().unwrap_or(80);
    let mut headers = HeaderMap::new();
    for h in &a.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("header `{h}` must be `Name: value`"))?;
        headers.append(
            HeaderName::from_bytes(k.trim().as_bytes())?,
            HeaderValue::from_str(v.trim())?,
        );
    }
    let authority = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|x| x.to_string()))
        .unwrap_or_default();

    let parsed = sluice_sources::read_paths(&a.paths);
    let mut proxy = ProxyConfig {
        labels: a.labels.clone(),
        namespace: a.namespace.clone(),
        gateway_role: a.gateway.is_some(),
        mesh_role: a.gateway.is_none(),
        ..ProxyConfig::default()
    };
    let gateway_key = a.gateway.as_ref().map(|g| {
        if g.contains('/') {
            g.clone()
        } else {
            format!("{}/{g}", a.namespace)
        }
    });
    if let Some(key) = &gateway_key {
        // Explaining for a gateway means being one of its workloads.
        let gw = parsed.resources.iter().find_map(|r| match &r.spec {
            Spec::Gateway(g) if format!("{}/{}", r.metadata.namespace, r.metadata.name) == *key => {
                Some(g)
            }
            _ => None,
        });
        let Some(gw) = gw else {
            bail!("gateway {key} is not defined in the config")
        };
        proxy.labels.extend(gw.selector.clone().unwrap_or_default());
    }
    let snapshot = match build_snapshot(
        parsed.resources,
        parsed.diagnostics,
        &proxy,
        &StateStore::new(),
        1,
    ) {
        Ok(s) => s,
        Err(rejected) => bail!(
            "the config is invalid; run `sluice analyze`:\n{}",
            crate::analyze::render(&rejected.diagnostics, crate::analyze::Format::Human, false)
        ),
    };
    let host_ip: Option<std::net::IpAddr> = uri.host().and_then(|h| h.parse().ok());
    let listener = snapshot
        .listeners
        .iter()
        .filter(|l| l.port() == port)
        .filter(|l| match (&l.role, &gateway_key) {
            (ListenerRole::Gateway { gateways }, Some(k)) => gateways.contains(k),
            (ListenerRole::Mesh, None) => true,
            _ => false,
        })
        .max_by_key(|l| Some(l.address.ip()) == host_ip);
    let Some(listener) = listener else {
        bail!(
            "no {} listener on port {port}; listeners: {}",
            if gateway_key.is_some() {
                "gateway"
            } else {
                "mesh"
            },
            snapshot
                .listeners
                .iter()
                .map(|l| l.address.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let info = RequestInfo {
        method: &a.method,
        scheme: uri.scheme_str().unwrap_or("http"),
        authority: &authority,
        path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()),
        headers: &headers,
    };
    let e = explain(listener, &info);
    Ok(match a.output {
        crate::analyze::Format::Json => serde_json::to_string_pretty(&e)?,
        crate::analyze::Format::Human => render(&e),
    })
}

/// Human-readable rendering.
pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "listener      {}", e.listener);
    let _ = writeln!(
        out,
        "virtual host  {}",
        e.virtual_host.as_deref().unwrap_or("(none)")
    );
    if !e.rules.is_empty() {
        let _ = writeln!(out, "rules");
    }
    for r in &e.rules {
        let mark = match r.verdict {
            "matched" => "✓",
            "no match" => "✗",
            _ => "·",
        };
        let src = r
            .source
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {mark} {}{src}: {}", r.name, r.verdict);
        for why in &r.reasons {
            let _ = writeln!(out, "      {why}");
        }
    }
    let _ = writeln!(out, "outcome       {}", e.outcome);
    for d in &e.destinations {
        let state = if !d.exists {
            " — cluster does not exist: 503 NC"
        } else if d.endpoints.is_empty() {
            " — no endpoints: 503 UH"
        } else {
            ""
        };
        let _ = writeln!(out, "  {:>5.1}%  {}{state}", d.share_percent, d.cluster);
        for ep in &d.endpoints {
            let labels: Vec<String> = ep.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "           {} weight {} [{}]",
                ep.address,
                ep.weight,
                labels.join(", ")
            );
        }
        if let Some(p) = &d.policy {
            let _ = writeln!(out, "           {}", cluster_summary(p));
        }
    }
    if let Some(p) = &e.policy {
        let _ = writeln!(out, "policies      {}", route_summary(p));
    }
    out
}

fn retry_conditions(on: &sluice_config::policy::RetryOn) -> String {
    let names = [
        (on.five_xx, "5xx"),
        (on.gateway_error, "gateway-error"),
        (on.reset, "reset"),
        (on.reset_before_request, "reset-before-request"),
        (on.connect_failure, "connect-failure"),
        (on.retriable_4xx, "retriable-4xx"),
        (on.refused_stream, "refused-stream"),
        (on.retriable_status_codes, "retriable-status-codes"),
        (on.grpc_cancelled, "cancelled"),
        (on.grpc_deadline_exceeded, "deadline-exceeded"),
        (on.grpc_internal, "internal"),
        (on.grpc_resource_exhausted, "resource-exhausted"),
        (on.grpc_unavailable, "unavailable"),
    ];
    names
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// One line per route policy: only what is set.
fn route_summary(p: &sluice_config::policy::RoutePolicy) -> String {
    let mut parts = vec![match p.timeout {
        Some(t) => format!("timeout {t:?}"),
        None => "no timeout".into(),
    }];
    parts.push(match &p.retry {
        Some(r) => {
            let mut s = format!(
                "{} retries on {}",
                r.num_retries,
                retry_conditions(&r.retry_on)
            );
            if !r.retriable_status_codes.is_empty() {
                let _ = write!(s, " {:?}", r.retriable_status_codes);
            }
            if let Some(t) = r.per_try_timeout {
                let _ = write!(s, ", per try {t:?}");
            }
            s
        }
        None => "no retries".into(),
    });
    if let Some(f) = &p.fault {
        if let Some(d) = f.delay {
            parts.push(format!("delay {d:?} for {}%", f.delay_percent));
        }
        if let Some(a) = f.abort {
            parts.push(format!("abort {a:?} for {}%", f.abort_percent));
        }
    }
    for m in &p.mirrors {
        parts.push(format!(
            "mirror {}% to {}",
            m.percentage, m.destination.cluster_name
        ));
    }
    if let Some(rw) = &p.rewrite {
        parts.push(format!(
            "rewrite {}",
            serde_json::to_string(rw).unwrap_or_default()
        ));
    }
    if !p.headers.is_empty() {
        parts.push("header operations".into());
    }
    if p.cors.is_some() {
        parts.push("CORS".into());
    }
    parts.join("; ")
}

/// One line per cluster policy: the balancer and any limit or ejection that is set.
fn cluster_summary(p: &sluice_config::policy::ClusterPolicy) -> String {
    let lb = serde_json::to_string(&p.lb).unwrap_or_default();
    let mut parts = vec![format!("lb {}", lb.trim_matches('"'))];
    let d = sluice_config::policy::PoolLimits::default();
    let limits = [
        ("maxConnections", p.pool.max_connections, d.max_connections),
        (
            "pending",
            p.pool.max_pending_requests,
            d.max_pending_requests,
        ),
        ("maxRequests", p.pool.max_requests, d.max_requests),
        ("maxRetries", p.pool.max_retries, d.max_retries),
    ];
    for (name, v, default) in limits {
        if v != default {
            parts.push(format!("{name} {v}"));
        }
    }
    if let Some(o) = &p.outlier {
        parts.push(format!(
            "eject after {} 5xx / {} gateway errors for {:?}",
            o.consecutive_5xx, o.consecutive_gateway_errors, o.base_ejection_time
        ));
    }
    parts.join("; ")
}
