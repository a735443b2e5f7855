//! The analysis state machine: a pure function of (settings, state, what was observed during
//! the interval, webhook answers, now). The controller does the I/O around it.

use std::collections::BTreeMap;

use sluice_config::canary::{CanaryOverlay, CanarySettings, HookType, MetricKind, Stage};

use crate::state::{CanaryState, CheckRecord, MetricValue, Phase};

/// The canary subset's requests during one interval (mirrored ones in the mirror stage).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// Requests completed.
    pub requests: u64,
    /// Of which 5xx or unanswered.
    pub errors: u64,
    /// p99 duration in ms (absent without requests).
    pub p99_ms: Option<f64>,
}

impl Window {
    /// Percent of requests that were not 5xx.
    pub fn success_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| {
            100.0 * (self.requests - self.errors.min(self.requests)) as f64 / self.requests as f64
        })
    }
}

/// Everything one check is decided on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The interval's window.
    pub window: Window,
    /// Webhooks called for this check, by type: `Err` holds the first non-2xx answer or error
    /// (types without hooks are absent).
    pub hooks: BTreeMap<HookType, Result<(), String>>,
}

/// A change of phase or stage, logged and kept in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Phase before.
    pub from: Phase,
    /// Phase after.
    pub to: Phase,
    /// Canary weight after.
    pub weight: u32,
    /// Why.
    pub message: String,
    /// Whether this transition rolled the canary back.
    pub rollback: bool,
    /// Whether a stage passed and the next one started (a weight step).
    pub step: bool,
}

/// The outcome of one check, for `sluice_canary_check_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// All metrics in range.
    Pass,
    /// A metric out of range or a gate refused.
    Fail,
    /// Too little traffic, or promotion not confirmed yet.
    Wait,
    /// No check was made (initializing, promoting, final, paused).
    None,
}

impl CheckResult {
    /// The `result` label.
    pub fn label(self) -> Option<&'static str> {
        match self {
            CheckResult::Pass => Some("pass"),
            CheckResult::Fail => Some("fail"),
            CheckResult::Wait => Some("wait"),
            CheckResult::None => None,
        }
    }
}

/// The routes a canary in `state` wants.
pub fn overlay_of(settings: &CanarySettings, state: &CanaryState) -> CanaryOverlay {
    let phase = match state.phase {
        Phase::Paused => state.paused_from.unwrap_or(Phase::Progressing),
        p => p,
    };
    let (weight, mirror, matched) = match phase {
        Phase::Initializing | Phase::Failed => (0, None, false),
        Phase::Promoting | Phase::Succeeded => (100, None, false),
        Phase::Progressing | Phase::Waiting | Phase::Paused => {
            match settings.stages.get(state.stage) {
                Some(Stage::Mirror { percent }) => (0, Some(*percent), false),
                Some(Stage::Match) => (0, None, true),
                Some(Stage::Weight { weight }) => (*weight, None, false),
                None => (0, None, false),
            }
        }
    };
    CanaryOverlay {
        phase: state.phase.name().to_string(),
        weight,
        mirror,
        matched,
    }
}

/// The webhook types to call before the next check of a canary in `state`.
pub fn hooks_due(settings: &CanarySettings, state: &CanaryState) -> Vec<HookType> {
    let wanted: &[HookType] = match state.phase {
        Phase::Initializing => &[HookType::PreRollout],
        Phase::Progressing | Phase::Waiting if state.awaiting_promotion => {
            &[HookType::Rollback, HookType::ConfirmPromotion]
        }
        Phase::Progressing | Phase::Waiting => &[HookType::Rollback, HookType::Rollout],
        Phase::Promoting => &[HookType::PostRollout],
        Phase::Paused | Phase::Succeeded | Phase::Failed => &[],
    };
    wanted
        .iter()
        .copied()
        .filter(|t| settings.hooks(*t).next().is_some())
        .collect()
}

fn hook_failed(obs: &Observation, t: HookType) -> Option<&str> {
    match obs.hooks.get(&t) {
        Some(Err(e)) => Some(e.as_str()),
        _ => None,
    }
}

struct Step<'a> {
    settings: &'a CanarySettings,
    state: &'a mut CanaryState,
    now_ms: u64,
    out: Vec<Transition>,
}

impl Step<'_> {
    fn go(&mut self, to: Phase, message: String, rollback: bool) {
        let from = self.state.phase;
        self.state.phase = to;
        self.state.weight = overlay_of(self.settings, self.state).weight;
        self.state.message = message.clone();
        self.state.record(self.now_ms, message.clone());
        self.out.push(Transition {
            from,
            to,
            weight: self.state.weight,
            message,
            rollback,
            step: false,
        });
    }

    fn rollback(&mut self, reason: String) {
        self.state.rollback_reason = Some(reason.clone());
        self.state.awaiting_promotion = false;
        self.go(Phase::Failed, format!("rolled back: {reason}"), true);
    }

    fn fail_check(&mut self, reason: String) -> CheckResult {
        self.state.failed_checks += 1;
        let n = self.state.failed_checks;
        let threshold = self.settings.threshold;
        if n >= threshold {
            self.rollback(format!(
                "{reason} ({n} failed check(s), threshold {threshold})"
            ));
        } else {
            self.state.message = format!("check failed ({n}/{threshold}): {reason}");
            if self.state.phase == Phase::Waiting {
                let m = self.state.message.clone();
                self.go(Phase::Progressing, m, false);
            }
        }
        CheckResult::Fail
    }

    fn wait(&mut self, message: String) -> CheckResult {
        if self.state.phase != Phase::Waiting {
            self.go(Phase::Waiting, message, false);
        } else {
            self.state.message = message;
        }
        CheckResult::Wait
    }

    fn promote_or_wait(&mut self) -> CheckResult {
        if self
            .settings
            .hooks(HookType::ConfirmPromotion)
            .next()
            .is_none()
        {
            self.go(
                Phase::Promoting,
                "all stages passed: promoting".into(),
                false,
            );
            return CheckResult::Pass;
        }
        self.state.awaiting_promotion = true;
        self.wait("all stages passed: waiting for the confirm-promotion gates".into());
        CheckResult::Pass
    }

    fn pass_check(&mut self) -> CheckResult {
        self.state.failed_checks = 0;
        self.state.passed += 1;
        if self.state.passed < self.settings.checks_needed(self.state.stage) {
            let message = format!(
                "check passed ({}/{} of the stage)",
                self.state.passed,
                self.settings.checks_needed(self.state.stage)
            );
            if self.state.phase != Phase::Progressing {
                self.go(Phase::Progressing, message, false);
            } else {
                self.state.message = message;
            }
            return CheckResult::Pass;
        }
        if self.state.stage + 1 >= self.settings.stages.len() {
            return self.promote_or_wait();
        }
        self.state.stage += 1;
        self.state.passed = 0;
        self.state.stage_since_ms = self.now_ms;
        let message = match self.settings.stages.get(self.state.stage) {
            Some(Stage::Mirror { percent }) => format!("stage passed: mirroring {percent} %"),
            Some(Stage::Match) => "stage passed: A/B stage (match rules to the canary)".into(),
            Some(Stage::Weight { weight }) => format!("stage passed: canary weight {weight} %"),
            None => "stage passed".into(),
        };
        self.go(Phase::Progressing, message, false);
        if let Some(t) = self.out.last_mut() {
            t.step = true;
        }
        CheckResult::Pass
    }

    fn measure(&mut self, w: &Window) -> Vec<String> {
        let mut failures = Vec::new();
        let mut values = Vec::new();
        for m in &self.settings.metrics {
            let value = match m.kind {
                MetricKind::RequestSuccessRate => w.success_rate(),
                MetricKind::RequestDuration => w.p99_ms,
            };
            let ok = value.is_some_and(|v| m.accepts(v));
            if !ok {
                let shown = value.map_or("no data".to_string(), |v| format!("{v:.1}"));
                let range = match (m.min, m.max) {
                    (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
                    (Some(lo), None) => format!(">= {lo}"),
                    (None, Some(hi)) => format!("<= {hi}"),
                    (None, None) => "any".into(),
                };
                failures.push(format!("{} {shown} not {range}", m.name));
            }
            values.push(MetricValue {
                name: m.name.clone(),
                value,
                min: m.min,
                max: m.max,
                ok,
            });
        }
        self.state.last_check = Some(CheckRecord {
            at_ms: self.now_ms,
            requests: w.requests,
            metrics: values,
        });
        failures
    }
}

/// One check of a canary: advances `state` and returns what changed.
pub fn tick(
    settings: &CanarySettings,
    state: &mut CanaryState,
    obs: &Observation,
    now_ms: u64,
) -> (CheckResult, Vec<Transition>) {
    let mut s = Step {
        settings,
        state,
        now_ms,
        out: Vec::new(),
    };
    let result = match s.state.phase {
        Phase::Paused | Phase::Succeeded | Phase::Failed => CheckResult::None,
        Phase::Initializing => {
            if let Some(e) = hook_failed(obs, HookType::PreRollout) {
                // Still initializing unless rolled back: the canary gets no traffic yet.
                s.fail_check(format!("pre-rollout gate: {e}"))
            } else {
                s.state.stage = 0;
                s.state.passed = 0;
                s.state.failed_checks = 0;
                s.state.stage_since_ms = now_ms;
                s.go(Phase::Progressing, "analysis started".into(), false);
                CheckResult::None
            }
        }
        Phase::Promoting => {
            let message = match hook_failed(obs, HookType::PostRollout) {
                Some(e) => format!("promoted (post-rollout gate: {e})"),
                None => "promoted".into(),
            };
            s.go(Phase::Succeeded, message, false);
            CheckResult::None
        }
        Phase::Progressing | Phase::Waiting => {
            // Flagger's rollback gate is inverted: a 2xx answer asks for the rollback.
            if matches!(obs.hooks.get(&HookType::Rollback), Some(Ok(()))) {
                s.rollback("the rollback gate asked for it".into());
                CheckResult::Fail
            } else if s.state.awaiting_promotion {
                match hook_failed(obs, HookType::ConfirmPromotion) {
                    Some(e) => s.wait(format!("promotion held by the confirm-promotion gate: {e}")),
                    None => {
                        s.state.awaiting_promotion = false;
                        s.go(
                            Phase::Promoting,
                            "promotion confirmed: promoting".into(),
                            false,
                        );
                        CheckResult::Pass
                    }
                }
            } else if let Some(e) = hook_failed(obs, HookType::Rollout) {
                s.fail_check(format!("rollout gate: {e}"))
            } else if obs.window.requests < settings.min_requests {
                s.state.last_check = None;
                s.wait(format!(
                    "too little traffic: {} request(s) in the last interval, fewer than minRequests {}; waiting",
                    obs.window.requests, settings.min_requests
                ))
            } else {
                let failures = s.measure(&obs.window);
                if failures.is_empty() {
                    s.pass_check()
                } else {
                    s.fail_check(failures.join(", "))
                }
            }
        }
    };
    (result, s.out)
}

/// An operator's command applied to `state`; `Err` says why it does not apply.
pub fn command(
    settings: &CanarySettings,
    state: &mut CanaryState,
    cmd: crate::controller::Command,
    now_ms: u64,
) -> Result<Vec<Transition>, String> {
    use crate::controller::Command;
    let mut s = Step {
        settings,
        state,
        now_ms,
        out: Vec::new(),
    };
    match cmd {
        Command::Promote => {
            if s.state.phase.is_final() {
                return Err(format!("the canary is {} already", s.state.phase.name()));
            }
            s.state.paused_from = None;
            s.state.awaiting_promotion = false;
            s.go(Phase::Promoting, "promoted by the operator".into(), false);
        }
        Command::Abort => {
            if s.state.phase.is_final() {
                return Err(format!("the canary is {} already", s.state.phase.name()));
            }
            s.state.paused_from = None;
            s.rollback("aborted by the operator".into());
        }
        Command::Pause => {
            if s.state.phase.is_final() || s.state.phase == Phase::Paused {
                return Err(format!("the canary is {}", s.state.phase.name()));
            }
            s.state.paused_from = Some(s.state.phase);
            s.go(Phase::Paused, "paused by the operator".into(), false);
        }
        Command::Resume => {
            let Some(back) = s.state.paused_from.take() else {
                return Err("the canary is not paused".into());
            };
            s.go(back, "resumed by the operator".into(), false);
        }
    }
    Ok(s.out)
}
