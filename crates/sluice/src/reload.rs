//! `sluice reload`: makes a running proxy read its config files now and waits for the outcome,
//! so a command typed after an edit sees the new config (the file watcher would pick the edit
//! up a moment later anyway).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;

/// `sluice reload` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ReloadArgs {
    /// The proxy's admin address.
    #[arg(long, env = "SLUICE_ADMIN", default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,
}

/// Reloads and returns what to print; an error when the reload was rejected (the previous
/// config stays in force) or the proxy cannot be reached.
pub async fn run(a: &ReloadArgs) -> anyhow::Result<String> {
    let admin = a.admin;
    let req = http::Request::post(format!("http://{admin}/api/reload"))
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
    let doc: serde_json::Value = serde_json::from_slice(&body).with_context(|| {
        format!(
            "admin API {admin}: {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )
    })?;
    if status.is_success() {
        let version = doc["version"].as_u64().unwrap_or(0);
        let warnings = doc["active"]["warnings"].as_u64().unwrap_or(0);
        return Ok(format!(
            "config version {version} is active ({warnings} warning(s))\n"
        ));
    }
    let lines: Vec<String> = doc["diagnostics"]
        .as_array()
        .map(|all| all.iter().map(diagnostic_line).collect())
        .unwrap_or_default();
    bail!(
        "reload rejected; the previous config stays in force:\n{}",
        lines.join("\n")
    )
}

/// One diagnostic as `analyze` prints its first line, from its JSON form.
fn diagnostic_line(d: &serde_json::Value) -> String {
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    let mut line = format!("{}[{}]", s("severity"), s("code"));
    let r = &d["resource"];
    let resource = match (
        r["kind"].as_str(),
        r["namespace"].as_str(),
        r["name"].as_str(),
    ) {
        (Some(k), Some(ns), Some(n)) => format!("{k} {ns}/{n}"),
        _ => String::new(),
    };
    for part in [resource, s("field")] {
        if !part.is_empty() {
            line.push(' ');
            line.push_str(&part);
        }
    }
    line.push_str(": ");
    line.push_str(&s("message"));
    if let (Some(file), Some(l)) = (d["file"].as_str(), d["location"]["line"].as_u64()) {
        line.push_str(&format!("\n  --> {file}:{l}"));
    }
    line
}
