//! Nodes as the source needs them: the locality their topology labels give the endpoints that
//! run on them (`topology.kubernetes.io/region`, `topology.kubernetes.io/zone` and Istio's
//! `topology.istio.io/subzone`). Only metadata is decoded.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::pods::slim_meta;

/// The Node label naming its region.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// The Node label naming its zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Istio's Node label naming its subzone.
pub const SUBZONE_LABEL: &str = "topology.istio.io/subzone";

/// The `region/zone/subzone` locality of a Node's labels (`None` when it has none of them).
pub fn node_locality(labels: &BTreeMap<String, String>) -> Option<String> {
    let part = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
    let parts = [part(REGION_LABEL), part(ZONE_LABEL), part(SUBZONE_LABEL)];
    if parts.iter().all(|p| p.is_empty()) {
        return None;
    }
    // Trailing empty parts are dropped; inner ones stay so zone stays in the zone position.
    let keep = parts
        .iter()
        .rposition(|p| !p.is_empty())
        .map_or(0, |i| i + 1);
    Some(parts[..keep].join("/"))
}

/// A Node as decoded from the API: name, labels and resourceVersion; the rest is skipped.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WatchedNode {
    /// Name, labels and resourceVersion only.
    #[serde(deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
}

impl WatchedNode {
    /// The Node's name and locality.
    pub fn locality(&self) -> Option<(String, Option<String>)> {
        let name = self.metadata.name.clone()?;
        let labels = self.metadata.labels.clone().unwrap_or_default();
        Some((name, node_locality(&labels)))
    }
}

super::slim::core_v1_resource!(
    WatchedNode,
    kind = "Node",
    plural = "nodes",
    scope = k8s_openapi::ClusterResourceScope
);

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn locality_from_topology_labels() {
        let full = labels(&[
            (REGION_LABEL, "us-east1"),
            (ZONE_LABEL, "us-east1-b"),
            (SUBZONE_LABEL, "rack7"),
        ]);
        assert_eq!(
            node_locality(&full).as_deref(),
            Some("us-east1/us-east1-b/rack7")
        );
        let rz = labels(&[(REGION_LABEL, "r"), (ZONE_LABEL, "z")]);
        assert_eq!(node_locality(&rz).as_deref(), Some("r/z"));
        let zone_only = labels(&[(ZONE_LABEL, "z")]);
        assert_eq!(node_locality(&zone_only).as_deref(), Some("/z"));
        assert_eq!(node_locality(&labels(&[("other", "x")])), None);
    }

    #[test]
    fn decodes_metadata_only() {
        let node: WatchedNode = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node-1", "labels": {REGION_LABEL: "r1"},
                "managedFields": [{"manager": "kubelet"}]},
            "status": {"capacity": {"cpu": "4"}}
        }))
        .unwrap();
        assert_eq!(node.locality(), Some(("node-1".into(), Some("r1".into()))));
    }
}
