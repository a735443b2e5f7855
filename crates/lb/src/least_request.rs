//! LEAST_REQUEST (Istio's default): power of two choices on in-flight requests.
//!
//! Two distinct candidates are drawn at random (in proportion to their weights) and the one
//! with fewer requests in flight wins; on a tie the first draw wins. Envoy draws two hosts
//! uniformly when all weights are equal and switches to an EDF schedule over
//! `weight / (active + 1)` otherwise; weighted draws followed by the same comparison give the
//! same preference for idle hosts with one code path. In-flight counts live in
//! [`EndpointState`](crate::EndpointState), outside the snapshot.

use crate::random::{Rng, WeightedRandom};

/// The power-of-two-choices picker over a fixed list of weights.
#[derive(Debug, Clone)]
pub struct LeastRequest {
    weights: WeightedRandom,
}

impl LeastRequest {
    /// A picker for endpoints with these weights (0 is never picked).
    pub fn new(weights: &[u32]) -> Self {
        LeastRequest {
            weights: WeightedRandom::new(weights),
        }
    }

    /// Picks an index; `allowed` (when given) masks out endpoints that may not be chosen, and
    /// `in_flight(i)` reads endpoint `i`'s outstanding requests. `None` if nothing has weight.
    pub fn pick(
        &self,
        rng: &mut Rng,
        allowed: Option<&[bool]>,
        in_flight: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        let (first, second) = match allowed {
            None => {
                let first = self.weights.pick(rng)?;
                (first, self.weights.pick_other(rng, first))
            }
            Some(mask) => {
                let ok = |i: usize| mask.get(i).copied().unwrap_or(false);
                let first = self.weights.pick_where(rng, ok)?;
                (first, self.weights.pick_where(rng, |i| i != first && ok(i)))
            }
        };
        match second {
            Some(second) if in_flight(second) < in_flight(first) => Some(second),
            _ => Some(first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_the_less_loaded_of_two() {
        let lr = LeastRequest::new(&[1, 1]);
        let load = [10u64, 0];
        let mut rng = Rng::new(1);
        // With two endpoints both are always candidates, so the idle one always wins.
        assert!((0..100).all(|_| lr.pick(&mut rng, None, |i| load[i]) == Some(1)));
    }

    #[test]
    fn never_picks_the_busiest_of_many_and_spreads_when_idle() {
        let lr = LeastRequest::new(&[1; 8]);
        let load = [0, 0, 0, 0, 0, 0, 0, 100];
        let mut rng = Rng::new(9);
        let mut counts = [0usize; 8];
        for _ in 0..8000 {
            counts[lr.pick(&mut rng, None, |i| load[i]).unwrap()] += 1;
        }
        assert_eq!(counts[7], 0);
        assert!(counts[..7].iter().all(|&c| c > 900), "{counts:?}");
    }

    #[test]
    fn ties_go_to_the_first_draw_so_weights_hold_when_idle() {
        let lr = LeastRequest::new(&[1, 3]);
        let mut rng = Rng::new(3);
        let ones = (0..40_000)
            .filter(|_| lr.pick(&mut rng, None, |_| 0) == Some(1))
            .count();
        assert!((ones as f64 / 40_000.0 - 0.75).abs() < 0.01, "{ones}");
    }

    #[test]
    fn honours_the_mask() {
        let lr = LeastRequest::new(&[1, 1, 1]);
        let mut rng = Rng::new(5);
        let mask = [true, false, true];
        let load = [5u64, 0, 7];
        assert!((0..100).all(|_| lr.pick(&mut rng, Some(&mask), |i| load[i]) == Some(0)));
        assert_eq!(
            lr.pick(&mut rng, Some(&[false, true, false]), |_| 0),
            Some(1)
        );
        assert_eq!(lr.pick(&mut rng, Some(&[false; 3]), |_| 0), None);
        assert_eq!(LeastRequest::new(&[4]).pick(&mut rng, None, |_| 0), Some(0));
    }
}
