//! Consecutive-error outlier detection for one endpoint (Envoy's `consecutive_5xx`,
//! `consecutive_gateway_failure` and, with `split_external_local_origin_errors`,
//! `consecutive_local_origin_failure` detectors), with the clock injected as `now: Instant`.
//!
//! Cluster-wide rules (`maxEjectionPercent`, `minHealthPercent`) live in
//! [`OutlierDetector`](crate::OutlierDetector); this file is the per-endpoint state, which is
//! kept in [`EndpointState`](crate::EndpointState) so that ejections survive config reloads.
//!
//! Differences from Envoy, all deliberate and without a timer thread:
//! - An ejection ends exactly at `ejected_at + base_ejection_time × multiplier` (Envoy un-ejects
//!   at the first `interval` tick after that, so its ejections last up to one interval longer).
//! - The multiplier decreases by one for every whole `interval` the endpoint spends un-ejected
//!   (Envoy decrements it at each tick that finds the host healthy); it is applied lazily, at the
//!   next ejection or [`OutlierState::sweep`].
//! - Results reported while the endpoint is ejected (possible in panic mode or for requests that
//!   were already in flight) are not counted.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Envoy's default `max_ejection_time` (Istio does not set it): the cap on one ejection.
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// DestinationRule `outlierDetection`, as the load balancer needs it (the proxy converts the
/// config crate's `OutlierPolicy` into this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// `consecutive5xxErrors`: any 5xx or local-origin failure; 0 disables.
    pub consecutive_5xx: u32,
    /// `consecutiveGatewayErrors`: 502/503/504 or local-origin failure; 0 disables.
    pub consecutive_gateway_errors: u32,
    /// `interval`: the unit in which the ejection multiplier decays.
    pub interval: Duration,
    /// `baseEjectionTime`: an ejection lasts this × the ejection multiplier.
    pub base_ejection_time: Duration,
    /// `maxEjectionPercent`: no new ejection once this share of the cluster is ejected (the
    /// first ejection is always allowed when it is above 0, as in Envoy).
    pub max_ejection_percent: u32,
    /// `minHealthPercent`: below this share of healthy endpoints, ejections are ignored (panic
    /// mode); 0 never panics, so a cluster whose endpoints are all ejected has none (503 `UH`).
    pub min_health_percent: u32,
    /// `splitExternalLocalOriginErrors`: local-origin failures (connect failures, resets,
    /// timeouts) feed their own run instead of the 5xx and gateway-error runs.
    pub split_local_origin: bool,
    /// `consecutiveLocalOriginFailures` (used when split; Envoy's default 5); 0 disables.
    pub consecutive_local_origin: u32,
    /// `outlierDetectionHttpErrorCodes`: the statuses that count as errors for the 5xx run
    /// (`None`: every 5xx).
    pub error_codes: Option<StatusSet>,
}

/// A set of HTTP statuses 100–599 as a bitset (small and `Copy`, so the config stays `Copy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusSet([u64; 8]);

impl StatusSet {
    /// The set of `codes` (values outside 100–599 are ignored).
    pub fn of(codes: impl IntoIterator<Item = u16>) -> Self {
        let mut set = StatusSet::default();
        for c in codes {
            if (100..600).contains(&c) {
                let bit = usize::from(c - 100);
                if let Some(word) = set.0.get_mut(bit / 64) {
                    *word |= 1 << (bit % 64);
                }
            }
        }
        set
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        if !(100..600).contains(&status) {
            return false;
        }
        let bit = usize::from(status - 100);
        self.0
            .get(bit / 64)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }
}

impl Default for OutlierConfig {
    /// Istio's defaults for a present `outlierDetection` object.
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 10,
            min_health_percent: 0,
            split_local_origin: false,
            consecutive_local_origin: 5,
            error_codes: None,
        }
    }
}

impl OutlierConfig {
    /// The longest single ejection: `max(base_ejection_time, 300 s)`.
    pub fn max_ejection_time(&self) -> Duration {
        self.base_ejection_time.max(MAX_EJECTION_TIME)
    }

    /// Whether an upstream status counts as an error (the configured codes, else any 5xx).
    pub fn is_error_status(&self, status: u16) -> bool {
        match &self.error_codes {
            Some(set) => set.contains(status),
            None => (500..600).contains(&status),
        }
    }

    /// How long an ejection with this multiplier lasts (capped by [`Self::max_ejection_time`]).
    pub fn ejection_time(&self, multiplier: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(multiplier)
            .min(self.max_ejection_time())
    }
}

/// How an upstream attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The upstream answered with this status (below 500 counts as a success).
    Status(u16),
    /// The connection could not be established (local origin).
    ConnectFailure,
    /// The connection or stream was reset before a response (local origin).
    Reset,
    /// No response in time (local origin).
    Timeout,
}

impl FailureKind {
    /// A failure that happened in the proxy (connect failure, reset, timeout), not a response.
    pub fn is_local_origin(self) -> bool {
        !matches!(self, FailureKind::Status(_))
    }

    /// Counts toward `consecutive5xxErrors`: any 5xx and every local-origin failure.
    pub fn is_5xx(self) -> bool {
        match self {
            FailureKind::Status(s) => (500..600).contains(&s),
            _ => true,
        }
    }

    /// Counts toward `consecutiveGatewayErrors`: 502, 503, 504 and every local-origin failure.
    pub fn is_gateway_error(self) -> bool {
        match self {
            FailureKind::Status(s) => matches!(s, 502..=504),
            _ => true,
        }
    }
}

/// Which detector asked for an ejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectionReason {
    /// `consecutive5xxErrors` was reached.
    Consecutive5xx,
    /// `consecutiveGatewayErrors` was reached.
    ConsecutiveGatewayErrors,
    /// `consecutiveLocalOriginFailures` was reached (split mode only).
    ConsecutiveLocalOriginFailures,
}

/// An ejection that just happened (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// The detector that fired.
    pub reason: EjectionReason,
    /// When the endpoint becomes eligible again.
    pub until: Instant,
    /// The multiplier used (`base_ejection_time × multiplier`, capped).
    pub multiplier: u32,
    /// Ejections of this endpoint so far, this one included.
    pub times_ejected: u32,
}

/// A read-only view of one endpoint's outlier state (admin API, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierStatus {
    /// `Some(t)` while ejected, until `t`.
    pub ejected_until: Option<Instant>,
    /// Current run of 5xx / local-origin failures.
    pub consecutive_5xx: u32,
    /// Current run of gateway errors / local-origin failures.
    pub consecutive_gateway_errors: u32,
    /// Current run of local-origin failures (split mode).
    pub consecutive_local_origin: u32,
    /// Ejection-time multiplier (after decay up to the time asked).
    pub multiplier: u32,
    /// Total ejections of this endpoint.
    pub times_ejected: u32,
}

#[derive(Debug, Default)]
struct Record {
    ejected_until: Option<Instant>,
    multiplier: u32,
    times_ejected: u32,
    /// Start of the un-ejected time not yet used to decay the multiplier.
    decay_from: Option<Instant>,
    /// When the last ejection ended (slow start counts from here).
    returned_at: Option<Instant>,
}

/// Outlier state of one endpoint: failure runs (atomics, updated per response) and the ejection
/// record (behind a mutex, touched only when ejecting or while ejected).
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// Fast-path hint: `false` means "certainly not ejected" without taking the lock.
    ejected: AtomicBool,
    /// Fast-path hint: `false` means "never ejected", so there is no return time to read.
    ever_ejected: AtomicBool,
    /// Made at the first ejection: boxed, 16 bytes instead of 64 in every endpoint's state
    /// (40,000 of them at 10,000 services), most never ejected.
    record: Mutex<Option<Box<Record>>>,
}

impl OutlierState {
    fn record(&self) -> MutexGuard<'_, Option<Box<Record>>> {
        match self.record.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether the endpoint is ejected at `now` (an expired ejection ends here, lazily).
    pub fn is_ejected(&self, now: Instant) -> bool {
        if !self.ejected.load(Ordering::Acquire) {
            return false;
        }
        let mut guard = self.record();
        let Some(rec) = guard.as_deref_mut() else {
            return false;
        };
        self.uneject_if_due(rec, now);
        rec.ejected_until.is_some()
    }

    /// When the endpoint last came back from an ejection, as of `now` (`None`: never ejected,
    /// or still ejected). Reads the lock only for endpoints that were ejected at least once.
    pub fn returned_at(&self, now: Instant) -> Option<Instant> {
        if !self.ever_ejected.load(Ordering::Acquire) {
            return None;
        }
        let guard = self.record();
        let rec = guard.as_deref()?;
        match rec.ejected_until {
            Some(until) if now >= until => Some(until),
            Some(_) => None,
            None => rec.returned_at,
        }
    }

    /// A response that is not an error: every failure run restarts.
    pub fn record_success(&self) {
        // Avoid writing the shared cache line on the common path.
        for run in [
            &self.consecutive_5xx,
            &self.consecutive_gateway,
            &self.consecutive_local,
        ] {
            if run.load(Ordering::Relaxed) != 0 {
                run.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Counts a failure; returns which threshold it reached, if any, and restarts that run (as
    /// Envoy does, whether or not the ejection is then allowed). A `Status` that is neither an
    /// error (the configured codes, else 5xx) nor a gateway error is a success.
    pub fn record_failure(
        &self,
        kind: FailureKind,
        config: &OutlierConfig,
    ) -> Option<EjectionReason> {
        if config.split_local_origin {
            if kind.is_local_origin() {
                // Split: local-origin failures only feed their own detector.
                let run = self.consecutive_local.fetch_add(1, Ordering::Relaxed) + 1;
                let limit = config.consecutive_local_origin;
                if limit > 0 && run >= limit {
                    self.consecutive_local.store(0, Ordering::Relaxed);
                    return Some(EjectionReason::ConsecutiveLocalOriginFailures);
                }
                return None;
            }
            // A response arrived, so the connection worked: the local-origin run restarts.
            if self.consecutive_local.load(Ordering::Relaxed) != 0 {
                self.consecutive_local.store(0, Ordering::Relaxed);
            }
        }
        let is_error = match kind {
            FailureKind::Status(s) => config.is_error_status(s),
            _ => true,
        };
        if !is_error && !kind.is_gateway_error() {
            self.record_success();
            return None;
        }
        // Like Envoy, a 5xx that is not a gateway error ends the gateway-error run.
        let gateway = if kind.is_gateway_error() {
            self.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.consecutive_gateway.store(0, Ordering::Relaxed);
            0
        };
        let any = if is_error {
            self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.consecutive_5xx.store(0, Ordering::Relaxed);
            0
        };
        let gw_limit = config.consecutive_gateway_errors;
        if gw_limit > 0 && gateway >= gw_limit {
            self.consecutive_gateway.store(0, Ordering::Relaxed);
            return Some(EjectionReason::ConsecutiveGatewayErrors);
        }
        if config.consecutive_5xx > 0 && any >= config.consecutive_5xx {
            self.consecutive_5xx.store(0, Ordering::Relaxed);
            return Some(EjectionReason::Consecutive5xx);
        }
        None
    }

    /// Ejects the endpoint from `now` (the caller checked the cluster-wide limits).
    pub fn eject(&self, now: Instant, config: &OutlierConfig, reason: EjectionReason) -> Ejection {
        let mut guard = self.record();
        let rec = guard.get_or_insert_with(Box::default);
        decay(rec, now, config);
        // Envoy grows the multiplier while base × multiplier < max + base.
        let cap = config.max_ejection_time();
        if config.base_ejection_time.saturating_mul(rec.multiplier)
            < cap.saturating_add(config.base_ejection_time)
        {
            rec.multiplier = rec.multiplier.saturating_add(1);
        }
        let duration = config.ejection_time(rec.multiplier);
        let until = now
            .checked_add(duration)
            .or_else(|| now.checked_add(MAX_EJECTION_TIME))
            .unwrap_or(now);
        rec.ejected_until = Some(until);
        rec.decay_from = None;
        rec.times_ejected = rec.times_ejected.saturating_add(1);
        self.ejected.store(true, Ordering::Release);
        self.ever_ejected.store(true, Ordering::Release);
        Ejection {
            reason,
            until,
            multiplier: rec.multiplier,
            times_ejected: rec.times_ejected,
        }
    }

    /// Ends an expired ejection and applies the multiplier decay up to `now`; returns whether
    /// this call ended an ejection. Optional housekeeping: [`Self::is_ejected`] is exact without it.
    pub fn sweep(&self, now: Instant, config: &OutlierConfig) -> bool {
        let mut guard = self.record();
        let Some(rec) = guard.as_deref_mut() else {
            return false;
        };
        let ended = self.uneject_if_due(rec, now);
        decay(rec, now, config);
        ended
    }

    /// The state as of `now` (multiplier decay included, nothing modified).
    pub fn status(&self, now: Instant, config: &OutlierConfig) -> OutlierStatus {
        let guard = self.record();
        let never = Record::default();
        let rec = guard.as_deref().unwrap_or(&never);
        let mut view = Record {
            ejected_until: rec.ejected_until.filter(|&t| now < t),
            multiplier: rec.multiplier,
            times_ejected: rec.times_ejected,
            decay_from: rec.decay_from.or(rec.ejected_until.filter(|&t| now >= t)),
            returned_at: None,
        };
        if view.ejected_until.is_none() {
            decay(&mut view, now, config);
        }
        OutlierStatus {
            ejected_until: view.ejected_until,
            consecutive_5xx: self.consecutive_5xx.load(Ordering::Relaxed),
            consecutive_gateway_errors: self.consecutive_gateway.load(Ordering::Relaxed),
            consecutive_local_origin: self.consecutive_local.load(Ordering::Relaxed),
            multiplier: view.multiplier,
            times_ejected: view.times_ejected,
        }
    }

    fn uneject_if_due(&self, rec: &mut Record, now: Instant) -> bool {
        match rec.ejected_until {
            Some(until) if now >= until => {
                rec.ejected_until = None;
                rec.decay_from = Some(until);
                rec.returned_at = Some(until);
                // Envoy restarts the runs on un-ejection, so stale counts cannot re-eject at once.
                self.consecutive_5xx.store(0, Ordering::Relaxed);
                self.consecutive_gateway.store(0, Ordering::Relaxed);
                self.consecutive_local.store(0, Ordering::Relaxed);
                self.ejected.store(false, Ordering::Release);
                true
            }
            _ => false,
        }
    }
}

/// Lowers the multiplier by one per whole `interval` spent un-ejected since `decay_from`.
fn decay(rec: &mut Record, now: Instant, config: &OutlierConfig) {
    if rec.ejected_until.is_some() {
        return;
    }
    let Some(from) = rec.decay_from else {
        return;
    };
    let interval = config.interval.max(Duration::from_millis(1));
    let ticks = now.saturating_duration_since(from).as_nanos() / interval.as_nanos();
    if ticks == 0 {
        return;
    }
    rec.multiplier = rec
        .multiplier
        .saturating_sub(u32::try_from(ticks).unwrap_or(u32::MAX));
    rec.decay_from = if rec.multiplier == 0 {
        None
    } else {
        // ticks < the old multiplier here, so the product is small.
        from.checked_add(interval.saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX)))
    };
}
