//! Which endpoints a pick may choose from: outlier ejections, panic mode and the retry
//! exclusion list, in Envoy's order.

use std::time::Instant;

use crate::detector::OutlierDetector;
use crate::endpoint::LbEndpoint;

/// The endpoints one pick may choose from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidates {
    /// No endpoint is available (no weight, or all ejected without panic): 503 `UH`.
    None,
    /// Every endpoint may be chosen (the common case; nothing is allocated).
    All,
    /// Only the endpoints whose entry is `true`.
    Only(Vec<bool>),
}

impl Candidates {
    /// The mask the algorithms take (`None` = all allowed).
    pub fn mask(&self) -> Option<&[bool]> {
        match self {
            Candidates::Only(m) => Some(m),
            _ => None,
        }
    }
}

/// Works out the candidates for one pick:
/// 1. endpoints with weight 0 never count;
/// 2. with outlier detection, ejected endpoints are left out, unless fewer than
///    `min_health_percent` are healthy (panic mode: all are used); none healthy and no panic
///    gives [`Candidates::None`];
/// 3. endpoints in `exclude` (hosts already tried by earlier attempts) are left out, unless that
///    leaves nothing, in which case they are used again (Envoy gives up on avoiding previous
///    hosts after `host_selection_retry_max_attempts`).
pub fn candidates(
    endpoints: &[LbEndpoint],
    outlier: Option<&OutlierDetector>,
    exclude: &[usize],
    now: Option<Instant>,
) -> Candidates {
    let total = endpoints.iter().filter(|e| e.weight > 0).count();
    if total == 0 {
        return Candidates::None;
    }
    let mut mask: Option<Vec<bool>> = None;
    if let Some(detector) = outlier {
        let now = now.unwrap_or_else(Instant::now);
        let mut healthy = total;
        for (i, e) in endpoints.iter().enumerate() {
            if e.weight > 0 && e.state.outlier().is_ejected(now) {
                mask.get_or_insert_with(|| vec![true; endpoints.len()])[i] = false;
                healthy -= 1;
            }
        }
        if detector.in_panic(healthy, total) {
            mask = None;
        } else if healthy == 0 {
            return Candidates::None;
        }
    }
    let in_range: Vec<usize> = exclude
        .iter()
        .copied()
        .filter(|&i| i < endpoints.len())
        .collect();
    if !in_range.is_empty() {
        let mut narrowed = mask.clone().unwrap_or_else(|| vec![true; endpoints.len()]);
        for i in in_range {
            narrowed[i] = false;
        }
        let any = narrowed
            .iter()
            .zip(endpoints)
            .any(|(&ok, e)| ok && e.weight > 0);
        if any {
            mask = Some(narrowed);
        }
    }
    match mask {
        Some(m) => Candidates::Only(m),
        None => Candidates::All,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::EndpointState;
    use crate::outlier::{EjectionReason, OutlierConfig};
    use std::sync::Arc;
    use std::time::Duration;

    fn endpoints(weights: &[u32]) -> Vec<LbEndpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| LbEndpoint::new(w, Arc::new(EndpointState::new(format!("e{i}:80")))))
            .collect()
    }

    fn eject(e: &LbEndpoint, cfg: &OutlierConfig, now: Instant) {
        e.state
            .outlier()
            .eject(now, cfg, EjectionReason::Consecutive5xx);
    }

    #[test]
    fn all_when_nothing_is_filtered() {
        let eps = endpoints(&[1, 1]);
        let d = OutlierDetector::new(OutlierConfig::default());
        assert_eq!(
            candidates(&eps, Some(&d), &[], Some(Instant::now())),
            Candidates::All
        );
        assert_eq!(
            candidates(&endpoints(&[0, 0]), None, &[], Some(Instant::now())),
            Candidates::None
        );
        assert_eq!(
            candidates(&[], None, &[], Some(Instant::now())),
            Candidates::None
        );
    }

    #[test]
    fn ejected_endpoints_are_left_out_until_their_time_is_up() {
        let eps = endpoints(&[1, 1, 1]);
        let cfg = OutlierConfig::default();
        let d = OutlierDetector::new(cfg);
        let t0 = Instant::now();
        eject(&eps[1], &cfg, t0);
        let c = candidates(&eps, Some(&d), &[], Some(t0));
        assert_eq!(c.mask(), Some(&[true, false, true][..]));
        assert_eq!(
            candidates(&eps, Some(&d), &[], Some(t0 + Duration::from_secs(30))),
            Candidates::All
        );
        // Without outlier detection configured, stale ejections are ignored.
        assert_eq!(candidates(&eps, None, &[], Some(t0)), Candidates::All);
    }

    #[test]
    fn all_ejected_means_no_host_unless_panic() {
        let eps = endpoints(&[1, 1]);
        let cfg = OutlierConfig::default();
        let t0 = Instant::now();
        eject(&eps[0], &cfg, t0);
        eject(&eps[1], &cfg, t0);
        let d = OutlierDetector::new(cfg);
        assert_eq!(candidates(&eps, Some(&d), &[], Some(t0)), Candidates::None);
        let panicky = OutlierDetector::new(OutlierConfig {
            min_health_percent: 50,
            ..cfg
        });
        assert_eq!(
            candidates(&eps, Some(&panicky), &[], Some(t0)),
            Candidates::All
        );
        // One of two healthy = 50 %, not below the threshold: no panic.
        let eps = endpoints(&[1, 1]);
        eject(&eps[0], &cfg, t0);
        assert_eq!(
            candidates(&eps, Some(&panicky), &[], Some(t0)).mask(),
            Some(&[false, true][..])
        );
    }

    #[test]
    fn excluded_hosts_are_avoided_but_used_when_nothing_else_is_left() {
        let eps = endpoints(&[1, 1, 0]);
        let cfg = OutlierConfig::default();
        let d = OutlierDetector::new(cfg);
        let t0 = Instant::now();
        assert_eq!(
            candidates(&eps, None, &[0], Some(t0)).mask(),
            Some(&[false, true, true][..])
        );
        // Only the zero-weight endpoint would remain: fall back to the excluded ones.
        assert_eq!(
            candidates(&eps, None, &[0, 1, 9], Some(t0)),
            Candidates::All
        );
        eject(&eps[1], &cfg, t0);
        assert_eq!(
            candidates(&eps, Some(&d), &[0], Some(t0)).mask(),
            Some(&[true, false, true][..])
        );
    }
}
