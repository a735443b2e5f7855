//! `sluice explain`: which listener, virtual host and rule a request hits, and why earlier rules
//! did not match — computed by the proxy's own routing function, on config files or on the
//! config a running proxy serves (`--admin`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use sluice_config::explain::{explain_request, render, ExplainRequest};
use sluice_config::{build_snapshot_with, ProxyConfig};
use sluice_lb::StateStore;
use sluice_model::Spec;

/// `sluice explain` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// Config files or directories.
    #[arg(short = 'c', long = "config", required_unless_present = "admin")]
    pub paths: Vec<PathBuf>,
    /// Ask a running proxy's admin API instead (`127.0.0.1:15000`): its own config, labels and
    /// listeners apply.
    #[arg(long, conflicts_with_all = ["paths", "labels", "mesh"])]
    pub admin: Option<SocketAddr>,
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

/// Runs the explanation (against files or a running proxy) and renders it.
pub async fn run_any(a: &ExplainArgs) -> anyhow::Result<String> {
    match a.admin {
        Some(admin) => run_admin(admin, a).await,
        None => run(a),
    }
}

fn gateway_key(a: &ExplainArgs) -> Option<String> {
    a.gateway.as_ref().map(|g| {
        if g.contains('/') {
            g.clone()
        } else {
            format!("{}/{g}", a.namespace)
        }
    })
}

fn request(a: &ExplainArgs) -> ExplainRequest {
    ExplainRequest {
        method: a.method.clone(),
        url: a.url.clone(),
        headers: a.headers.clone(),
        gateway: gateway_key(a),
    }
}

/// Explains against config files.
pub fn run(a: &ExplainArgs) -> anyhow::Result<String> {
    let parsed = sluice_sources::read_paths(&a.paths);
    let gateway = gateway_key(a);
    let mut proxy = ProxyConfig {
        labels: a.labels.clone(),
        namespace: a.namespace.clone(),
        gateway_role: gateway.is_some(),
        mesh_role: gateway.is_none(),
        ..ProxyConfig::default()
    };
    if let Some(key) = &gateway {
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
    // A canary under way routes as its saved state says, as the running proxy does.
    let overlays = a
        .paths
        .first()
        .map(|p| {
            sluice_canary::saved_overlays(
                &parsed.resources,
                &sluice_canary::StateFile::for_config(p),
            )
        })
        .unwrap_or_default();
    let snapshot = match build_snapshot_with(
        parsed.resources,
        parsed.diagnostics,
        &proxy,
        &StateStore::new(),
        1,
        &overlays,
    ) {
        Ok(s) => s,
        Err(rejected) => bail!(
            "the config is invalid; run `sluice analyze`:\n{}",
            crate::analyze::render(&rejected.diagnostics, crate::analyze::Format::Human, false)
        ),
    };
    let e = explain_request(&snapshot, &request(a))?;
    Ok(match a.output {
        crate::analyze::Format::Json => serde_json::to_string_pretty(&e)?,
        crate::analyze::Format::Human => {
            let mut out = render(&e);
            for c in &snapshot.canaries {
                out.push_str(&format!(
                    "canary {} ({}) overlays route {} of VirtualService {}: {}% to {}, {}% to {}{}{}\n",
                    c.canary,
                    c.overlay.phase,
                    c.route_name.clone().unwrap_or_else(|| c.route_index.to_string()),
                    c.virtual_service,
                    100 - c.overlay.weight.min(100),
                    c.stable_subset,
                    c.overlay.weight.min(100),
                    c.canary_subset,
                    c.overlay.mirror.map(|m| format!(", mirroring {m}% to {}", c.canary_subset)).unwrap_or_default(),
                    if c.overlay.matched { ", match rules to the canary first" } else { "" },
                ));
            }
            out
        }
    })
}

/// Explains against a running proxy: `GET /api/explain` on its admin port.
async fn run_admin(admin: SocketAddr, a: &ExplainArgs) -> anyhow::Result<String> {
    let r = request(a);
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("method", &r.method)
        .append_pair("url", &r.url);
    for h in &r.headers {
        query.append_pair("header", h);
    }
    if let Some(g) = &r.gateway {
        query.append_pair("gateway", g);
    }
    query.append_pair(
        "format",
        match a.output {
            crate::analyze::Format::Json => "json",
            crate::analyze::Format::Human => "text",
        },
    );
    let uri: http::Uri = format!("http://{admin}/api/explain?{}", query.finish()).parse()?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.get(uri))
        .await
        .with_context(|| format!("admin API {admin} did not answer"))?
        .with_context(|| format!("cannot reach the admin API at {admin}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        bail!("admin API {admin}: {status}: {}", text.trim());
    }
    Ok(text)
}
