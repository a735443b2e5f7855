//! A canary's state: what the machine decided so far. Persisted, so a restart continues the
//! canary where it was.

use serde::{Deserialize, Serialize};

/// The history kept per canary (oldest dropped first).
const HISTORY: usize = 50;

/// Where a canary is (Flagger's phases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Found; the pre-rollout gates run before the canary gets traffic.
    Initializing,
    /// A stage is being analysed.
    Progressing,
    /// Too little traffic to judge, or promotion waits for its confirm-promotion gate.
    Waiting,
    /// Stopped by the operator; the routes stay as they were.
    Paused,
    /// All stages passed: 100 % to the canary, post-rollout gates next.
    Promoting,
    /// Promoted: 100 % canary, until the user points the VirtualService at it.
    Succeeded,
    /// Rolled back: 100 % stable, no mirror, no match rule.
    Failed,
}

impl Phase {
    /// The phase's name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Initializing => "Initializing",
            Phase::Progressing => "Progressing",
            Phase::Waiting => "Waiting",
            Phase::Paused => "Paused",
            Phase::Promoting => "Promoting",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    /// The `sluice_canary_phase` value.
    pub fn code(self) -> i64 {
        match self {
            Phase::Initializing => 0,
            Phase::Progressing => 1,
            Phase::Waiting => 2,
            Phase::Paused => 3,
            Phase::Promoting => 4,
            Phase::Succeeded => 5,
            Phase::Failed => 6,
        }
    }

    /// Whether the analysis is over.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// One entry of a canary's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Phase after the event.
    pub phase: Phase,
    /// Canary weight after the event.
    pub weight: u32,
    /// What happened.
    pub message: String,
}

/// The last check's measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRecord {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Requests in the window.
    pub requests: u64,
    /// Each metric: name, value (absent without data), accepted.
    pub metrics: Vec<MetricValue>,
}

/// One metric measured against its range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricValue {
    /// Metric name.
    pub name: String,
    /// Measured value.
    pub value: Option<f64>,
    /// Lowest accepted.
    pub min: Option<f64>,
    /// Highest accepted.
    pub max: Option<f64>,
    /// In range.
    pub ok: bool,
}

/// A canary's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryState {
    /// What is rolled out (`vs/route stable→canary`): a new target starts a new canary.
    pub target: String,
    /// Phase.
    pub phase: Phase,
    /// The phase to go back to on resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_from: Option<Phase>,
    /// Index of the current stage in the settings' stages.
    pub stage: usize,
    /// Checks passed in the current stage.
    pub passed: u32,
    /// Failed checks in a row.
    pub failed_checks: u32,
    /// Every stage passed: promotion waits for its confirm-promotion gates.
    #[serde(default)]
    pub awaiting_promotion: bool,
    /// Canary weight now (for display; the overlay is derived from stage and phase).
    pub weight: u32,
    /// When the current stage started (ms since the epoch).
    pub stage_since_ms: u64,
    /// Why the canary waits, failed or was rolled back.
    pub message: String,
    /// The rollback reason, once rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_reason: Option<String>,
    /// The last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<CheckRecord>,
    /// Transitions, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// The last operator command handled (the command annotation's value), so it is acted on
    /// once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_command: Option<String>,
}

impl CanaryState {
    /// A canary just found.
    pub fn new(target: String, now_ms: u64) -> CanaryState {
        let mut s = CanaryState {
            target,
            phase: Phase::Initializing,
            paused_from: None,
            stage: 0,
            passed: 0,
            failed_checks: 0,
            awaiting_promotion: false,
            weight: 0,
            stage_since_ms: now_ms,
            message: "initializing: pre-rollout gates next".into(),
            rollback_reason: None,
            last_check: None,
            history: Vec::new(),
            last_command: None,
        };
        s.record(now_ms, "canary found".into());
        s
    }

    /// Appends to the history.
    pub fn record(&mut self, now_ms: u64, message: String) {
        if self.history.len() >= HISTORY {
            self.history.remove(0);
        }
        self.history.push(HistoryEntry {
            at_ms: now_ms,
            phase: self.phase,
            weight: self.weight,
            message,
        });
    }
}
