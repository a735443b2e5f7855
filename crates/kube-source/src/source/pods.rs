//! Pods as the source needs them: labels (endpoint labels, `security.istio.io/tlsMode` for
//! auto-mTLS) and the service account (the endpoint's identity). The watch decodes only these
//! fields, so neither a listing nor the state holds whole Pod objects.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

/// The service account Kubernetes gives a Pod that names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// What the source keeps of a Pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// The Pod's labels.
    pub labels: BTreeMap<String, String>,
    /// `spec.serviceAccountName` (`default` when unset).
    pub service_account: String,
}

/// A Pod as decoded from the API: metadata reduced to what the watcher and the state use, and
/// the service account; every other field of the answer is skipped.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WatchedPod {
    /// Name, namespace, labels and resourceVersion only.
    #[serde(deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    /// The service account fields of the spec.
    #[serde(default)]
    pub spec: Option<PodSpecFields>,
}

/// The fields of a Pod's spec the source reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecFields {
    /// `spec.serviceAccountName`.
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// `spec.serviceAccount`, the deprecated alias older objects may carry alone.
    #[serde(default)]
    pub service_account: Option<String>,
}

impl WatchedPod {
    /// The labels and service account to keep.
    pub fn info(&self) -> PodInfo {
        let spec = self.spec.as_ref();
        let service_account = spec
            .and_then(|s| s.service_account_name.as_deref())
            .filter(|s| !s.is_empty())
            .or_else(|| spec.and_then(|s| s.service_account.as_deref()))
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
            .to_string();
        PodInfo {
            labels: self.metadata.labels.clone().unwrap_or_default(),
            service_account,
        }
    }
}

/// The metadata fields kept (managed fields and annotations are large and never read).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaFields {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    resource_version: Option<String>,
}

pub(crate) fn slim_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = MetaFields::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        labels: m.labels,
        resource_version: m.resource_version,
        ..ObjectMeta::default()
    })
}

super::slim::core_v1_resource!(
    WatchedPod,
    kind = "Pod",
    plural = "pods",
    scope = k8s_openapi::NamespaceResourceScope
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(v: serde_json::Value) -> WatchedPod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn keeps_labels_and_service_account_only() {
        let pod = decode(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "reviews-v1", "namespace": "default", "resourceVersion": "7",
                "labels": {"app": "reviews", "security.istio.io/tlsMode": "istio"},
                "annotations": {"big": "x"}, "managedFields": [{"manager": "kubelet"}]},
            "spec": {"serviceAccountName": "bookinfo-reviews", "serviceAccount": "bookinfo-reviews",
                "containers": [{"name": "reviews", "image": "reviews:v1"}]},
            "status": {"podIP": "10.244.0.11"}
        }));
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("7"));
        assert!(pod.metadata.annotations.is_none() && pod.metadata.managed_fields.is_none());
        let info = pod.info();
        assert_eq!(info.service_account, "bookinfo-reviews");
        assert_eq!(info.labels["security.istio.io/tlsMode"], "istio");
    }

    #[test]
    fn service_account_defaults_like_kubernetes() {
        let bare = decode(json!({"metadata": {"name": "p"}}));
        assert_eq!(bare.info().service_account, DEFAULT_SERVICE_ACCOUNT);
        let legacy = decode(json!({"metadata": {"name": "p"}, "spec": {"serviceAccount": "old"}}));
        assert_eq!(legacy.info().service_account, "old");
        let empty = decode(json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": ""}}));
        assert_eq!(empty.info().service_account, DEFAULT_SERVICE_ACCOUNT);
    }
}
