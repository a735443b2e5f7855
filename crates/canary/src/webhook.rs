//! Webhook gates: an HTTP POST with Flagger's payload; a 2xx answer passes.

use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use sluice_config::canary::Webhook;

/// What the hook is told.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Payload<'a> {
    /// Canary name.
    pub name: &'a str,
    /// Canary namespace.
    pub namespace: &'a str,
    /// Phase.
    pub phase: &'a str,
    /// Hook type.
    #[serde(rename = "type")]
    pub hook_type: &'a str,
    /// The hook's metadata.
    pub metadata: &'a std::collections::BTreeMap<String, String>,
}

/// Calls one hook: `Ok` on a 2xx answer, else why not.
pub async fn call(hook: &Webhook, payload: &Payload<'_>) -> Result<(), String> {
    if hook.url.starts_with("https://") {
        return Err(format!(
            "{}: https webhooks are not supported yet",
            hook.name
        ));
    }
    let body = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
    let req = http::Request::post(&hook.url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("{}: {e}", hook.name))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let answer = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&body);
            Err(format!(
                "{status} {}",
                text.trim().chars().take(200).collect::<String>()
            ))
        }
    };
    match tokio::time::timeout(hook.timeout.max(Duration::from_millis(1)), answer).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{} ({}): {e}", hook.name, hook.url)),
        Err(_) => Err(format!(
            "{} ({}): no answer within {:?}",
            hook.name, hook.url, hook.timeout
        )),
    }
}
