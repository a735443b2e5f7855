//! The canary controller inside `sluice run` (file mode), its admin API adapter, and
//! `sluice canary status|promote|abort|pause|resume NAME`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context as _};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use sluice_canary::{Command, Controller, ControllerHost};
use sluice_config::canary::CanaryOverlays;
use sluice_model::Resource;
use sluice_proxy::ConfigHandle;

/// Asks the runtime to compile and publish with the current overlays; resolves when done.
pub type Republish = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The running proxy as the controller sees it.
pub struct RuntimeHost {
    /// The published config.
    pub config: Arc<ConfigHandle>,
    /// The overlays the next compile applies (shared with the loader).
    pub overlays: Arc<Mutex<CanaryOverlays>>,
    /// Recompiles and publishes.
    pub republish: Republish,
}

impl ControllerHost for RuntimeHost {
    fn resources(&self) -> Arc<Vec<Arc<Resource>>> {
        self.config
            .load()
            .map(|s| s.resources.clone())
            .unwrap_or_default()
    }

    fn apply(&self, overlays: CanaryOverlays) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        *self.overlays.lock().unwrap_or_else(PoisonError::into_inner) = overlays;
        (self.republish)()
    }
}

/// `/api/canaries` served by the controller.
pub struct AdminCanaries(pub Arc<Controller>);

fn split_name(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, name),
    }
}

impl sluice_admin::CanaryApi for AdminCanaries {
    fn list(&self) -> serde_json::Value {
        self.0.list()
    }

    fn get(&self, name: &str) -> Option<serde_json::Value> {
        let (ns, n) = split_name(name);
        self.0.resolve(ns, n).and_then(|k| self.0.status(&k))
    }

    fn command<'a>(
        &'a self,
        name: &'a str,
        action: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, (u16, String)>> + Send + 'a>> {
        Box::pin(async move {
            let Some(cmd) = Command::from_name(action) else {
                return Err((
                    404,
                    format!("unknown action `{action}`: use promote, abort, pause or resume"),
                ));
            };
            let (ns, n) = split_name(name);
            let Some(key) = self.0.resolve(ns, n) else {
                return Err((404, format!("no canary `{name}`")));
            };
            self.0.command(&key, cmd).await.map_err(|e| (409, e))
        })
    }
}

/// `sluice canary` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CanaryArgs {
    /// status, promote, abort, pause or resume.
    #[arg(value_parser = ["status", "promote", "abort", "pause", "resume"])]
    pub action: String,
    /// The Canary (`NAME` or `NAMESPACE/NAME`); `status` without it lists them all.
    pub name: Option<String>,
    /// The proxy's admin address.
    #[arg(long, env = "SLUICE_ADMIN", default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,
    /// Act on the Canary object in the cluster (in-cluster config or KUBECONFIG) instead of a
    /// proxy's admin API: `status` reads its status; a command sets the
    /// `rollouts.sluice.dev/command` annotation, which the leading proxy acts on.
    #[arg(long)]
    pub kubernetes: bool,
    /// Kubernetes API URL (e.g. `http://127.0.0.1:8001` behind `kubectl proxy`).
    #[arg(long, requires = "kubernetes")]
    pub kube_api: Option<String>,
    /// The Canary's namespace (Kubernetes).
    #[arg(long, short = 'n', default_value = "default", requires = "kubernetes")]
    pub namespace: String,
    /// How long a command waits for the leading proxy to handle it (Kubernetes).
    #[arg(long, default_value = "30s", value_parser = sluice_kube::args::parse_duration)]
    pub wait: Duration,
}

/// `sluice canary ... --kubernetes`: against the Canary object.
async fn run_kubernetes(a: &CanaryArgs) -> anyhow::Result<String> {
    let client = sluice_kube::connect(a.kube_api.as_deref()).await?;
    let (ns, name) = match a.name.as_deref().map(split_name) {
        Some((ns, n)) => (ns.unwrap_or(&a.namespace), Some(n)),
        None => (a.namespace.as_str(), None),
    };
    let doc = sluice_kube::canary::command::run(client, ns, &a.action, name, a.wait).await?;
    Ok(match doc.as_array() {
        Some(all) if all.is_empty() => "no canaries\n".to_string(),
        Some(all) => all.iter().map(render).collect(),
        None => render(&doc),
    })
}

/// Runs `sluice canary ...` against the admin API (or the cluster with `--kubernetes`);
/// returns what to print.
pub async fn run(a: &CanaryArgs) -> anyhow::Result<String> {
    if a.kubernetes {
        return run_kubernetes(a).await;
    }
    let admin = a.admin;
    let (method, path) = match (a.action.as_str(), a.name.as_deref()) {
        ("status", None) => (http::Method::GET, "/api/canaries".to_string()),
        ("status", Some(n)) => (http::Method::GET, format!("/api/canaries/{n}")),
        (_, None) => bail!("`sluice canary {}` needs the Canary's name", a.action),
        (action, Some(n)) => (http::Method::POST, format!("/api/canaries/{n}/{action}")),
    };
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"))
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(60), client.request(req))
        .await
        .with_context(|| format!("admin API {admin} did not answer"))?
        .with_context(|| format!("cannot reach the admin API at {admin} (is `sluice run` running with --admin {admin}?)"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&body).trim());
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("admin API {admin}: not JSON"))?;
    Ok(match doc.as_array() {
        Some(all) if all.is_empty() => "no canaries\n".to_string(),
        Some(all) => all.iter().map(render).collect(),
        None => render(&doc),
    })
}

/// One canary's status in a few lines.
pub fn render(s: &serde_json::Value) -> String {
    let str_of = |k: &str| s[k].as_str().unwrap_or("").to_string();
    let mut out = format!(
        "{}/{}: {} weight {}% ({} -> {} on VirtualService {})\n",
        str_of("namespace"),
        str_of("name"),
        str_of("phase"),
        s["weight"].as_u64().unwrap_or(0),
        str_of("stableSubset"),
        str_of("canarySubset"),
        str_of("virtualService"),
    );
    if let Some(m) = s["mirror"].as_u64() {
        out.push_str(&format!("  mirroring {m}% of the route to the canary\n"));
    }
    if s["matched"].as_bool() == Some(true) {
        out.push_str("  A/B stage: matching requests go to the canary\n");
    }
    // A Canary's status in Kubernetes has no settings (stages, threshold) or live timing.
    match (s["stages"].as_array(), s["threshold"].as_u64()) {
        (Some(stages), Some(threshold)) => out.push_str(&format!(
            "  stage {} of {}, failed checks {}/{threshold}, {} s in stage\n",
            s["stage"].as_u64().unwrap_or(0) + 1,
            stages.len(),
            s["failedChecks"].as_u64().unwrap_or(0),
            s["timeInStageMs"].as_u64().unwrap_or(0) / 1000,
        )),
        _ => out.push_str(&format!(
            "  stage {}, failed checks {}\n",
            s["stage"].as_u64().unwrap_or(0) + 1,
            s["failedChecks"].as_u64().unwrap_or(0),
        )),
    }
    if let Some(metrics) = s["lastCheck"]["metrics"].as_array() {
        for m in metrics {
            let value = m["value"]
                .as_f64()
                .map_or("no data".to_string(), |v| format!("{v:.1}"));
            let range = match (m["min"].as_f64(), m["max"].as_f64()) {
                (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
                (Some(lo), None) => format!(">= {lo}"),
                (None, Some(hi)) => format!("<= {hi}"),
                _ => "any".into(),
            };
            let ok = if m["ok"].as_bool() == Some(true) {
                "ok"
            } else {
                "FAIL"
            };
            out.push_str(&format!(
                "  {}: {value} ({range}) {ok}\n",
                m["name"].as_str().unwrap_or("")
            ));
        }
    }
    out.push_str(&format!("  {}\n", str_of("message")));
    if let Some(r) = s["rollbackReason"].as_str() {
        out.push_str(&format!("  rollback reason: {r}\n"));
    }
    out
}
