//! The TLS Secrets of the gateway's namespace (`credentialName`), handed to a [`SecretSink`]
//! as they change: a rotated Secret reaches new handshakes without a config reload. The data
//! never enters the config store, a log line or an Event.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt as _;
use kube::Client;

/// Keys of a Secret that carry TLS material (Istio's generic and `kubernetes.io/tls` layouts).
const TLS_KEYS: [&str; 8] = [
    "tls.crt", "tls.key", "ca.crt", "ca.crl", "cert", "key", "cacert", "crl",
];

/// Receives the TLS material of Secrets.
pub trait SecretSink: Send + Sync + std::fmt::Debug {
    /// A Secret was listed, added or changed: its TLS keys and their bytes.
    fn apply(&self, namespace: &str, name: &str, data: BTreeMap<String, Vec<u8>>);
    /// A Secret was deleted.
    fn remove(&self, namespace: &str, name: &str);
}

/// Which Secrets to watch, and where they go.
#[derive(Debug, Clone)]
pub struct SecretFeed {
    /// The gateway's namespace (Istio reads `credentialName` Secrets only there).
    pub namespace: String,
    /// The receiver (the proxy's certificate store).
    pub sink: Arc<dyn SecretSink>,
}

fn tls_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .iter()
        .flatten()
        .filter(|(k, _)| TLS_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

fn apply(feed: &SecretFeed, s: &Secret) -> Option<String> {
    let name = s.metadata.name.clone()?;
    let data = tls_data(s);
    if data.is_empty() {
        return None;
    }
    feed.sink.apply(&feed.namespace, &name, data);
    Some(name)
}

/// Watches the Secrets of `feed.namespace` until the task is aborted.
pub(crate) async fn run(client: Client, feed: SecretFeed) {
    let api: Api<Secret> = Api::namespaced(client, &feed.namespace);
    let target = format!("Secret (namespace {})", feed.namespace);
    let mut config = watcher::Config::default().any_semantic();
    config.page_size = None;
    let stream = watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listed: Vec<String> = Vec::new();
    let mut known: Vec<String> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(s)) => listed.extend(apply(&feed, &s)),
            Ok(Event::InitDone) => {
                // Secrets gone while the watch was down.
                for name in known.iter().filter(|n| !listed.contains(n)) {
                    feed.sink.remove(&feed.namespace, name);
                }
                known = std::mem::take(&mut listed);
                tracing::debug!(watch = %target, secrets = known.len(), "listed");
            }
            Ok(Event::Apply(s)) => {
                if let Some(name) = apply(&feed, &s) {
                    tracing::info!(secret = %name, namespace = %feed.namespace, "TLS secret changed; new handshakes use it");
                    if !known.contains(&name) {
                        known.push(name);
                    }
                }
            }
            Ok(Event::Delete(s)) => {
                if let Some(name) = s.metadata.name {
                    feed.sink.remove(&feed.namespace, &name);
                    known.retain(|n| *n != name);
                }
            }
            Err(e) => tracing::warn!(watch = %target, "{e}; retrying"),
        }
    }
}
