//! Weighted random choice and the small generator that expands one injected seed.
//!
//! The crate never reads an entropy source on its own: every pick gets one `u64` from the
//! caller ([`PickContext::random`](crate::PickContext::random)) and [`Rng`] stretches it into as
//! many draws as the algorithm needs, so tests are reproducible.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// SplitMix64: a tiny, well-mixed generator seeded by the caller's random value.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`0` when `n` is 0), by Lemire's multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// A fresh random seed from the standard library's per-process random keys (no extra
/// dependency). Callers that already have a generator (e.g. `rand::random()`) can use that instead.
pub fn fresh_seed() -> u64 {
    // Every `RandomState::new()` on a thread uses new keys, so hashing nothing differs each call.
    RandomState::new().hash_one(())
}

/// Weighted random choice among indices, with prefix sums built once (zero weights never win).
#[derive(Debug, Clone)]
pub struct WeightedRandom {
    weights: Vec<u32>,
    /// `cumulative[i]` = sum of `weights[..=i]`.
    cumulative: Vec<u64>,
    /// All weights equal and non-zero: a pick is one modulo.
    uniform: bool,
}

impl WeightedRandom {
    /// Prepares choices over `weights` (index `i` is chosen with probability `w[i] / sum(w)`).
    pub fn new(weights: &[u32]) -> Self {
        let mut sum = 0u64;
        let cumulative = weights
            .iter()
            .map(|&w| {
                sum += u64::from(w);
                sum
            })
            .collect();
        let uniform = weights
            .first()
            .is_some_and(|&w0| w0 > 0 && weights.iter().all(|&w| w == w0));
        WeightedRandom {
            weights: weights.to_vec(),
            cumulative,
            uniform,
        }
    }

    /// Number of indices (including zero-weight ones).
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether there is no index at all.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Sum of all weights.
    pub fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The weight of index `i` (0 if out of range).
    pub fn weight(&self, i: usize) -> u32 {
        self.weights.get(i).copied().unwrap_or(0)
    }

    /// Whether every weight is the same non-zero value.
    pub fn is_uniform(&self) -> bool {
        self.uniform
    }

    /// A weighted choice among all indices; `None` when every weight is zero. O(log n).
    pub fn pick(&self, rng: &mut Rng) -> Option<usize> {
        if self.uniform {
            return Some(rng.below(self.weights.len() as u64) as usize);
        }
        let total = self.total();
        if total == 0 {
            return None;
        }
        let target = rng.below(total);
        // First index whose cumulative sum exceeds the target.
        Some(self.cumulative.partition_point(|&c| c <= target))
    }

    /// A weighted choice among all indices except `other` (used for a second, distinct
    /// candidate); `None` if no other index has weight.
    pub fn pick_other(&self, rng: &mut Rng, other: usize) -> Option<usize> {
        let n = self.weights.len() as u64;
        if self.uniform && other < self.weights.len() {
            if n < 2 {
                return None;
            }
            let k = rng.below(n - 1) as usize;
            return Some(if k >= other { k + 1 } else { k });
        }
        // Rejection first (cheap when `other` is not dominant), then an exact O(n) walk.
        for _ in 0..4 {
            match self.pick(rng) {
                Some(i) if i != other => return Some(i),
                None => return None,
                _ => {}
            }
        }
        self.pick_where(rng, |i| i != other)
    }

    /// A weighted choice among the indices for which `allowed` holds; `None` if their weights
    /// are all zero. O(n).
    pub fn pick_where(&self, rng: &mut Rng, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        let total: u64 = (0..self.weights.len())
            .filter(|&i| allowed(i))
            .map(|i| u64::from(self.weights[i]))
            .sum();
        if total == 0 {
            return None;
        }
        let mut target = rng.below(total);
        for (i, &w) in self.weights.iter().enumerate() {
            if w == 0 || !allowed(i) {
                continue;
            }
            let w = u64::from(w);
            if target < w {
                return Some(i);
            }
            target -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(w: &WeightedRandom, draws: usize, f: impl Fn(&mut Rng) -> Option<usize>) -> Vec<f64> {
        let mut rng = Rng::new(42);
        let mut counts = vec![0usize; w.len()];
        for _ in 0..draws {
            counts[f(&mut rng).unwrap()] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn picks_are_proportional_to_weights() {
        let w = WeightedRandom::new(&[1, 0, 3, 6]);
        let s = shares(&w, 100_000, |r| w.pick(r));
        for (got, want) in s.iter().zip([0.1, 0.0, 0.3, 0.6]) {
            assert!((got - want).abs() < 0.01, "{s:?}");
        }
        let s = shares(&w, 100_000, |r| w.pick_where(r, |i| i != 3));
        for (got, want) in s.iter().zip([0.25, 0.0, 0.75, 0.0]) {
            assert!((got - want).abs() < 0.01, "{s:?}");
        }
    }

    #[test]
    fn uniform_weights_and_empty_sets() {
        let w = WeightedRandom::new(&[5, 5, 5, 5]);
        assert!(w.is_uniform());
        let s = shares(&w, 40_000, |r| w.pick(r));
        assert!(s.iter().all(|&x| (x - 0.25).abs() < 0.01), "{s:?}");
        let mut rng = Rng::new(1);
        assert_eq!(WeightedRandom::new(&[0, 0]).pick(&mut rng), None);
        assert_eq!(WeightedRandom::new(&[]).pick(&mut rng), None);
        assert_eq!(w.pick_where(&mut rng, |_| false), None);
    }

    #[test]
    fn seeds_are_reproducible_and_fresh_seeds_differ() {
        let a: Vec<u64> = (0..4)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(fresh_seed(), fresh_seed());
        assert_eq!(Rng::new(3).below(0), 0);
    }
}
