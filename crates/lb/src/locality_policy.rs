//! DestinationRule `localityLbSetting` → priority levels and locality weights, by Istio's rules
//! for a proxy in a known locality:
//!
//! - `distribute`: the first rule whose `from` matches the proxy weighs localities by its `to`
//!   entries (a locality's share of an entry is in proportion to its endpoint weights, rounded
//!   up); localities no entry matches get no traffic. No priorities.
//! - otherwise, only with outlier detection (Envoy could never see a level as unhealthy without
//!   it): `failoverPriority` labels, then (or instead) the locality rule: same
//!   region/zone/subzone 0, same region/zone 1, same region 2, a `failover` target region 3,
//!   anything else 4; unused numbers are closed up.

use std::collections::BTreeMap;

use crate::layout::LevelSpec;
use crate::locality::Locality;

/// One `distribute` entry: from a locality pattern, weights per destination pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Distribute {
    /// `from` (`region/zone/*` …).
    pub from: String,
    /// `to`, in the order given: pattern and weight (1–100).
    pub to: Vec<(String, u32)>,
}

/// The effective `localityLbSetting` of a cluster (after `enabled` was resolved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalityPolicy {
    /// `distribute` rules.
    pub distribute: Vec<Distribute>,
    /// `failover`: (from region, to region).
    pub failover: Vec<(String, String)>,
    /// `failoverPriority`: label keys, optionally `key=value` to override the proxy's value.
    pub failover_priority: Vec<String>,
    /// `zoneAwareLbSetting` rather than `localityLbSetting`: endpoints are tiered by region only
    /// (the proxy's own, then its `failover` region, then the rest, within each
    /// `failoverPriority` tier), whether or not outlier detection is set; within the first tier
    /// requests are routed by zone (see [`crate::zone_aware`]) when the proxy's own service is
    /// known.
    pub zone_aware: bool,
    /// `zoneAwareLbSetting.minClusterSize` (`None`: Envoy's default, 6).
    pub min_cluster_size: Option<u64>,
}

/// Where one endpoint is, as the policy needs it.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The endpoint's locality.
    pub locality: &'a Locality,
    /// The endpoint's labels (for `failoverPriority`), sorted by key.
    pub labels: &'a [(String, String)],
    /// The endpoint's weight.
    pub weight: u32,
}

/// The proxy the cluster is compiled for.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Its locality.
    pub locality: &'a Locality,
    /// Its workload labels.
    pub labels: &'a BTreeMap<String, String>,
}

impl LocalityPolicy {
    /// The levels for `endpoints` seen from `origin`, or `None` when the policy changes nothing
    /// (unknown proxy locality, no rule applies, or everything lands in one unweighted set), so
    /// the cluster keeps the plain balancer. Zone-aware balancing keeps a single tier (its zones
    /// may still be routed by).
    pub fn levels(
        &self,
        origin: Origin<'_>,
        endpoints: &[Placement<'_>],
        outlier_detection: bool,
    ) -> Option<Vec<LevelSpec>> {
        if origin.locality.is_empty() || endpoints.is_empty() {
            return None;
        }
        if !self.distribute.is_empty() {
            return self.distributed(origin.locality, endpoints);
        }
        // Istio applies locality failover only with outlier detection; zone-aware balancing
        // always partitions by region.
        if !outlier_detection && !self.zone_aware {
            return None;
        }
        let keys: Vec<(usize, usize)> = endpoints
            .iter()
            .map(|e| {
                let labels = self.label_priority(origin, e);
                let local = if self.zone_aware {
                    self.region_priority(origin.locality, e.locality)
                } else if self.failover_priority.is_empty() || !self.failover.is_empty() {
                    self.locality_priority(origin.locality, e.locality)
                } else {
                    0
                };
                (labels, local)
            })
            .collect();
        let mut distinct: Vec<(usize, usize)> = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 2 && !self.zone_aware {
            return None;
        }
        let levels = distinct
            .iter()
            .map(|key| {
                let members = (0..endpoints.len()).filter(|&i| keys[i] == *key).collect();
                vec![(members, 0)]
            })
            .collect();
        Some(levels)
    }

    /// Istio's locality priority: 0 same subzone, 1 same zone, 2 same region, 3 a failover
    /// region of the proxy's, 4 anything else.
    fn locality_priority(&self, proxy: &Locality, ep: &Locality) -> usize {
        if ep.region == proxy.region {
            if ep.zone == proxy.zone {
                return if ep.subzone == proxy.subzone { 0 } else { 1 };
            }
            return 2;
        }
        let failover_target = self
            .failover
            .iter()
            .find(|(from, _)| *from == proxy.region)
            .is_some_and(|(_, to)| *to == ep.region);
        if failover_target {
            3
        } else {
            4
        }
    }

    /// Zone-aware balancing's regional tiers: 0 the proxy's region, 1 its failover region, 2
    /// anything else.
    fn region_priority(&self, proxy: &Locality, ep: &Locality) -> usize {
        if ep.region == proxy.region {
            return 0;
        }
        let failover_target = self
            .failover
            .iter()
            .find(|(from, _)| *from == proxy.region)
            .is_some_and(|(_, to)| *to == ep.region);
        if failover_target {
            1
        } else {
            2
        }
    }

    /// `failoverPriority`: 0 when every label matches the proxy's value (or the `key=value`
    /// override), otherwise `n − j` for the first label `j` that differs.
    fn label_priority(&self, origin: Origin<'_>, ep: &Placement<'_>) -> usize {
        let n = self.failover_priority.len();
        for (j, entry) in self.failover_priority.iter().enumerate() {
            let (key, fixed) = match entry.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (entry.as_str(), None),
            };
            let lookup = |label: Option<&str>, loc: &Locality| -> String {
                label
                    .or_else(|| loc.topology_label(key))
                    .unwrap_or("")
                    .to_string()
            };
            let want = match fixed {
                Some(v) => v.to_string(),
                None => lookup(origin.labels.get(key).map(String::as_str), origin.locality),
            };
            let label = ep
                .labels
                .binary_search_by(|(k, _)| k.as_str().cmp(key))
                .ok()
                .map(|i| ep.labels[i].1.as_str());
            if want != lookup(label, ep.locality) {
                return n - j;
            }
        }
        0
    }

    /// One level of weighted localities, by the first `distribute` rule matching the proxy.
    fn distributed(&self, proxy: &Locality, endpoints: &[Placement<'_>]) -> Option<Vec<LevelSpec>> {
        let rule = self.distribute.iter().find(|d| proxy.matches(&d.from))?;
        let mut localities: Vec<&Locality> = Vec::new();
        let mut groups: Vec<(Vec<usize>, u64)> = Vec::new();
        for (i, e) in endpoints.iter().enumerate() {
            match localities.iter().position(|l| *l == e.locality) {
                Some(g) => {
                    groups[g].0.push(i);
                    groups[g].1 += u64::from(e.weight.max(1));
                }
                None => {
                    localities.push(e.locality);
                    groups.push((vec![i], u64::from(e.weight.max(1))));
                }
            }
        }
        let mut weights: Vec<Option<u32>> = vec![None; groups.len()];
        for (pattern, weight) in &rule.to {
            let matched: Vec<usize> = (0..groups.len())
                .filter(|&g| weights[g].is_none() && localities[g].matches(pattern))
                .collect();
            let total: u64 = matched.iter().map(|&g| groups[g].1).sum();
            for &g in &matched {
                let share = (groups[g].1 * u64::from(*weight)).div_ceil(total.max(1));
                weights[g] = Some(u32::try_from(share.max(1)).unwrap_or(u32::MAX));
            }
        }
        let level: LevelSpec = groups
            .into_iter()
            .zip(weights)
            .filter_map(|((members, _), w)| w.map(|w| (members, w)))
            .collect();
        Some(vec![level])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place<'a>(loc: &'a Locality, labels: &'a [(String, String)]) -> Placement<'a> {
        Placement {
            locality: loc,
            labels,
            weight: 1,
        }
    }

    fn helloworld() -> Vec<Locality> {
        [
            "region1/zone1",
            "region1/zone2",
            "region2/zone3",
            "region3/zone4",
        ]
        .iter()
        .map(|l| Locality::parse(l))
        .collect()
    }

    #[test]
    fn failover_orders_by_locality_then_failover_region() {
        let locs = helloworld();
        let none = BTreeMap::new();
        let eps: Vec<Placement<'_>> = locs.iter().map(|l| place(l, &[])).collect();
        let proxy = Locality::parse("region1/zone1");
        let origin = Origin {
            locality: &proxy,
            labels: &none,
        };
        let policy = LocalityPolicy {
            failover: vec![("region1".into(), "region2".into())],
            ..Default::default()
        };
        let levels = policy.levels(origin, &eps, true).unwrap();
        let members: Vec<Vec<usize>> = levels.iter().map(|l| l[0].0.clone()).collect();
        assert_eq!(members, vec![vec![0], vec![1], vec![2], vec![3]]);
        // Without the failover entry, region2 and region3 share the last level.
        let levels = LocalityPolicy::default()
            .levels(origin, &eps, true)
            .unwrap();
        let members: Vec<Vec<usize>> = levels.iter().map(|l| l[0].0.clone()).collect();
        assert_eq!(members, vec![vec![0], vec![1], vec![2, 3]]);
        // Without outlier detection, no priorities at all.
        assert!(policy.levels(origin, &eps, false).is_none());
        // An unknown proxy locality changes nothing.
        let unknown = Locality::default();
        let nowhere = Origin {
            locality: &unknown,
            labels: &none,
        };
        assert!(policy.levels(nowhere, &eps, true).is_none());
    }

    #[test]
    fn failover_priority_uses_labels_in_order() {
        let loc = Locality::parse("r/z");
        let label = |net: &str, cl: &str| {
            BTreeMap::from([
                ("topology.istio.io/network".to_string(), net.to_string()),
                ("topology.istio.io/cluster".to_string(), cl.to_string()),
            ])
        };
        let (a, b, c) = (label("n1", "c1"), label("n1", "c2"), label("n2", "c1"));
        let sorted = |m: &BTreeMap<String, String>| m.clone().into_iter().collect::<Vec<_>>();
        let (sa, sb, sc) = (sorted(&a), sorted(&b), sorted(&c));
        let eps = [place(&loc, &sa), place(&loc, &sb), place(&loc, &sc)];
        let origin = Origin {
            locality: &loc,
            labels: &a,
        };
        let policy = LocalityPolicy {
            failover_priority: vec![
                "topology.istio.io/network".into(),
                "topology.istio.io/cluster".into(),
            ],
            ..Default::default()
        };
        let levels = policy.levels(origin, &eps, true).unwrap();
        let members: Vec<Vec<usize>> = levels.iter().map(|l| l[0].0.clone()).collect();
        assert_eq!(members, vec![vec![0], vec![1], vec![2]]);
        // `key=value` replaces the proxy's own value.
        let policy = LocalityPolicy {
            failover_priority: vec!["topology.istio.io/network=n2".into()],
            ..Default::default()
        };
        let levels = policy.levels(origin, &eps, true).unwrap();
        let members: Vec<Vec<usize>> = levels.iter().map(|l| l[0].0.clone()).collect();
        assert_eq!(members, vec![vec![2], vec![0, 1]]);
    }

    #[test]
    fn distribute_weighs_localities_and_drops_unlisted_ones() {
        let locs = helloworld();
        let none = BTreeMap::new();
        let eps: Vec<Placement<'_>> = locs.iter().map(|l| place(l, &[])).collect();
        let proxy = Locality::parse("region1/zone1");
        let origin = Origin {
            locality: &proxy,
            labels: &none,
        };
        let policy = LocalityPolicy {
            distribute: vec![Distribute {
                from: "region1/zone1/*".into(),
                to: vec![
                    ("region1/zone1/*".into(), 70),
                    ("region1/zone2/*".into(), 20),
                    ("region3/zone4/*".into(), 10),
                ],
            }],
            ..Default::default()
        };
        let levels = policy.levels(origin, &eps, false).unwrap();
        assert_eq!(
            levels,
            vec![vec![(vec![0], 70), (vec![1], 20), (vec![3], 10)]]
        );
        // A wildcard entry over two localities shares its weight by endpoint weight.
        let policy = LocalityPolicy {
            distribute: vec![Distribute {
                from: "region1/*".into(),
                to: vec![("region1/*".into(), 50), ("*".into(), 50)],
            }],
            ..Default::default()
        };
        let levels = policy.levels(origin, &eps, false).unwrap();
        assert_eq!(
            levels,
            vec![vec![
                (vec![0], 25),
                (vec![1], 25),
                (vec![2], 25),
                (vec![3], 25)
            ]]
        );
        // No rule for this proxy: nothing changes.
        let elsewhere = Locality::parse("region9/zone1");
        let origin = Origin {
            locality: &elsewhere,
            labels: &none,
        };
        assert!(policy.levels(origin, &eps, true).is_none());
    }

    #[test]
    fn zone_aware_tiers_by_region_even_without_outlier_detection() {
        let proxy = Locality::parse("region1/zone1");
        let locs: Vec<Locality> = [
            "region1/zone1",
            "region1/zone2",
            "region2/zone3",
            "region3/zone4",
        ]
        .iter()
        .map(|l| Locality::parse(l))
        .collect();
        let none = BTreeMap::new();
        let eps: Vec<Placement<'_>> = locs.iter().map(|l| place(l, &[])).collect();
        let origin = Origin {
            locality: &proxy,
            labels: &none,
        };
        let policy = LocalityPolicy {
            failover: vec![("region1".into(), "region3".into())],
            zone_aware: true,
            ..Default::default()
        };
        let levels = policy.levels(origin, &eps, false).unwrap();
        let members: Vec<Vec<usize>> = levels.iter().map(|l| l[0].0.clone()).collect();
        // Both zones of region1 share the first tier; region3 (the failover) comes before region2.
        assert_eq!(members, vec![vec![0, 1], vec![3], vec![2]]);
    }
}
