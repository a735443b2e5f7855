//! Deterministic weighted schedules: exact traffic splits and weighted round robin.
//!
//! Envoy draws a random number per request, so a 90/10 split is only 90/10 on average. A smooth
//! weighted round-robin sequence, advanced by one shared atomic counter, makes every window of
//! `sum(weights)` consecutive picks exact and spreads the minority evenly inside it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Largest schedule kept in memory; larger weight sums are scaled down to this precision.
const MAX_SLOTS: u64 = 10_000;

/// An immutable interleaved sequence of indices plus a shared position counter.
#[derive(Debug, Clone)]
pub struct WeightedSchedule {
    slots: Arc<[u32]>,
    counter: Arc<AtomicU64>,
}

impl WeightedSchedule {
    /// Builds the schedule for `weights` (zero weights never get picked; all zero → empty).
    pub fn new(weights: &[u32], counter: Arc<AtomicU64>) -> Self {
        WeightedSchedule {
            slots: smooth_sequence(weights).into(),
            counter,
        }
    }

    /// The next index, or `None` when every weight is zero.
    pub fn next(&self) -> Option<usize> {
        let n = self.slots.len() as u64;
        if n == 0 {
            return None;
        }
        let i = self.counter.fetch_add(1, Ordering::Relaxed) % n;
        self.slots.get(i as usize).map(|&s| s as usize)
    }

    /// The index at an arbitrary position (used to derive a sticky pick from a hash).
    pub fn at(&self, position: u64) -> Option<usize> {
        let n = self.slots.len() as u64;
        if n == 0 {
            return None;
        }
        self.slots.get((position % n) as usize).map(|&s| s as usize)
    }

    /// Length of one full cycle.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing can be picked.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// nginx's smooth weighted round robin, unrolled into one full cycle.
fn smooth_sequence(weights: &[u32]) -> Vec<u32> {
    let mut w: Vec<u64> = weights.iter().map(|&w| u64::from(w)).collect();
    let g = w.iter().copied().filter(|&x| x > 0).fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    w.iter_mut().for_each(|x| *x /= g);
    let total: u64 = w.iter().sum();
    if total > MAX_SLOTS {
        for x in w.iter_mut().filter(|x| **x > 0) {
            *x = ((*x * MAX_SLOTS) / total).max(1);
        }
    }
    let total: u64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total as i64;
        out.push(best as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(weights: &[u32]) -> WeightedSchedule {
        WeightedSchedule::new(weights, Arc::new(AtomicU64::new(0)))
    }

    #[test]
    fn ninety_ten_is_exact_in_every_window_of_100() {
        let s = schedule(&[90, 10]);
        let picks: Vec<usize> = (0..1000).map(|_| s.next().unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 100);
        for start in 0..=900 {
            let v2 = picks[start..start + 100]
                .iter()
                .filter(|&&p| p == 1)
                .count();
            assert_eq!(v2, 10, "window at {start}");
        }
    }

    #[test]
    fn uneven_weights_stay_within_one_per_window() {
        let s = schedule(&[33, 67]);
        let picks: Vec<usize> = (0..1000).map(|_| s.next().unwrap()).collect();
        for start in 0..=900 {
            let a = picks[start..start + 100]
                .iter()
                .filter(|&&p| p == 0)
                .count() as i64;
            assert!((a - 33).abs() <= 1, "window at {start}: {a}");
        }
    }

    #[test]
    fn zero_weights_and_scaling() {
        let s = schedule(&[0, 5]);
        assert!((0..10).all(|_| s.next() == Some(1)));
        assert!(schedule(&[0, 0]).next().is_none());
        let big = schedule(&[70001, 29999]);
        assert!(big.len() <= MAX_SLOTS as usize);
        let ones = (0..big.len()).filter(|_| big.next() == Some(1)).count();
        assert!((ones as f64 / big.len() as f64 - 0.29999).abs() < 0.001);
    }
}
