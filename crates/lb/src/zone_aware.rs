//! Envoy's zone-aware routing (`ZoneAwareLoadBalancerBase`) within the first priority level:
//! each zone of the level gets about the share of requests that the proxy's own service (Envoy's
//! "local cluster") sends from that zone, so that requests stay in their zone as far as the
//! zone's upstream capacity allows and no upstream host gets more than its fair share.
//!
//! Shares are in Envoy's units (10 000 = 100 %), from healthy upstream hosts per zone and local
//! cluster hosts per zone:
//!
//! - **LocalityDirect**: the local zone's upstream share is at least its local share: every
//!   request stays in the local zone.
//! - **LocalityResidual**: `upstream% × 10 000 / local%` of requests stay in the local zone; the
//!   others go to the other zones in proportion to their residual capacity
//!   `max(0, upstream% − local%)`.
//! - **no zone routing** (the level is balanced as one set): fewer than two zones upstream, a
//!   local cluster over fewer than two zones or without the proxy's own zone, or fewer healthy
//!   upstream hosts than `min_cluster_size`.
//!
//! The state is recomputed when the healthy hosts per zone change (Envoy recomputes on host set
//! change), not per request.

use std::sync::{PoisonError, RwLock};

use crate::locality::Locality;
use crate::random::Rng;

/// Envoy's default `zone_aware_lb_config.min_cluster_size`.
pub const DEFAULT_MIN_CLUSTER_SIZE: u64 = 6;

/// 100 % in Envoy's share units.
const ALL: u64 = 10_000;

/// How one pick chooses its zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneState {
    /// No zone preference: the level is balanced as one set.
    Off,
    /// Every request goes to the local zone.
    Direct,
    /// `local` of 10 000 requests go to the local zone; the others to the zone whose bucket a
    /// draw in `0..residual.last()` falls into (`residual` is cumulative, one entry per zone).
    Residual {
        /// Share of requests kept in the local zone (of 10 000).
        local: u64,
        /// Cumulative residual capacity per zone (the local zone adds nothing).
        residual: Vec<u64>,
    },
}

/// What the shares are computed from; zone 0 is the proxy's own zone when `has_local`.
#[derive(Debug, Clone, Copy)]
pub struct ZoneCounts<'a> {
    /// Healthy upstream hosts per zone of the level.
    pub upstream: &'a [u64],
    /// Whether zone 0 is the proxy's own zone.
    pub has_local: bool,
    /// Local cluster hosts in each upstream zone (same order as `upstream`).
    pub local: &'a [u64],
    /// Local cluster hosts in all its zones (some may have no upstream host).
    pub local_total: u64,
    /// `min_cluster_size`: fewer healthy upstream hosts turn zone routing off.
    pub min_cluster_size: u64,
}

/// Envoy's `regenerateLocalityRoutingStructures` for one level (the static preconditions,
/// two zones on each side and the proxy's zone in the local cluster, are checked by
/// [`ZoneRouting::new`]).
pub fn zone_state(c: ZoneCounts<'_>) -> ZoneState {
    let n = c.upstream.len();
    let total: u64 = c.upstream.iter().sum();
    if n < 2 || total < c.min_cluster_size || total == 0 {
        return ZoneState::Off;
    }
    // (local %, upstream %) per zone; a zone without healthy upstream hosts counts 0 on both
    // sides, as Envoy's `calculateLocalityPercentages` does.
    let share = |i: usize| -> (u64, u64) {
        let up = c.upstream.get(i).copied().unwrap_or(0);
        if up == 0 {
            return (0, 0);
        }
        let local = c.local.get(i).copied().unwrap_or(0);
        let local_pct = (ALL * local).checked_div(c.local_total).unwrap_or(0);
        (local_pct, ALL * up / total)
    };
    let (local0, up0) = share(0);
    if c.has_local && up0 > 0 && up0 >= local0 {
        return ZoneState::Direct;
    }
    let local = if c.has_local && local0 > 0 {
        up0 * ALL / local0
    } else {
        0
    };
    let mut residual = Vec::with_capacity(n);
    let mut sum = 0;
    for i in 0..n {
        if !(i == 0 && c.has_local) {
            let (l, u) = share(i);
            sum += u.saturating_sub(l);
        }
        residual.push(sum);
    }
    ZoneState::Residual { local, residual }
}

/// The zones of a cluster's first priority level and how the proxy's own service is spread over
/// them; picks a zone per request.
#[derive(Debug)]
pub struct ZoneRouting {
    /// Endpoint indices per zone; zone 0 is the proxy's own zone when `has_local`.
    zones: Vec<Vec<usize>>,
    has_local: bool,
    /// Local cluster hosts per zone of `zones`.
    local: Vec<u64>,
    local_total: u64,
    min_cluster_size: u64,
    /// The healthy hosts per zone the state was computed for, and the state (empty before the
    /// first pick).
    cache: RwLock<(Vec<u64>, ZoneState)>,
}

impl ZoneRouting {
    /// Zone routing for the level `members` (endpoint index and locality) of a proxy in
    /// `proxy`, whose own service has `local` hosts per locality; `None` when Envoy would never
    /// route by zone here (fewer than two zones in the level or in the local cluster, or no local
    /// host in the proxy's own zone).
    pub fn new(
        proxy: &Locality,
        members: &[(usize, &Locality)],
        local: &[(Locality, u64)],
        min_cluster_size: u64,
    ) -> Option<ZoneRouting> {
        let local: Vec<&(Locality, u64)> = local.iter().filter(|(_, n)| *n > 0).collect();
        let own = local.iter().any(|(l, _)| l == proxy);
        if proxy.is_empty() || local.len() < 2 || !own {
            return None;
        }
        // Envoy's HostsPerLocality: the local locality first, the others in order of appearance.
        let mut localities: Vec<&Locality> = Vec::new();
        let mut zones: Vec<Vec<usize>> = Vec::new();
        for (i, l) in members {
            match localities.iter().position(|k| *k == *l) {
                Some(z) => zones[z].push(*i),
                None => {
                    localities.push(l);
                    zones.push(vec![*i]);
                }
            }
        }
        if zones.len() < 2 {
            return None;
        }
        let has_local = match localities.iter().position(|l| *l == proxy) {
            Some(z) => {
                let own = localities.remove(z);
                localities.insert(0, own);
                let own = zones.remove(z);
                zones.insert(0, own);
                true
            }
            None => false,
        };
        let per_zone = localities
            .iter()
            .map(|l| local.iter().find(|(k, _)| k == *l).map_or(0, |(_, n)| *n))
            .collect();
        Some(ZoneRouting {
            zones,
            has_local,
            local: per_zone,
            local_total: local.iter().map(|(_, n)| *n).sum(),
            min_cluster_size,
            cache: RwLock::new((Vec::new(), ZoneState::Off)),
        })
    }

    /// The endpoint indices of each zone (the proxy's own first, when the level has it).
    pub fn zones(&self) -> &[Vec<usize>] {
        &self.zones
    }

    /// The state for these healthy hosts per zone.
    pub fn state_for(&self, upstream: &[u64]) -> ZoneState {
        zone_state(ZoneCounts {
            upstream,
            has_local: self.has_local,
            local: &self.local,
            local_total: self.local_total,
            min_cluster_size: self.min_cluster_size,
        })
    }

    /// The zone of one pick (its endpoint indices), or `None` for no preference (the whole
    /// level). `healthy` says which endpoints count; `health_changes` is false when it never
    /// changes (no outlier detection), which spares counting once the state is known.
    pub fn choose(
        &self,
        health_changes: bool,
        healthy: impl Fn(usize) -> bool,
        rng: &mut Rng,
    ) -> Option<&[usize]> {
        let count = |z: &[usize]| z.iter().filter(|&&i| healthy(i)).count() as u64;
        {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            let known = cache.0.len() == self.zones.len()
                && (!health_changes
                    || cache.0.iter().zip(&self.zones).all(|(k, z)| *k == count(z)));
            if known {
                return self.zone(&cache.1, rng);
            }
        }
        let counts: Vec<u64> = self.zones.iter().map(|z| count(z)).collect();
        let state = self.state_for(&counts);
        let zone = self.zone(&state, rng);
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        *cache = (counts, state);
        zone
    }

    /// Envoy's `tryChooseLocalLocalityHosts`.
    fn zone(&self, state: &ZoneState, rng: &mut Rng) -> Option<&[usize]> {
        let index = match state {
            ZoneState::Off => return None,
            ZoneState::Direct => 0,
            ZoneState::Residual { local, residual } => {
                if rng.below(ALL) < *local {
                    0
                } else {
                    match residual.last().copied() {
                        // Only by rounding: any zone.
                        None | Some(0) => rng.below(self.zones.len() as u64) as usize,
                        Some(last) => {
                            let roll = rng.below(last);
                            residual.iter().position(|&r| roll < r).unwrap_or(0)
                        }
                    }
                }
            }
        };
        self.zones.get(index).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(upstream: &[u64], local: &[u64], local_total: u64) -> ZoneState {
        zone_state(ZoneCounts {
            upstream,
            has_local: true,
            local,
            local_total,
            min_cluster_size: 1,
        })
    }

    #[test]
    fn enough_local_capacity_keeps_every_request_in_the_zone() {
        // 50 % of the local cluster, 50 % of upstream: direct.
        assert_eq!(state(&[3, 3], &[1, 1], 2), ZoneState::Direct);
        // More upstream than local share: direct too.
        assert_eq!(state(&[4, 2], &[1, 1], 2), ZoneState::Direct);
    }

    #[test]
    fn residual_routes_what_the_local_zone_cannot_take_to_zones_with_spare_capacity() {
        // Local 50/50, upstream 1 vs 3: 25 % upstream locally for 50 % local traffic → half of
        // the requests stay; the rest go to zone 2 (residual 75 − 50 = 25).
        assert_eq!(
            state(&[1, 3], &[1, 1], 2),
            ZoneState::Residual {
                local: 5000,
                residual: vec![0, 2500]
            }
        );
        // Envoy's own example: local 40/40/20, upstream 25/50/25 → residual 0, 10, 5 (cumulative
        // 0, 1000, 1500), and 25/40 of the requests stay.
        assert_eq!(
            state(&[1, 2, 1], &[2, 2, 1], 5),
            ZoneState::Residual {
                local: 6250,
                residual: vec![0, 1000, 1500]
            }
        );
    }

    #[test]
    fn a_local_zone_without_healthy_hosts_sends_everything_elsewhere() {
        assert_eq!(
            state(&[0, 3, 1], &[1, 1, 0], 2),
            ZoneState::Residual {
                local: 0,
                residual: vec![0, 2500, 5000]
            }
        );
        // Without the proxy's zone upstream, all zones share by residual capacity.
        let s = zone_state(ZoneCounts {
            upstream: &[2, 2],
            has_local: false,
            local: &[1, 0],
            local_total: 2,
            min_cluster_size: 1,
        });
        assert_eq!(
            s,
            ZoneState::Residual {
                local: 0,
                residual: vec![0, 5000]
            }
        );
    }

    #[test]
    fn small_clusters_and_single_zones_are_not_routed_by_zone() {
        let small = zone_state(ZoneCounts {
            upstream: &[1, 3],
            has_local: true,
            local: &[1, 1],
            local_total: 2,
            min_cluster_size: DEFAULT_MIN_CLUSTER_SIZE,
        });
        assert_eq!(small, ZoneState::Off);
        assert_eq!(state(&[5], &[1], 2), ZoneState::Off);
    }

    fn loc(s: &str) -> Locality {
        Locality::parse(s)
    }

    #[test]
    fn routing_needs_two_local_zones_including_the_proxys() {
        let (z1, z2, z3) = (loc("r/z1"), loc("r/z2"), loc("r/z3"));
        let members = [(0, &z1), (1, &z2)];
        let only_own = [(z1.clone(), 2)];
        assert!(ZoneRouting::new(&z1, &members, &only_own, 1).is_none());
        let not_own = [(z2.clone(), 1), (z3.clone(), 1)];
        assert!(ZoneRouting::new(&z1, &members, &not_own, 1).is_none());
        let both = [(z1.clone(), 1), (z2.clone(), 1)];
        assert!(ZoneRouting::new(&z1, &[(0, &z1), (1, &z1)], &both, 1).is_none());
        assert!(ZoneRouting::new(&z1, &members, &both, 1).is_some());
    }

    #[test]
    fn the_own_zone_comes_first_and_picks_follow_the_state() {
        let (z1, z2, z3) = (loc("r/z1"), loc("r/z2"), loc("r/z3"));
        // Upstream: z2 ×3, z1 ×1, z3 ×1 (own zone in the middle of the list).
        let members = [(0, &z2), (1, &z2), (2, &z1), (3, &z3), (4, &z2)];
        let local = [(z1.clone(), 1), (z2.clone(), 1)];
        let zr = ZoneRouting::new(&z1, &members, &local, 1).unwrap();
        assert_eq!(zr.zones(), &[vec![2], vec![0, 1, 4], vec![3]]);
        // 20 % upstream for 50 % local: 40 % stay; residual z2 60 − 50 = 10, z3 20 − 0 = 20.
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 3];
        for _ in 0..10_000 {
            let zone = zr.choose(false, |_| true, &mut rng).unwrap();
            let z = zr.zones().iter().position(|m| m == zone).unwrap();
            seen[z] += 1;
        }
        assert!((3700..4300).contains(&seen[0]), "{seen:?}");
        assert!((1700..2300).contains(&seen[1]), "{seen:?}");
        assert!((3700..4300).contains(&seen[2]), "{seen:?}");
        // The own zone's host ejected: state recomputed, nothing stays local.
        for _ in 0..100 {
            let zone = zr.choose(true, |i| i != 2, &mut rng).unwrap();
            assert_ne!(zone, [2]);
        }
    }
}
