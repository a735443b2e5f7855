//! Types shared by several Istio kinds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Istio `StringMatch`: at most one of exact, prefix, regex; none set means "present".
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    /// Exact string match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Prefix match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// RE2 regex, matched against the whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Istio `Percent` (a double in [0, 100]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
pub struct Percent {
    /// Percentage.
    #[serde(default)]
    pub value: f64,
}

/// Istio `PortSelector`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct PortSelector {
    /// Port number.
    #[serde(default)]
    pub number: u32,
}

/// A service or destination: host, optional subset and port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Registry host name (short names are expanded against the config's namespace).
    #[serde(default)]
    pub host: String,
    /// DestinationRule subset name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Target port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// `WorkloadSelector` as used by DestinationRule (`matchLabels`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Labels the workload must carry.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// Request/response header operations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct HeaderOperations {
    /// Overwrite or add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Append a value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Header manipulation for requests and responses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Headers {
    /// Applied to the request before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    /// Applied to the response before returning it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}
