//! RING_HASH: a Ketama-style consistent-hash ring (Istio's default `consistentHash` algorithm).
//!
//! Each endpoint with weight `w` gets about `w / w_min × per_unit` points on a 64-bit ring,
//! placed at `xxHash64("<address>_<i>")` for `i = 0, 1, …` (Envoy's point names). A key goes to
//! the first point at or after its hash, wrapping around. Built once, immutable, O(log n) lookup.
//!
//! How many points: Envoy gives every unit of weight `ceil(minimum_ring_size / units)` points,
//! which keeps the ring at its minimum size but changes every endpoint's point count whenever
//! an endpoint joins or leaves, moving roughly another 1/N of the keys each time. Here a unit of
//! weight gets at least [`STABLE_POINTS_PER_UNIT`] points (or `minimum_ring_size`, if smaller) and
//! more only when the ring would otherwise be below `minimum_ring_size`. So once a cluster has
//! `minimum_ring_size / 256` units of weight (4 equal endpoints at the default 1024), adding an
//! endpoint moves only the keys it takes over and removing one moves only the keys it had.
//! The ring never exceeds [`MAX_RING_SIZE`] (then points are scaled down, at least one each).

use crate::hash::hash_key;

/// Istio's default `minimumRingSize`.
pub const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;
/// Envoy's default `maximum_ring_size` (8 Mi points).
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Points per unit of weight that do not depend on the other endpoints (Ketama uses 160).
pub const STABLE_POINTS_PER_UNIT: u64 = 256;

/// An immutable hash ring over endpoint indices.
#[derive(Debug, Clone, Default)]
pub struct RingHash {
    /// Sorted point positions.
    hashes: Vec<u64>,
    /// `owners[k]` is the endpoint index owning `hashes[k]`.
    owners: Vec<u32>,
}

impl RingHash {
    /// Builds the ring for `(address, weight)` pairs; the result's indices are positions in
    /// that list. Zero weights get no points. The ring depends only on the set of addresses and
    /// weights, not on their order.
    pub fn new(endpoints: &[(&str, u32)], minimum_ring_size: u64) -> Self {
        let counts = point_counts(endpoints, minimum_ring_size);
        let total: usize = counts.iter().sum();
        let mut points: Vec<(u64, u32)> = Vec::with_capacity(total);
        let mut name = String::new();
        for (idx, ((address, _), &count)) in endpoints.iter().zip(&counts).enumerate() {
            for i in 0..count {
                name.clear();
                name.push_str(address);
                name.push('_');
                name.push_str(&i.to_string());
                points.push((hash_key(name.as_bytes()), idx as u32));
            }
        }
        // Ties (practically never) are broken by address, so the ring is order-independent.
        points.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                let name = |k: u32| endpoints.get(k as usize).map(|e| e.0);
                name(a.1).cmp(&name(b.1)).then(a.1.cmp(&b.1))
            })
        });
        RingHash {
            hashes: points.iter().map(|p| p.0).collect(),
            owners: points.iter().map(|p| p.1).collect(),
        }
    }

    /// Number of points on the ring.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the ring has no point (no endpoint with weight).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// How many points endpoint `index` owns.
    pub fn points_of(&self, index: usize) -> usize {
        self.owners.iter().filter(|&&o| o as usize == index).count()
    }

    /// The endpoint owning the first point at or after `hash` (wrapping around).
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        self.lookup_where(hash, None)
    }

    /// Like [`Self::lookup`], but walks on past points of endpoints that `allowed` masks out, so
    /// their keys spread over their ring neighbours exactly as if they had been removed.
    pub fn lookup_where(&self, hash: u64, allowed: Option<&[bool]>) -> Option<usize> {
        let n = self.hashes.len();
        if n == 0 {
            return None;
        }
        let start = self.hashes.partition_point(|&h| h < hash) % n;
        (0..n)
            .map(|k| self.owners[(start + k) % n] as usize)
            .find(|&i| allowed.is_none_or(|m| m.get(i).copied().unwrap_or(false)))
    }
}

/// Points per endpoint: see the module documentation.
fn point_counts(endpoints: &[(&str, u32)], minimum_ring_size: u64) -> Vec<usize> {
    let Some(w_min) = endpoints.iter().map(|e| e.1).filter(|&w| w > 0).min() else {
        return vec![0; endpoints.len()];
    };
    let units: Vec<f64> = endpoints
        .iter()
        .map(|e| f64::from(e.1) / f64::from(w_min))
        .collect();
    let total_units: f64 = units.iter().sum();
    let minimum = minimum_ring_size.clamp(1, MAX_RING_SIZE) as f64;
    let stable = STABLE_POINTS_PER_UNIT.min(minimum_ring_size.max(1)) as f64;
    let mut per_unit = (minimum / total_units).ceil().max(stable);
    if per_unit * total_units > MAX_RING_SIZE as f64 {
        per_unit = MAX_RING_SIZE as f64 / total_units;
    }
    units
        .iter()
        .map(|&u| {
            if u == 0.0 {
                0
            } else {
                ((u * per_unit).round() as usize).max(1)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(weights: &[u32], min: u64) -> (Vec<String>, RingHash) {
        let names: Vec<String> = (0..weights.len())
            .map(|i| format!("10.1.0.{i}:8080"))
            .collect();
        let eps: Vec<(&str, u32)> = names
            .iter()
            .map(String::as_str)
            .zip(weights.iter().copied())
            .collect();
        let r = RingHash::new(&eps, min);
        (names, r)
    }

    #[test]
    fn ring_size_respects_the_minimum_and_the_stable_floor() {
        assert_eq!(ring(&[1, 1], 1024).1.len(), 1024);
        assert_eq!(ring(&[1, 1, 1], 1024).1.len(), 3 * 342);
        assert_eq!(ring(&[1; 8], 1024).1.len(), 8 * 256);
        assert_eq!(ring(&[1; 4], 16).1.len(), 4 * 16);
        assert_eq!(ring(&[1; 4], 100_000).1.len(), 100_000);
        let (_, r) = ring(&[2, 0, 6], 1024);
        assert_eq!(
            (r.points_of(0), r.points_of(1), r.points_of(2)),
            (256, 0, 768)
        );
        assert!(ring(&[0, 0], 1024).1.lookup(5).is_none());
        assert!(ring(&[], 1024).1.is_empty());
    }

    #[test]
    fn lookup_takes_the_first_point_at_or_after_the_hash_and_wraps() {
        let (_, r) = ring(&[1, 1, 1], 1024);
        let k = 100;
        let h = r.hashes[k];
        assert_eq!(r.lookup(h), Some(r.owners[k] as usize));
        assert_eq!(r.lookup(h - 1), Some(r.owners[k] as usize));
        assert_eq!(r.lookup(h + 1), Some(r.owners[k + 1] as usize));
        let last = *r.hashes.last().unwrap();
        assert_eq!(r.lookup(last.wrapping_add(1)), Some(r.owners[0] as usize));
    }

    #[test]
    fn order_of_endpoints_does_not_change_the_mapping() {
        let a = RingHash::new(&[("a:1", 1), ("b:1", 2), ("c:1", 1)], 1024);
        let b = RingHash::new(&[("c:1", 1), ("a:1", 1), ("b:1", 2)], 1024);
        let map_b = [2, 0, 1]; // index in b → index in a
        for key in 0..2000u64 {
            let h = hash_key(&key.to_le_bytes());
            assert_eq!(a.lookup(h), b.lookup(h).map(|i| map_b[i]));
        }
    }

    #[test]
    fn masked_endpoints_behave_as_removed() {
        let (names, full) = ring(&[1; 6], 1024);
        let fewer: Vec<(&str, u32)> = names.iter().take(5).map(|n| (n.as_str(), 1)).collect();
        let removed = RingHash::new(&fewer, 1024);
        let mask = [true, true, true, true, true, false];
        for key in 0..5000u64 {
            let h = hash_key(key.to_string().as_bytes());
            assert_eq!(full.lookup_where(h, Some(&mask)), removed.lookup(h));
        }
        assert_eq!(full.lookup_where(7, Some(&[false; 6])), None);
    }
}
