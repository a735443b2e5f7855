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
    /// Running sums of the weights (sticky picks), one per index.
    cumulative: Arc<[u64]>,
    counter: Arc<AtomicU64>,
}

impl WeightedSchedule {
    /// Builds the schedule for `weights` (zero weights never get picked; all zero → empty).
    pub fn new(weights: &[u32], counter: Arc<AtomicU64>) -> Self {
        let cumulative = weights
            .iter()
            .scan(0u64, |sum, &w| {
                *sum += u64::from(w);
                Some(*sum)
            })
            .collect();
        WeightedSchedule {
            slots: smooth_sequence(weights).into(),
            cumulative,
            counter,
        }
    }

    /// The same schedule advanced by `counter`: schedules of equal weights share their tables.
    pub fn with_counter(&self, counter: Arc<AtomicU64>) -> Self {
        WeightedSchedule {
            slots: Arc::clone(&self.slots),
            cumulative: Arc::clone(&self.cumulative),
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

    /// The sticky index of a hash key. The key is a point on the line of all weights laid end
    /// to end, so when weights change only the keys inside the moved stretch change index: as
    /// a canary's weight grows, users move from stable to canary only, never back, and every
    /// user keeps the version it had while the weights stay.
    pub fn at(&self, hash: u64) -> Option<usize> {
        let total = *self.cumulative.last()?;
        if total == 0 {
            return None;
        }
        // Multiply-shift maps the (remixed) key uniformly onto 0..total.
        let point = ((u128::from(mix(hash)) * u128::from(total)) >> 64) as u64;
        let i = self.cumulative.partition_point(|&end| end <= point);
        (i < self.cumulative.len()).then_some(i)
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

/// splitmix64's finalizer: the endpoint hash (ring hash, Maglev) also reads the key, so the
/// version choice reads a remixed copy and the two choices stay independent.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
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
    fn with_counter_shares_the_tables_and_keeps_its_own_position() {
        let a = schedule(&[90, 10]);
        let b = a.with_counter(Arc::new(AtomicU64::new(0)));
        assert!(Arc::ptr_eq(&a.slots, &b.slots));
        let first: Vec<usize> = (0..100).map(|_| a.next().unwrap()).collect();
        let second: Vec<usize> = (0..100).map(|_| b.next().unwrap()).collect();
        assert_eq!(first, second);
        assert_eq!(a.at(7), b.at(7));
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

    /// Users keyed by hash over a canary's steps 90/10 → 80/20 → 50/50 → 0/100 and back: each
    /// step only moves users towards the side whose weight grew, and the shares follow the
    /// weights.
    #[test]
    fn sticky_picks_move_one_way_per_weight_step() {
        let users: Vec<u64> = (0..3000u64)
            .map(|u| u.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let picks = |w: &[u32]| -> Vec<usize> {
            users.iter().map(|&h| schedule(w).at(h).unwrap()).collect()
        };
        let steps: [&[u32]; 7] = [
            &[90, 10],
            &[80, 20],
            &[50, 50],
            &[0, 100],
            &[50, 50],
            &[80, 20],
            &[90, 10],
        ];
        let mut before = picks(steps[0]);
        for pair in steps.windows(2) {
            let (old, new) = (pair[0], pair[1]);
            let after = picks(new);
            let canary_grew = new[1] > old[1];
            for (b, a) in before.iter().zip(&after) {
                if b != a {
                    // Only stable → canary while the canary grows, only back while it shrinks.
                    assert_eq!(
                        (*b, *a),
                        if canary_grew { (0, 1) } else { (1, 0) },
                        "{old:?} → {new:?}"
                    );
                }
            }
            let canary = after.iter().filter(|&&p| p == 1).count() as f64 / users.len() as f64;
            let want = f64::from(new[1]) / f64::from(new[0] + new[1]);
            assert!(
                (canary - want).abs() < 0.03,
                "{new:?}: canary share {canary}"
            );
            before = after;
        }
        // Back at 90/10, everyone is where they started.
        assert_eq!(before, picks(steps[0]));
        assert_eq!(schedule(&[0, 0]).at(7), None);
        assert_eq!(schedule(&[0, 3]).at(u64::MAX), Some(1));
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
