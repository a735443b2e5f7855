//! The mesh root in every namespace: ConfigMap `istio-ca-root-cert` with key `root-cert.pem`,
//! as istiod publishes it. Injected sidecars mount it to check the CA's certificate (and their
//! peers'); the CA keeps it current, so a new namespace or a rotated root is picked up.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};

/// The ConfigMap's name (Istio's).
pub const CONFIGMAP: &str = "istio-ca-root-cert";
/// Its key.
pub const KEY: &str = "root-cert.pem";

/// Writes `root_pem` into the ConfigMap of every namespace where it is missing or different;
/// returns how many were written.
pub async fn publish_once(client: &Client, root_pem: &str) -> anyhow::Result<usize> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let list = namespaces
        .list(&ListParams::default())
        .await
        .context("cannot list namespaces (may this service account list them?)")?;
    let mut written = 0;
    for ns in list.items.iter().filter_map(|n| n.metadata.name.as_deref()) {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let want: BTreeMap<String, String> = [(KEY.to_string(), root_pem.to_string())].into();
        let current = api
            .get_opt(CONFIGMAP)
            .await
            .with_context(|| format!("cannot read configmap {ns}/{CONFIGMAP}"))?;
        let result = match current {
            Some(cm) if cm.data.as_ref() == Some(&want) => continue,
            Some(mut cm) => {
                cm.data = Some(want);
                api.replace(CONFIGMAP, &PostParams::default(), &cm).await
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(CONFIGMAP.into()),
                        namespace: Some(ns.to_string()),
                        ..Default::default()
                    },
                    data: Some(want),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await
            }
        };
        match result {
            Ok(_) => written += 1,
            // One namespace refusing (terminating, quota) must not stop the others.
            Err(e) => tracing::warn!(namespace = ns, error = %e, "cannot write {CONFIGMAP}"),
        }
    }
    Ok(written)
}

/// Keeps the ConfigMaps current every `every` (the root read afresh each time) until dropped.
pub fn spawn_publisher(
    client: Client,
    root_pem: impl Fn() -> String + Send + 'static,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match publish_once(&client, &root_pem()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(namespaces = n, "mesh root published in {CONFIGMAP}"),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot publish the mesh root"),
            }
            tokio::time::sleep(every).await;
        }
    })
}
