//! `sluice canary status|promote|abort|pause|resume NAME --kubernetes`: reads the Canary's
//! status, or asks the leading proxy for a command by setting the command annotation and waits
//! until the status says it was handled.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::Client;
use serde_json::{json, Value};
use sluice_canary::COMMAND_ANNOTATION;
use sluice_model::resource::ROLLOUTS_GROUP;

/// The Canary API resource (`rollouts.sluice.dev/v1alpha1`, `canaries`).
pub fn canary_resource() -> ApiResource {
    ApiResource {
        group: ROLLOUTS_GROUP.into(),
        version: "v1alpha1".into(),
        api_version: format!("{ROLLOUTS_GROUP}/v1alpha1"),
        kind: "Canary".into(),
        plural: "canaries".into(),
    }
}

/// A Canary as `sluice canary status` shows it: the admin API's field names (its status, with
/// its name and the spec's target).
pub fn summary(o: &DynamicObject) -> Value {
    let mut out = match o.data.get("status") {
        Some(Value::Object(s)) => Value::Object(s.clone()),
        _ => {
            json!({"phase": "Initializing", "message": "no status yet: no proxy leads the analysis, or it has not checked yet"})
        }
    };
    let spec = o.data.get("spec").cloned().unwrap_or(Value::Null);
    out["name"] = json!(o.metadata.name);
    out["namespace"] = json!(o.metadata.namespace);
    for f in ["virtualService", "route", "stableSubset", "canarySubset"] {
        out[f] = spec[f].clone();
    }
    out
}

/// Runs one `sluice canary` action against the cluster; returns the canary's [`summary`] (all
/// of them, as an array, for `status` without a name). `wait` bounds how long a command waits
/// for the leader to handle it.
pub async fn run(
    client: Client,
    namespace: &str,
    action: &str,
    name: Option<&str>,
    wait: Duration,
) -> anyhow::Result<Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &canary_resource());
    let Some(name) = name else {
        anyhow::ensure!(
            action == "status",
            "`sluice canary {action}` needs the Canary's name"
        );
        let list = api
            .list(&ListParams::default())
            .await
            .with_context(|| format!("cannot list the Canaries of namespace {namespace}"))?;
        return Ok(Value::Array(list.items.iter().map(summary).collect()));
    };
    let read = || async {
        api.get(name)
            .await
            .with_context(|| format!("cannot read Canary {namespace}/{name}"))
    };
    if action == "status" {
        return Ok(summary(&read().await?));
    }
    anyhow::ensure!(
        matches!(action, "promote" | "abort" | "pause" | "resume"),
        "unknown action `{action}`: use status, promote, abort, pause or resume"
    );
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let value = format!("{action}@{ms}");
    let patch = json!({"metadata": {"annotations": {COMMAND_ANNOTATION: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("cannot annotate Canary {namespace}/{name}"))?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let o = read().await?;
        let status = o.data.get("status");
        if status
            .and_then(|s| s.get("lastCommand"))
            .and_then(Value::as_str)
            == Some(value.as_str())
        {
            return Ok(summary(&o));
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "asked for `{action}` ({COMMAND_ANNOTATION}={value}), but no proxy handled it within {wait:?}: is a sluice leading the analysis (Lease sluice-canary-leader)?"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
