//! A `Canary` spec resolved into checked settings: durations parsed, defaults filled in, the
//! stages laid out. Validation reports the problems; the controller uses the settings.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sluice_model::Canary;

use crate::duration::parse_go_duration;

/// Flagger's default interval between checks.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Flagger's default count of failed checks before rollback.
const DEFAULT_THRESHOLD: u32 = 5;
/// Flagger's default last weight before promotion.
const DEFAULT_MAX_WEIGHT: u32 = 50;
/// Fewer requests than this in a window is too little traffic to judge.
const DEFAULT_MIN_REQUESTS: u64 = 20;
/// Flagger's default webhook timeout.
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The metrics sluice computes from its own per-subset counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricKind {
    /// Percent of non-5xx responses of the canary subset in the window.
    RequestSuccessRate,
    /// p99 request duration of the canary subset in the window, in ms.
    RequestDuration,
}

impl MetricKind {
    /// Parses a metric name.
    pub fn from_name(name: &str) -> Option<MetricKind> {
        match name {
            "request-success-rate" => Some(MetricKind::RequestSuccessRate),
            "request-duration" => Some(MetricKind::RequestDuration),
            _ => None,
        }
    }
}

/// One metric check with its accepted range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricCheck {
    /// What is measured.
    pub kind: MetricKind,
    /// The name as written.
    pub name: String,
    /// Lowest accepted value.
    pub min: Option<f64>,
    /// Highest accepted value.
    pub max: Option<f64>,
}

impl MetricCheck {
    /// Whether `value` is in range.
    pub fn accepts(&self, value: f64) -> bool {
        self.min.is_none_or(|m| value >= m) && self.max.is_none_or(|m| value <= m)
    }
}

/// When a webhook is called (Flagger's types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookType {
    /// Before the canary gets any traffic; non-2xx counts as a failed check.
    PreRollout,
    /// At every check; non-2xx counts as a failed check.
    Rollout,
    /// Before promotion; non-2xx holds the canary at its last stage.
    ConfirmPromotion,
    /// After promotion; the answer is only logged.
    PostRollout,
    /// During the analysis; a 2xx answer rolls the canary back.
    Rollback,
}

impl HookType {
    /// Parses a `type:` value.
    pub fn from_name(name: &str) -> Option<HookType> {
        Some(match name {
            "pre-rollout" => HookType::PreRollout,
            "rollout" => HookType::Rollout,
            "confirm-promotion" => HookType::ConfirmPromotion,
            "post-rollout" => HookType::PostRollout,
            "rollback" => HookType::Rollback,
            _ => return None,
        })
    }

    /// The `type:` value.
    pub fn name(self) -> &'static str {
        match self {
            HookType::PreRollout => "pre-rollout",
            HookType::Rollout => "rollout",
            HookType::ConfirmPromotion => "confirm-promotion",
            HookType::PostRollout => "post-rollout",
            HookType::Rollback => "rollback",
        }
    }
}

/// One webhook gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Webhook {
    /// Name.
    pub name: String,
    /// When it is called.
    pub hook_type: HookType,
    /// Where the POST goes.
    pub url: String,
    /// Longest wait for the answer.
    pub timeout: Duration,
    /// Sent in the body.
    pub metadata: BTreeMap<String, String>,
}

/// One stage of the progression, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Stage {
    /// Shadow stage: `percent` of the route's requests mirrored to the canary, judged on those.
    Mirror {
        /// Mirrored share.
        percent: u32,
    },
    /// A/B stage: requests matching `analysis.match` go to the canary.
    Match,
    /// Weighted stage: the canary gets `weight` % of the route.
    Weight {
        /// Canary share.
        weight: u32,
    },
}

/// A Canary's analysis with defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanarySettings {
    /// Time between checks.
    pub interval: Duration,
    /// Failed checks in a row before rollback.
    pub threshold: u32,
    /// Passed checks a mirror or A/B stage needs.
    pub iterations: u32,
    /// The stages in order; promotion follows the last.
    pub stages: Vec<Stage>,
    /// Fewer requests in a window: wait.
    pub min_requests: u64,
    /// Metric checks.
    pub metrics: Vec<MetricCheck>,
    /// Webhook gates.
    pub webhooks: Vec<Webhook>,
}

impl CanarySettings {
    /// Passed checks stage `index` needs before the next one.
    pub fn checks_needed(&self, index: usize) -> u32 {
        match self.stages.get(index) {
            Some(Stage::Mirror { .. } | Stage::Match) => self.iterations.max(1),
            _ => 1,
        }
    }

    /// The hooks of one type.
    pub fn hooks(&self, t: HookType) -> impl Iterator<Item = &Webhook> {
        self.webhooks.iter().filter(move |w| w.hook_type == t)
    }
}

/// A problem with a field of the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// Field path rooted at the object (`spec.analysis.interval`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn weight_ok(w: u32) -> bool {
    (1..=100).contains(&w)
}

/// Resolves `spec` into settings; every problem found is returned with its field (the settings
/// then hold a usable fallback for each bad field).
pub fn resolve(spec: &Canary) -> (CanarySettings, Vec<SettingsError>) {
    let mut errors = Vec::new();
    let mut err = |field: String, message: String| errors.push(SettingsError { field, message });
    let a = &spec.analysis;
    let base = "spec.analysis";
    let interval = match a.interval.as_deref().map(parse_go_duration) {
        None => DEFAULT_INTERVAL,
        Some(Ok(d)) if d >= Duration::from_millis(1) => d,
        Some(Ok(_)) => {
            err(
                format!("{base}.interval"),
                "interval must be at least 1ms".into(),
            );
            DEFAULT_INTERVAL
        }
        Some(Err(e)) => {
            err(format!("{base}.interval"), e);
            DEFAULT_INTERVAL
        }
    };
    let threshold = match a.threshold {
        Some(0) => {
            err(
                format!("{base}.threshold"),
                "threshold must be at least 1".into(),
            );
            DEFAULT_THRESHOLD
        }
        Some(t) => t,
        None => DEFAULT_THRESHOLD,
    };
    let max_weight = match a.max_weight {
        Some(w) if !weight_ok(w) => {
            err(
                format!("{base}.maxWeight"),
                format!("maxWeight {w} is not in 1..100"),
            );
            DEFAULT_MAX_WEIGHT
        }
        Some(w) => w,
        None => DEFAULT_MAX_WEIGHT,
    };
    let mut weights = Vec::new();
    if !a.step_weights.is_empty() {
        let mut last = 0;
        for (i, &w) in a.step_weights.iter().enumerate() {
            if !weight_ok(w) {
                err(
                    format!("{base}.stepWeights[{i}]"),
                    format!("weight {w} is not in 1..100"),
                );
            } else if w <= last {
                err(
                    format!("{base}.stepWeights[{i}]"),
                    format!("weights must increase: {w} follows {last}"),
                );
            } else {
                weights.push(w);
                last = w;
            }
        }
    } else if let Some(step) = a.step_weight {
        if !weight_ok(step) {
            err(
                format!("{base}.stepWeight"),
                format!("stepWeight {step} is not in 1..100"),
            );
        } else {
            let mut w = step;
            while w < max_weight {
                weights.push(w);
                w += step;
            }
            weights.push(max_weight);
        }
    }
    let iterations = a.iterations.unwrap_or(0);
    let mirror_weight = match a.mirror_weight {
        Some(w) if !weight_ok(w) => {
            err(
                format!("{base}.mirrorWeight"),
                format!("mirrorWeight {w} is not in 1..100"),
            );
            100
        }
        Some(w) => w,
        None => 100,
    };
    if a.mirror_weight.is_some() && !a.mirror {
        err(
            format!("{base}.mirrorWeight"),
            "mirrorWeight needs `mirror: true`".into(),
        );
    }
    if !a.matches.is_empty() && iterations == 0 {
        err(
            format!("{base}.match"),
            "an A/B stage (`match`) needs `iterations`: how many checks it lasts".into(),
        );
    }
    let mut stages = Vec::new();
    if a.mirror {
        stages.push(Stage::Mirror {
            percent: mirror_weight,
        });
    }
    if !a.matches.is_empty() && iterations > 0 {
        stages.push(Stage::Match);
    }
    stages.extend(weights.iter().map(|&weight| Stage::Weight { weight }));
    if stages.is_empty() {
        err(
            base.to_string(),
            "nothing to analyse: give stepWeight or stepWeights (weighted steps), iterations with match (A/B), or mirror".into(),
        );
    }
    let min_requests = a.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS);
    let mut metrics = Vec::new();
    for (i, m) in a.metrics.iter().enumerate() {
        let field = format!("{base}.metrics[{i}]");
        let Some(kind) = MetricKind::from_name(&m.name) else {
            err(
                format!("{field}.name"),
                format!("unknown metric `{}`: sluice computes request-success-rate and request-duration", m.name),
            );
            continue;
        };
        let r = m.threshold_range;
        if r.min.is_none() && r.max.is_none() {
            err(
                format!("{field}.thresholdRange"),
                "thresholdRange needs `min` or `max`".into(),
            );
            continue;
        }
        if kind == MetricKind::RequestSuccessRate
            && r.min.is_some_and(|v| !(0.0..=100.0).contains(&v))
        {
            err(
                format!("{field}.thresholdRange.min"),
                "a success rate is a percent: 0..100".into(),
            );
            continue;
        }
        if let (Some(lo), Some(hi)) = (r.min, r.max) {
            if lo > hi {
                err(
                    format!("{field}.thresholdRange"),
                    format!("min {lo} is above max {hi}"),
                );
                continue;
            }
        }
        metrics.push(MetricCheck {
            kind,
            name: m.name.clone(),
            min: r.min,
            max: r.max,
        });
    }
    let mut webhooks = Vec::new();
    for (i, w) in a.webhooks.iter().enumerate() {
        let field = format!("{base}.webhooks[{i}]");
        let hook_type = match w.hook_type.as_deref() {
            None => HookType::Rollout,
            Some(t) => match HookType::from_name(t) {
                Some(t) => t,
                None => {
                    err(format!("{field}.type"), format!("unknown webhook type `{t}`: use pre-rollout, rollout, confirm-promotion, post-rollout or rollback"));
                    continue;
                }
            },
        };
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            err(
                format!("{field}.url"),
                format!("url `{}` must start with http:// or https://", w.url),
            );
            continue;
        }
        let timeout = match w.timeout.as_deref().map(parse_go_duration) {
            None => DEFAULT_HOOK_TIMEOUT,
            Some(Ok(d)) if d > Duration::ZERO => d,
            Some(Ok(_)) => {
                err(format!("{field}.timeout"), "timeout must be above 0".into());
                continue;
            }
            Some(Err(e)) => {
                err(format!("{field}.timeout"), e);
                continue;
            }
        };
        webhooks.push(Webhook {
            name: w.name.clone(),
            hook_type,
            url: w.url.clone(),
            timeout,
            metadata: w.metadata.clone(),
        });
    }
    for (field, value) in [
        ("virtualService", &spec.virtual_service),
        ("stableSubset", &spec.stable_subset),
        ("canarySubset", &spec.canary_subset),
    ] {
        if value.is_empty() {
            err(format!("spec.{field}"), format!("`{field}` is required"));
        }
    }
    if !spec.stable_subset.is_empty() && spec.stable_subset == spec.canary_subset {
        err(
            "spec.canarySubset".into(),
            "canarySubset must differ from stableSubset".into(),
        );
    }
    let settings = CanarySettings {
        interval,
        threshold,
        iterations: iterations.max(1),
        stages,
        min_requests,
        metrics,
        webhooks,
    };
    (settings, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::{CanaryAnalysis, CanaryMetric, HttpMatchRequest, ThresholdRange};

    fn spec(a: CanaryAnalysis) -> Canary {
        Canary {
            virtual_service: "vs".into(),
            route: None,
            stable_subset: "v1".into(),
            canary_subset: "v2".into(),
            analysis: a,
        }
    }

    #[test]
    fn step_weight_goes_up_to_max_weight() {
        let (s, e) = resolve(&spec(CanaryAnalysis {
            step_weight: Some(20),
            max_weight: Some(50),
            ..Default::default()
        }));
        assert!(e.is_empty(), "{e:?}");
        let w: Vec<_> = s.stages.iter().collect();
        assert_eq!(
            w,
            [
                &Stage::Weight { weight: 20 },
                &Stage::Weight { weight: 40 },
                &Stage::Weight { weight: 50 }
            ]
        );
        assert_eq!(s.interval, DEFAULT_INTERVAL);
        assert_eq!(s.min_requests, 20);
    }

    #[test]
    fn mirror_then_match_then_weights() {
        let (s, e) = resolve(&spec(CanaryAnalysis {
            mirror: true,
            mirror_weight: Some(50),
            iterations: Some(2),
            matches: vec![HttpMatchRequest::default()],
            step_weights: vec![10, 50],
            interval: Some("500ms".into()),
            ..Default::default()
        }));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            s.stages,
            [
                Stage::Mirror { percent: 50 },
                Stage::Match,
                Stage::Weight { weight: 10 },
                Stage::Weight { weight: 50 }
            ]
        );
        assert_eq!(s.checks_needed(1), 2);
        assert_eq!(s.checks_needed(2), 1);
        assert_eq!(s.interval, Duration::from_millis(500));
    }

    #[test]
    fn bad_fields_are_named() {
        let (_, e) = resolve(&spec(CanaryAnalysis {
            interval: Some("10 parsecs".into()),
            step_weights: vec![10, 5, 120],
            metrics: vec![
                CanaryMetric {
                    name: "error-budget".into(),
                    ..Default::default()
                },
                CanaryMetric {
                    name: "request-success-rate".into(),
                    threshold_range: ThresholdRange {
                        min: Some(150.0),
                        max: None,
                    },
                    interval: None,
                },
            ],
            threshold: Some(0),
            ..Default::default()
        }));
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.analysis.interval",
                "spec.analysis.threshold",
                "spec.analysis.stepWeights[1]",
                "spec.analysis.stepWeights[2]",
                "spec.analysis.metrics[0].name",
                "spec.analysis.metrics[1].thresholdRange.min"
            ]
        );
    }
}
