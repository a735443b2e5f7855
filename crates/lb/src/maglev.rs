//! MAGLEV: the lookup table of Google's Maglev paper (Eisenbud et al., NSDI 2016), weighted as
//! in Envoy.
//!
//! Every endpoint walks its own permutation of the `M` slots (`offset = h0 % M`,
//! `skip = h1 % (M − 1) + 1`, with `h0`, `h1` = xxHash64 of its address with seeds 0 and 1) and
//! the endpoints take turns claiming their next free slot until the table is full; an endpoint
//! of weight `w` gets a turn in `w / w_max` of the rounds. A key goes to `table[hash % M]`.
//! `M` must be prime (so every skip visits every slot); Istio's default is 65537.

use crate::hash::hash_with_seed;

/// Istio's default `maglev.tableSize`.
pub const DEFAULT_TABLE_SIZE: u64 = 65537;
/// Istio rejects table sizes at or above this.
pub const MAX_TABLE_SIZE: u64 = 5_000_011;

const EMPTY: u32 = u32::MAX;

/// An immutable Maglev lookup table over endpoint indices.
#[derive(Debug, Clone, Default)]
pub struct Maglev {
    table: Vec<u32>,
}

struct Builder {
    index: u32,
    weight: u64,
    skip: u64,
    position: u64,
    /// Envoy's `target_weight`: the entry takes a turn when `round × weight ≥ target`.
    target: u128,
}

impl Maglev {
    /// Builds the table for `(address, weight)` pairs (indices are positions in that list;
    /// zero weights get no slot). `table_size` is raised to the next prime if it is not one and
    /// kept within `3..=5_000_011`. The table depends on the set, not the order, of endpoints.
    pub fn new(endpoints: &[(&str, u32)], table_size: u64) -> Self {
        let m = next_prime(table_size.clamp(3, MAX_TABLE_SIZE));
        let mut order: Vec<usize> = (0..endpoints.len())
            .filter(|&i| endpoints[i].1 > 0)
            .collect();
        order.sort_by(|&a, &b| endpoints[a].0.cmp(endpoints[b].0).then(a.cmp(&b)));
        let Some(w_max) = order.iter().map(|&i| u64::from(endpoints[i].1)).max() else {
            return Maglev::default();
        };
        let mut builders: Vec<Builder> = order
            .iter()
            .map(|&i| {
                let name = endpoints[i].0.as_bytes();
                Builder {
                    index: i as u32,
                    weight: u64::from(endpoints[i].1),
                    skip: hash_with_seed(name, 1) % (m - 1) + 1,
                    position: hash_with_seed(name, 0) % m,
                    target: 0,
                }
            })
            .collect();
        let mut table = vec![EMPTY; m as usize];
        let mut filled = 0u64;
        let mut round: u128 = 0;
        while filled < m {
            round += 1;
            for b in builders.iter_mut() {
                if filled == m {
                    break;
                }
                if round * u128::from(b.weight) < b.target {
                    continue;
                }
                b.target += u128::from(w_max);
                // Walk this endpoint's permutation to its next free slot.
                while table[b.position as usize] != EMPTY {
                    b.position = (b.position + b.skip) % m;
                }
                table[b.position as usize] = b.index;
                b.position = (b.position + b.skip) % m;
                filled += 1;
            }
        }
        Maglev { table }
    }

    /// The table size `M` (0 when no endpoint has weight).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no endpoint has weight.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// How many slots endpoint `index` owns.
    pub fn slots_of(&self, index: usize) -> usize {
        self.table.iter().filter(|&&o| o as usize == index).count()
    }

    /// The endpoint at `table[hash % M]`.
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        self.lookup_where(hash, None)
    }

    /// Like [`Self::lookup`], but endpoints masked out by `allowed` are passed over by probing
    /// the following slots (which belong to well-mixed endpoints, so their keys spread evenly).
    pub fn lookup_where(&self, hash: u64, allowed: Option<&[bool]>) -> Option<usize> {
        let m = self.table.len();
        if m == 0 {
            return None;
        }
        let start = (hash % m as u64) as usize;
        (0..m)
            .map(|k| self.table[(start + k) % m] as usize)
            .find(|&i| allowed.is_none_or(|mask| mask.get(i).copied().unwrap_or(false)))
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The smallest prime ≥ `n`.
fn next_prime(mut n: u64) -> u64 {
    while !is_prime(n) {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_key;

    #[test]
    fn table_is_full_and_sizes_are_prime() {
        let t = Maglev::new(&[("a:1", 1), ("b:1", 1), ("c:1", 1)], DEFAULT_TABLE_SIZE);
        assert_eq!(t.len(), 65537);
        assert!(t.table.iter().all(|&o| o < 3));
        assert_eq!(Maglev::new(&[("a:1", 1)], 1000).len(), 1009);
        assert_eq!(Maglev::new(&[("a:1", 1)], 0).len(), 3);
        assert!(Maglev::new(&[("a:1", 0)], 7).is_empty());
        assert_eq!(Maglev::new(&[], 7).lookup(1), None);
        assert!(is_prime(65537) && is_prime(5_000_011) && !is_prime(65535));
    }

    #[test]
    fn equal_weights_get_nearly_equal_slots() {
        let names: Vec<String> = (0..7).map(|i| format!("10.2.0.{i}:80")).collect();
        let eps: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        let t = Maglev::new(&eps, 65537);
        for i in 0..7 {
            let share = t.slots_of(i) as f64 / 65537.0;
            assert!((share - 1.0 / 7.0).abs() < 0.001, "{i}: {share}");
        }
    }

    #[test]
    fn order_of_endpoints_does_not_change_the_mapping_and_mask_skips() {
        let a = Maglev::new(&[("a:1", 1), ("b:1", 2), ("c:1", 1)], 1009);
        let b = Maglev::new(&[("c:1", 1), ("a:1", 1), ("b:1", 2)], 1009);
        let map_b = [2, 0, 1]; // index in b → index in a
        for key in 0..2000u64 {
            let h = hash_key(&key.to_le_bytes());
            assert_eq!(a.lookup(h), b.lookup(h).map(|i| map_b[i]));
            assert_ne!(a.lookup_where(h, Some(&[true, false, true])), Some(1));
        }
        assert_eq!(a.lookup_where(3, Some(&[false; 3])), None);
    }
}
