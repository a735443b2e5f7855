//! Consistent-hash properties of the ring hash and Maglev: minimal disruption when endpoints
//! join or leave, and shares proportional to weights. Deterministic: fixed names and keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_lb::{hash_key, Maglev, RingHash};

const KEYS: u64 = 10_000;

fn names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.{}.{}.7:8080", i / 200, i % 200))
        .collect()
}

fn keys() -> Vec<u64> {
    (0..KEYS)
        .map(|k| hash_key(format!("user-{k}").as_bytes()))
        .collect()
}

trait Table {
    fn build(endpoints: &[(&str, u32)]) -> Self;
    fn get(&self, hash: u64) -> Option<usize>;
}

impl Table for RingHash {
    fn build(endpoints: &[(&str, u32)]) -> Self {
        RingHash::new(endpoints, 1024)
    }
    fn get(&self, hash: u64) -> Option<usize> {
        self.lookup(hash)
    }
}

impl Table for Maglev {
    fn build(endpoints: &[(&str, u32)]) -> Self {
        Maglev::new(endpoints, 65537)
    }
    fn get(&self, hash: u64) -> Option<usize> {
        self.lookup(hash)
    }
}

/// Endpoint address per key for the first `n` names, all of weight 1.
fn assignment<'a, T: Table>(names: &'a [String], keys: &[u64]) -> Vec<&'a str> {
    let eps: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let t = T::build(&eps);
    keys.iter()
        .map(|&h| names[t.get(h).unwrap()].as_str())
        .collect()
}

struct Change {
    /// Keys whose endpoint changed.
    moved: usize,
    /// Of those, keys that moved although neither their old nor their new endpoint is the one
    /// that joined or left.
    collateral: usize,
}

fn compare(before: &[&str], after: &[&str], changed: &str) -> Change {
    let mut c = Change {
        moved: 0,
        collateral: 0,
    };
    for (b, a) in before.iter().zip(after) {
        if b != a {
            c.moved += 1;
            if *b != changed && *a != changed {
                c.collateral += 1;
            }
        }
    }
    c
}

fn check_add_and_remove<T: Table>(label: &str, max_collateral: impl Fn(usize) -> f64) {
    let keys = keys();
    let all = names(21);
    let mut previous = assignment::<T>(&all[..2], &keys);
    for n in 2..=20 {
        let next = assignment::<T>(&all[..n + 1], &keys);
        // Adding endpoint n to n endpoints: about 1/(n+1) of the keys move, to it.
        let add = compare(&previous, &next, &all[n]);
        let frac = add.moved as f64 / KEYS as f64;
        let ideal = 1.0 / (n + 1) as f64;
        assert!(
            (0.5 * ideal..=2.0 * ideal).contains(&frac),
            "{label}: adding to {n} moved {frac:.4}, ideal {ideal:.4}"
        );
        let coll = add.collateral as f64 / KEYS as f64;
        assert!(
            coll <= max_collateral(n + 1),
            "{label}: adding to {n}: collateral {coll:.4}"
        );
        // Removing it again is the same comparison the other way round.
        let remove = compare(&next, &previous, &all[n]);
        assert_eq!(remove.moved, add.moved);
        previous = next;
    }
}

#[test]
fn ring_hash_moves_only_the_keys_of_the_endpoint_that_joins_or_leaves() {
    // With at least 4 equal endpoints every endpoint keeps its 256 points, so nothing else moves;
    // below that the minimum ring size adds points to everyone (as in Envoy) and a few keys move
    // between the remaining endpoints too.
    check_add_and_remove::<RingHash>("ring", |n| if n > 4 { 0.0 } else { 1.0 / n as f64 });
}

#[test]
fn maglev_moves_few_keys_besides_those_of_the_endpoint_that_joins_or_leaves() {
    check_add_and_remove::<Maglev>("maglev", |n| 0.25 / n as f64);
}

#[test]
fn removing_one_of_many_moves_only_its_keys_on_the_ring() {
    let keys = keys();
    let all = names(12);
    let before = assignment::<RingHash>(&all, &keys);
    for gone in 0..all.len() {
        let rest: Vec<String> = all.iter().filter(|n| **n != all[gone]).cloned().collect();
        let after = assignment::<RingHash>(&rest, &keys);
        let change = compare(&before, &after, &all[gone]);
        assert_eq!(change.collateral, 0, "removing {gone}");
        let had = before.iter().filter(|n| **n == all[gone]).count();
        assert_eq!(change.moved, had);
    }
}

fn shares<T: Table>(weights: &[u32]) -> Vec<f64> {
    let all = names(weights.len());
    let eps: Vec<(&str, u32)> = all
        .iter()
        .map(String::as_str)
        .zip(weights.iter().copied())
        .collect();
    let t = T::build(&eps);
    let mut counts = vec![0usize; weights.len()];
    for h in keys() {
        counts[t.get(h).unwrap()] += 1;
    }
    counts.iter().map(|&c| c as f64 / KEYS as f64).collect()
}

fn assert_proportional(label: &str, got: &[f64], weights: &[u32], tolerance: f64) {
    let total: u32 = weights.iter().sum();
    for (g, &w) in got.iter().zip(weights) {
        let want = f64::from(w) / f64::from(total);
        assert!(
            (g - want).abs() <= tolerance * want.max(0.01),
            "{label}: share {g:.4} vs {want:.4} (weights {weights:?}, all {got:?})"
        );
    }
}

#[test]
fn shares_follow_weights() {
    for weights in [&[1u32, 2, 3, 4][..], &[1, 1, 8], &[5, 0, 5], &[100, 300]] {
        assert_proportional("ring", &shares::<RingHash>(weights), weights, 0.2);
        assert_proportional("maglev", &shares::<Maglev>(weights), weights, 0.1);
    }
}
