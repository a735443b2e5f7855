//! Cluster-wide outlier detection: applies `maxEjectionPercent` when a failure run asks for an
//! ejection, and `minHealthPercent` (panic mode) when picking.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::endpoint::LbEndpoint;
use crate::outlier::{Ejection, FailureKind, OutlierConfig};

/// Outlier detection for one cluster's endpoint list (the states themselves are shared through
/// the [`StateStore`](crate::StateStore)). Cheap to clone; clones serialise ejections together.
#[derive(Debug, Clone)]
pub struct OutlierDetector {
    config: OutlierConfig,
    /// Makes "count the ejected endpoints, then eject" atomic, so concurrent failures on
    /// different endpoints cannot overshoot `max_ejection_percent`.
    eject_lock: Arc<Mutex<()>>,
}

impl OutlierDetector {
    /// A detector with these settings.
    pub fn new(config: OutlierConfig) -> Self {
        OutlierDetector {
            config,
            eject_lock: Arc::new(Mutex::new(())),
        }
    }

    /// The settings.
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// Reports a successful response (any status below 500) from `endpoints[index]`.
    pub fn record_success(&self, endpoints: &[LbEndpoint], index: usize) {
        if let Some(e) = endpoints.get(index) {
            e.state.outlier().record_success();
        }
    }

    /// Reports a failure of `endpoints[index]`; returns the ejection it caused, if any.
    ///
    /// Failures of an endpoint that is already ejected are ignored. When a failure run reaches
    /// its threshold, the endpoint is ejected unless `max_ejection_percent` of the list is
    /// already ejected (with Envoy's rule `ejected / total < max%`, so the first ejection is
    /// always allowed when the percentage is above 0).
    pub fn record_failure(
        &self,
        endpoints: &[LbEndpoint],
        index: usize,
        kind: FailureKind,
        now: Instant,
    ) -> Option<Ejection> {
        let outlier = endpoints.get(index)?.state.outlier();
        if outlier.is_ejected(now) {
            return None;
        }
        let reason = outlier.record_failure(kind, &self.config)?;
        let _serial = match self.eject_lock.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if outlier.is_ejected(now) {
            return None;
        }
        let ejected = self.ejected_count(endpoints, now) as u64;
        let total = endpoints.len() as u64;
        if ejected * 100 >= u64::from(self.config.max_ejection_percent) * total {
            return None;
        }
        Some(outlier.eject(now, &self.config, reason))
    }

    /// Reports an upstream status: an error (the configured codes, else any 5xx) or a gateway
    /// error is a failure, anything else a success.
    pub fn record_status(
        &self,
        endpoints: &[LbEndpoint],
        index: usize,
        status: u16,
        now: Instant,
    ) -> Option<Ejection> {
        if !self.config.is_error_status(status) && !matches!(status, 502..=504) {
            self.record_success(endpoints, index);
            None
        } else {
            self.record_failure(endpoints, index, FailureKind::Status(status), now)
        }
    }

    /// Ends expired ejections and decays multipliers; returns how many ejections ended.
    /// Optional (ejections expire on their own when read); useful before showing state.
    pub fn sweep(&self, endpoints: &[LbEndpoint], now: Instant) -> usize {
        endpoints
            .iter()
            .filter(|e| e.state.outlier().sweep(now, &self.config))
            .count()
    }

    /// How many of `endpoints` are ejected at `now`.
    pub fn ejected_count(&self, endpoints: &[LbEndpoint], now: Instant) -> usize {
        endpoints
            .iter()
            .filter(|e| e.state.outlier().is_ejected(now))
            .count()
    }

    /// Panic mode: fewer than `min_health_percent` of `total` endpoints are healthy, so
    /// ejections are ignored (never with `min_health_percent` 0).
    pub fn in_panic(&self, healthy: usize, total: usize) -> bool {
        (healthy as u64) * 100 < u64::from(self.config.min_health_percent) * (total as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::EndpointState;
    use crate::outlier::EjectionReason;
    use std::time::Duration;

    fn endpoints(n: usize) -> Vec<LbEndpoint> {
        (0..n)
            .map(|i| LbEndpoint::new(1, Arc::new(EndpointState::new(format!("10.0.0.{i}:80")))))
            .collect()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn fail(
        d: &OutlierDetector,
        eps: &[LbEndpoint],
        i: usize,
        n: u32,
        now: Instant,
    ) -> Option<Ejection> {
        let mut last = None;
        for _ in 0..n {
            last = d.record_status(eps, i, 503, now).or(last);
        }
        last
    }

    #[test]
    fn five_consecutive_5xx_eject_for_base_time() {
        let d = OutlierDetector::new(OutlierConfig::default());
        let eps = endpoints(1);
        let t0 = Instant::now();
        assert_eq!(fail(&d, &eps, 0, 4, t0), None);
        d.record_status(&eps, 0, 200, t0); // success restarts the run
        assert_eq!(fail(&d, &eps, 0, 4, t0), None);
        let e = d.record_status(&eps, 0, 500, t0).unwrap();
        assert_eq!(e.reason, EjectionReason::Consecutive5xx);
        assert_eq!(e.until, t0 + secs(30));
        let o = eps[0].state.outlier();
        // One endpoint out of one: "at least one" is always ejectable (10 % of 1 < 1).
        assert!(o.is_ejected(t0 + secs(29)));
        assert!(!o.is_ejected(t0 + secs(30)));
        assert_eq!(o.status(t0 + secs(30), d.config()).times_ejected, 1);
    }

    #[test]
    fn local_origin_and_gateway_errors() {
        let cfg = OutlierConfig {
            consecutive_5xx: 0,
            consecutive_gateway_errors: 3,
            ..OutlierConfig::default()
        };
        let d = OutlierDetector::new(cfg);
        let eps = endpoints(1);
        let t0 = Instant::now();
        // A 500 is a 5xx but not a gateway error: it breaks the gateway run.
        d.record_failure(&eps, 0, FailureKind::ConnectFailure, t0);
        d.record_failure(&eps, 0, FailureKind::Timeout, t0);
        assert_eq!(d.record_status(&eps, 0, 500, t0), None);
        d.record_failure(&eps, 0, FailureKind::Reset, t0);
        d.record_status(&eps, 0, 502, t0);
        let e = d.record_status(&eps, 0, 504, t0).unwrap();
        assert_eq!(e.reason, EjectionReason::ConsecutiveGatewayErrors);
        // 4xx is a success, and 0 thresholds disable detection.
        let off = OutlierDetector::new(OutlierConfig {
            consecutive_5xx: 0,
            ..OutlierConfig::default()
        });
        let eps = endpoints(1);
        assert_eq!(fail(&off, &eps, 0, 100, t0), None);
        assert_eq!(
            d.record_failure(&eps, 0, FailureKind::Status(404), t0),
            None
        );
    }

    #[test]
    fn split_local_origin_failures_feed_their_own_run() {
        let d = OutlierDetector::new(OutlierConfig {
            consecutive_5xx: 2,
            split_local_origin: true,
            consecutive_local_origin: 3,
            ..OutlierConfig::default()
        });
        let eps = endpoints(1);
        let t0 = Instant::now();
        // Local-origin failures no longer count as 5xx...
        for _ in 0..2 {
            assert_eq!(
                d.record_failure(&eps, 0, FailureKind::ConnectFailure, t0),
                None
            );
        }
        // ...a response (even a 5xx) restarts the local-origin run...
        assert_eq!(d.record_status(&eps, 0, 500, t0), None);
        d.record_failure(&eps, 0, FailureKind::Reset, t0);
        d.record_failure(&eps, 0, FailureKind::Timeout, t0);
        // ...and the local-origin run ejects on its own threshold.
        let e = d
            .record_failure(&eps, 0, FailureKind::ConnectFailure, t0)
            .unwrap();
        assert_eq!(e.reason, EjectionReason::ConsecutiveLocalOriginFailures);
        // Not split: connect failures are 5xx, as before.
        let joined = OutlierDetector::new(OutlierConfig {
            consecutive_5xx: 2,
            ..OutlierConfig::default()
        });
        let eps = endpoints(1);
        joined.record_failure(&eps, 0, FailureKind::ConnectFailure, t0);
        let e = joined
            .record_failure(&eps, 0, FailureKind::ConnectFailure, t0)
            .unwrap();
        assert_eq!(e.reason, EjectionReason::Consecutive5xx);
    }

    #[test]
    fn http_error_codes_choose_what_counts_as_an_error() {
        let d = OutlierDetector::new(OutlierConfig {
            consecutive_5xx: 2,
            error_codes: Some(crate::outlier::StatusSet::of([404, 500])),
            ..OutlierConfig::default()
        });
        let eps = endpoints(1);
        let t0 = Instant::now();
        assert_eq!(d.record_status(&eps, 0, 404, t0), None);
        // 501 is not in the list: a success for the error run.
        assert_eq!(d.record_status(&eps, 0, 501, t0), None);
        assert_eq!(d.record_status(&eps, 0, 404, t0), None);
        let e = d.record_status(&eps, 0, 500, t0).unwrap();
        assert_eq!(e.reason, EjectionReason::Consecutive5xx);
        assert!(d.config().is_error_status(404));
        assert!(!d.config().is_error_status(503));
    }

    #[test]
    fn max_ejection_percent_allows_the_first_and_caps_the_rest() {
        let d = OutlierDetector::new(OutlierConfig::default()); // 10 %
        let eps = endpoints(5);
        let t0 = Instant::now();
        assert!(fail(&d, &eps, 0, 5, t0).is_some());
        // 1 of 5 ejected = 20 % ≥ 10 %: no more.
        assert!(fail(&d, &eps, 1, 5, t0).is_none());
        assert_eq!(d.ejected_count(&eps, t0), 1);
        // The refused run restarted: after the first ejection ends, 5 more failures are needed.
        let t1 = t0 + secs(30);
        assert!(fail(&d, &eps, 1, 4, t1).is_none());
        assert!(fail(&d, &eps, 1, 1, t1).is_some());

        let half = OutlierDetector::new(OutlierConfig {
            max_ejection_percent: 50,
            ..OutlierConfig::default()
        });
        let eps = endpoints(4);
        let ejected = (0..4)
            .filter(|&i| fail(&half, &eps, i, 5, t0).is_some())
            .count();
        assert_eq!(ejected, 2);
        let none = OutlierDetector::new(OutlierConfig {
            max_ejection_percent: 0,
            ..OutlierConfig::default()
        });
        assert!(fail(&none, &endpoints(3), 0, 5, t0).is_none());
    }

    #[test]
    fn ejection_time_grows_with_the_multiplier_and_decays_per_interval() {
        let d = OutlierDetector::new(OutlierConfig::default()); // base 30 s, interval 10 s
        let eps = endpoints(1);
        let o = eps[0].state.outlier();
        let t0 = Instant::now();
        let e1 = fail(&d, &eps, 0, 5, t0).unwrap();
        assert_eq!((e1.multiplier, e1.until), (1, t0 + secs(30)));
        // Failures while ejected are ignored.
        assert!(fail(&d, &eps, 0, 10, t0 + secs(10)).is_none());
        // Ejected again 5 s after coming back: no whole interval of health, so the multiplier grows.
        let t1 = t0 + secs(35);
        let e2 = fail(&d, &eps, 0, 5, t1).unwrap();
        assert_eq!(
            (e2.multiplier, e2.until, e2.times_ejected),
            (2, t1 + secs(60), 2)
        );
        // Back at t1+60; 25 s later two whole intervals have passed: multiplier 2 → 0, then 1.
        let t2 = t1 + secs(85);
        assert_eq!(o.status(t2, d.config()).multiplier, 0);
        let e3 = fail(&d, &eps, 0, 5, t2).unwrap();
        assert_eq!((e3.multiplier, e3.until), (1, t2 + secs(30)));
        assert_eq!(o.status(t2, d.config()).times_ejected, 3);
    }

    #[test]
    fn ejections_are_capped_at_300s() {
        let cfg = OutlierConfig {
            consecutive_5xx: 1,
            base_ejection_time: secs(100),
            ..OutlierConfig::default()
        };
        let d = OutlierDetector::new(cfg);
        let eps = endpoints(1);
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..6 {
            let e = fail(&d, &eps, 0, 1, now).unwrap();
            lengths.push((e.until - now).as_secs());
            now = e.until; // fail again as soon as it is back
        }
        assert_eq!(lengths, [100, 200, 300, 300, 300, 300]);
        assert_eq!(cfg.ejection_time(100), secs(300));
        let long = OutlierConfig {
            base_ejection_time: secs(600),
            ..cfg
        };
        assert_eq!(long.ejection_time(3), secs(600));
    }

    #[test]
    fn sweep_ends_expired_ejections_and_restarts_runs() {
        let d = OutlierDetector::new(OutlierConfig {
            max_ejection_percent: 100,
            ..OutlierConfig::default()
        });
        let eps = endpoints(2);
        let t0 = Instant::now();
        fail(&d, &eps, 0, 5, t0).unwrap();
        fail(&d, &eps, 1, 4, t0);
        assert_eq!(d.sweep(&eps, t0 + secs(29)), 0);
        assert_eq!(d.sweep(&eps, t0 + secs(30)), 1);
        assert_eq!(d.sweep(&eps, t0 + secs(31)), 0);
        let s = eps[0].state.outlier().status(t0 + secs(31), d.config());
        assert_eq!((s.ejected_until, s.consecutive_5xx), (None, 0));
        assert_eq!(
            eps[1]
                .state
                .outlier()
                .status(t0, d.config())
                .consecutive_5xx,
            4
        );
    }

    #[test]
    fn panic_threshold() {
        let d = OutlierDetector::new(OutlierConfig {
            min_health_percent: 50,
            ..OutlierConfig::default()
        });
        assert!(!d.in_panic(2, 4));
        assert!(d.in_panic(1, 4));
        let never = OutlierDetector::new(OutlierConfig::default());
        assert!(!never.in_panic(0, 4));
    }
}
