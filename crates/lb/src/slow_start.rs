//! Slow start (DestinationRule `warmup`, Envoy's `slow_start_config`): an endpoint that just
//! joined the cluster or came back from an ejection gets a share of its weight that grows over
//! the window, `weight × max(minimumPercent, time_factor^(1 / aggression))` with
//! `time_factor = max(age, 1 s) / window`.
//!
//! When an endpoint counts from lives in its [`EndpointState`](crate::EndpointState), outside the
//! snapshot, so a config reload does not restart anyone's warm-up.

use std::time::{Duration, Instant};

use crate::endpoint::LbEndpoint;
use crate::random::Rng;

/// Slow-start settings of one cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    /// The warm-up window (`warmup.duration`, or `warmupDurationSecs`).
    pub window: Duration,
    /// The smallest share of the weight, 0–1 (`minimumPercent` / 100, default 0.1).
    pub min_weight: f64,
    /// The curve: 1 is linear, above 1 ramps up faster at first (`aggression`, default 1).
    pub aggression: f64,
}

impl SlowStart {
    /// Settings with Istio's defaults (10 %, aggression 1.0) for `window`.
    pub fn new(window: Duration) -> Self {
        SlowStart {
            window,
            min_weight: 0.1,
            aggression: 1.0,
        }
    }

    /// The share of its weight an endpoint serving since `since` gets at `now`: `None` once it
    /// is out of the window (full weight).
    pub fn factor(&self, since: Instant, now: Instant) -> Option<f64> {
        let age = now.saturating_duration_since(since);
        if self.window.is_zero() || age >= self.window {
            return None;
        }
        let time_factor = age.max(Duration::from_secs(1)).as_secs_f64() / self.window.as_secs_f64();
        let aggression = if self.aggression > 0.0 {
            self.aggression
        } else {
            1.0
        };
        Some(
            time_factor
                .powf(1.0 / aggression)
                .max(self.min_weight)
                .min(1.0),
        )
    }

    /// The effective weight of `e` at `now`.
    pub fn weight(&self, e: &LbEndpoint, now: Instant) -> f64 {
        let w = f64::from(e.weight);
        match self.factor(e.state.serving_since(now), now) {
            Some(f) => w * f,
            None => w,
        }
    }

    /// Whether some endpoint of `endpoints` is still warming up at `now`.
    pub fn any_warming(&self, endpoints: &[LbEndpoint], now: Instant) -> bool {
        endpoints
            .iter()
            .any(|e| e.weight > 0 && self.factor(e.state.serving_since(now), now).is_some())
    }
}

/// A weighted draw by effective weights among the endpoints `allowed` admits (two walks, no
/// allocation); `None` if none has weight.
pub(crate) fn draw(
    ss: &SlowStart,
    endpoints: &[LbEndpoint],
    now: Instant,
    rng: &mut Rng,
    allowed: impl Fn(usize) -> bool,
) -> Option<usize> {
    let weight = |i: usize, e: &LbEndpoint| {
        if allowed(i) {
            ss.weight(e, now)
        } else {
            0.0
        }
    };
    let total: f64 = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| weight(i, e))
        .sum();
    if total <= 0.0 {
        return None;
    }
    // 53 random bits give a uniform f64 in [0, 1).
    let mut roll = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
    let mut last = None;
    for (i, e) in endpoints.iter().enumerate() {
        let w = weight(i, e);
        if w <= 0.0 {
            continue;
        }
        if roll < w {
            return Some(i);
        }
        roll -= w;
        last = Some(i);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::EndpointState;
    use std::sync::Arc;

    #[test]
    fn factor_follows_envoys_curve() {
        let ss = SlowStart {
            window: Duration::from_secs(100),
            min_weight: 0.1,
            aggression: 1.0,
        };
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        // Below one second the age counts as one second; the floor is 10 %.
        assert_eq!(ss.factor(t0, t0), Some(0.1));
        assert_eq!(ss.factor(t0, at(50)), Some(0.5));
        assert_eq!(ss.factor(t0, at(100)), None);
        let fast = SlowStart {
            aggression: 2.0,
            ..ss
        };
        let f = fast.factor(t0, at(25)).unwrap();
        assert!((f - 0.5).abs() < 1e-9, "{f}");
        let floor = SlowStart {
            min_weight: 0.6,
            ..ss
        };
        assert_eq!(floor.factor(t0, at(50)), Some(0.6));
    }

    #[test]
    fn draws_follow_effective_weights() {
        let t0 = Instant::now();
        let old = Arc::new(EndpointState::new_at("a:80", t0));
        let new = Arc::new(EndpointState::new_at("b:80", t0 + Duration::from_secs(100)));
        let endpoints = vec![LbEndpoint::new(1, old), LbEndpoint::new(1, new)];
        let ss = SlowStart::new(Duration::from_secs(100));
        let now = t0 + Duration::from_secs(125);
        assert!(ss.any_warming(&endpoints, now));
        let mut rng = Rng::new(7);
        let n = 20_000;
        let to_new = (0..n)
            .filter(|_| draw(&ss, &endpoints, now, &mut rng, |_| true) == Some(1))
            .count();
        // Weights 1 and 0.25: a fifth of the draws.
        let share = to_new as f64 / n as f64;
        assert!((share - 0.2).abs() < 0.015, "{share}");
        assert!(!ss.any_warming(&endpoints, t0 + Duration::from_secs(200)));
        assert_eq!(draw(&ss, &endpoints, now, &mut rng, |i| i == 1), Some(1));
        assert_eq!(draw(&ss, &endpoints, now, &mut rng, |_| false), None);
    }
}
