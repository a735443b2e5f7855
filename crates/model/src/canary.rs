//! `Canary` (rollouts.sluice.dev v1alpha1): automated progressive delivery of one HTTP route.
//!
//! The analysis fields keep Flagger's names and meaning, so a Flagger user reads them at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::virtual_service::HttpMatchRequest;

/// `Canary.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// The VirtualService whose route is moved (in the Canary's namespace).
    #[serde(default)]
    pub virtual_service: String,
    /// The HTTP route by `name`; default the first HTTP route without a `match`.
    #[serde(default)]
    pub route: Option<String>,
    /// The subset serving users today.
    #[serde(default)]
    pub stable_subset: String,
    /// The subset being rolled out.
    #[serde(default)]
    pub canary_subset: String,
    /// How the canary is judged and moved.
    #[serde(default)]
    pub analysis: CanaryAnalysis,
}

/// `Canary.spec.analysis` (Flagger's fields).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryAnalysis {
    /// Time between checks (Go duration, default `1m`).
    #[serde(default)]
    pub interval: Option<String>,
    /// Failed checks in a row before rollback (default 5).
    #[serde(default)]
    pub threshold: Option<u32>,
    /// Weight added at each passed step.
    #[serde(default)]
    pub step_weight: Option<u32>,
    /// Explicit weight steps (instead of `stepWeight`).
    #[serde(default)]
    pub step_weights: Vec<u32>,
    /// The last weight before promotion (default 50).
    #[serde(default)]
    pub max_weight: Option<u32>,
    /// Checks of the A/B stage (with `match`) or of the mirror stage.
    #[serde(default)]
    pub iterations: Option<u32>,
    /// A/B stage: requests matching any of these go to the canary.
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Shadow stage first: the canary is judged on mirrored requests.
    #[serde(default)]
    pub mirror: bool,
    /// Share of requests mirrored in the shadow stage (default 100).
    #[serde(default)]
    pub mirror_weight: Option<u32>,
    /// Fewer requests than this in a window: wait, neither pass nor fail (default 20).
    #[serde(default)]
    pub min_requests: Option<u64>,
    /// Checks made at each interval.
    #[serde(default)]
    pub metrics: Vec<CanaryMetric>,
    /// Gates called at each stage.
    #[serde(default)]
    pub webhooks: Vec<CanaryWebhook>,
}

/// One metric check.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryMetric {
    /// `request-success-rate` or `request-duration`.
    #[serde(default)]
    pub name: String,
    /// Accepted range.
    #[serde(default)]
    pub threshold_range: ThresholdRange,
    /// Window (Flagger's field; sluice uses the interval).
    #[serde(default)]
    pub interval: Option<String>,
}

/// Bounds of an accepted metric value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
pub struct ThresholdRange {
    /// Lowest accepted value.
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest accepted value.
    #[serde(default)]
    pub max: Option<f64>,
}

/// One webhook gate.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryWebhook {
    /// Name, for logs and status.
    #[serde(default)]
    pub name: String,
    /// `pre-rollout`, `rollout`, `confirm-promotion`, `post-rollout` or `rollback` (default `rollout`).
    #[serde(default, rename = "type")]
    pub hook_type: Option<String>,
    /// Where the POST goes.
    #[serde(default)]
    pub url: String,
    /// Longest wait for an answer (default `10s`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Sent in the POST body.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}
