//! What the canary controller reads and publishes: per-subset request counters it taps
//! (served and mirrored requests apart), and the `sluice_canary_*` metric families.
//!
//! A tap exists only while a Canary watches its subset: with no canary the request path pays
//! one `ArcSwap` load and an empty-list check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::histogram::{IstioHistogram, ISTIO_BUCKETS};

type CanaryLabels = [(&'static str, String); 2];
type CheckLabels = [(&'static str, String); 3];

/// Counters of one subset's requests (served or mirrored).
#[derive(Debug, Default)]
pub struct SubsetCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    duration: IstioHistogram,
}

/// A point-in-time copy of [`SubsetCounters`]; two of them make a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CounterReading {
    /// Requests completed.
    pub requests: u64,
    /// Of which answered 5xx or not at all.
    pub errors: u64,
    /// Duration histogram counts per [`ISTIO_BUCKETS`] bound, then `+Inf`.
    pub buckets: Vec<u64>,
}

impl CounterReading {
    /// What happened between `earlier` and `self`: requests, errors and the p99 in ms
    /// (interpolated inside its bucket, as Prometheus' `histogram_quantile` does).
    pub fn since(&self, earlier: &CounterReading) -> (u64, u64, Option<f64>) {
        let requests = self.requests.saturating_sub(earlier.requests);
        let errors = self.errors.saturating_sub(earlier.errors);
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, c)| c.saturating_sub(earlier.buckets.get(i).copied().unwrap_or(0)))
            .collect();
        (requests, errors, quantile(&counts, 0.99))
    }
}

/// The `q` quantile of non-cumulative bucket counts over [`ISTIO_BUCKETS`].
pub fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (seen + c) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { ISTIO_BUCKETS[i - 1] };
            let Some(&upper) = ISTIO_BUCKETS.get(i) else {
                // The `+Inf` bucket: the highest finite bound is all that is known.
                return Some(lower);
            };
            let inside = (rank - seen as f64) / c as f64;
            return Some(lower + (upper - lower) * inside.clamp(0.0, 1.0));
        }
        seen += c;
    }
    ISTIO_BUCKETS.last().copied()
}

impl SubsetCounters {
    fn record(&self, status: u16, duration: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status == 0 || status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.duration.observe(duration.as_secs_f64() * 1000.0);
    }

    /// The counters now.
    pub fn read(&self) -> CounterReading {
        CounterReading {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            buckets: self.duration.bucket_counts(),
        }
    }
}

/// The requests one subset of one host served, and those mirrored to it.
#[derive(Debug, Default)]
pub struct SubsetTap {
    /// Requests users got answers from.
    pub served: SubsetCounters,
    /// Mirrored copies (their answers are discarded).
    pub mirrored: SubsetCounters,
}

type Taps = Vec<(String, String, Arc<SubsetTap>)>;

/// The taps canaries watch, keyed by service host and subset.
#[derive(Debug, Default)]
pub struct SubsetStats {
    taps: ArcSwap<Taps>,
    edit: Mutex<()>,
}

impl SubsetStats {
    /// The tap of `host`/`subset`, created on first use; it counts from now on.
    pub fn tap(&self, host: &str, subset: &str) -> Arc<SubsetTap> {
        let _edit = self.edit.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.taps.load_full();
        if let Some((_, _, t)) = current.iter().find(|(h, s, _)| h == host && s == subset) {
            return t.clone();
        }
        let tap = Arc::new(SubsetTap::default());
        let mut next: Taps = (*current).clone();
        next.push((host.to_string(), subset.to_string(), tap.clone()));
        self.taps.store(Arc::new(next));
        tap
    }

    /// Counts a finished request to `host`/`subset` when a canary watches it.
    #[inline]
    pub fn record(&self, host: &str, subset: &str, mirror: bool, status: u16, duration: Duration) {
        let taps = self.taps.load();
        if taps.is_empty() {
            return;
        }
        if let Some((_, _, t)) = taps.iter().find(|(h, s, _)| h == host && s == subset) {
            let c = if mirror { &t.mirrored } else { &t.served };
            c.record(status, duration);
        }
    }
}

/// The `sluice_canary_*` families.
#[derive(Debug, Default)]
pub struct CanaryMetrics {
    weight: Family<CanaryLabels, Gauge>,
    phase: Family<CanaryLabels, Gauge>,
    checks: Family<CheckLabels, Counter>,
    rollbacks: Family<CanaryLabels, Counter>,
}

impl CanaryMetrics {
    /// Creates the families and registers them under the `sluice` prefix.
    pub fn register(registry: &mut Registry) -> CanaryMetrics {
        let m = CanaryMetrics::default();
        let r = registry.sub_registry_with_prefix("sluice");
        r.register(
            "canary_weight",
            "Percent of the route's requests the canary subset gets",
            m.weight.clone(),
        );
        r.register(
            "canary_phase",
            "Canary phase: 0 Initializing, 1 Progressing, 2 Waiting, 3 Paused, 4 Promoting, 5 Succeeded, 6 Failed",
            m.phase.clone(),
        );
        r.register(
            "canary_check",
            "Canary checks by result (pass, fail, wait)",
            m.checks.clone(),
        );
        r.register(
            "canary_rollbacks",
            "Canaries rolled back (failed checks, rollback webhook or abort)",
            m.rollbacks.clone(),
        );
        m
    }

    fn labels(namespace: &str, name: &str) -> CanaryLabels {
        [
            ("name", name.to_string()),
            ("namespace", namespace.to_string()),
        ]
    }

    /// Publishes a canary's weight and phase code.
    pub fn set(&self, namespace: &str, name: &str, weight: u32, phase: i64) {
        let l = Self::labels(namespace, name);
        self.weight.get_or_create(&l).set(i64::from(weight));
        self.phase.get_or_create(&l).set(phase);
    }

    /// Counts one check (`pass`, `fail` or `wait`).
    pub fn check(&self, namespace: &str, name: &str, result: &str) {
        let [a, b] = Self::labels(namespace, name);
        self.checks
            .get_or_create(&[a, b, ("result", result.to_string())])
            .inc();
    }

    /// Counts one rollback.
    pub fn rollback(&self, namespace: &str, name: &str) {
        self.rollbacks
            .get_or_create(&Self::labels(namespace, name))
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_count_served_and_mirrored_apart() {
        let stats = SubsetStats::default();
        stats.record("a", "v2", false, 200, Duration::from_millis(3));
        let tap = stats.tap("a", "v2");
        let before = tap.served.read();
        stats.record("a", "v2", false, 200, Duration::from_millis(3));
        stats.record("a", "v2", false, 503, Duration::from_millis(3));
        stats.record("a", "v2", true, 0, Duration::from_millis(3));
        stats.record("a", "v1", false, 500, Duration::from_millis(3));
        let (req, err, p99) = tap.served.read().since(&before);
        assert_eq!((req, err), (2, 1));
        assert!(p99.is_some_and(|v| (1.0..=5.0).contains(&v)), "{p99:?}");
        assert_eq!(tap.mirrored.read().errors, 1);
    }

    #[test]
    fn p99_is_interpolated_in_its_bucket() {
        let mut counts = vec![0u64; ISTIO_BUCKETS.len() + 1];
        counts[4] = 99; // 10..25 ms
        counts[9] = 1; // 500..1000 ms
        assert_eq!(quantile(&counts, 0.99), Some(25.0));
        counts[9] = 2;
        let p = quantile(&counts, 0.99).unwrap_or(0.0);
        assert!(p > 500.0 && p < 1000.0, "{p}");
        assert_eq!(quantile(&[0; 20], 0.99), None);
    }
}
