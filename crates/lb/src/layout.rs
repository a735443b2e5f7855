//! A cluster's endpoints arranged by priority level and locality, built once when the cluster
//! is compiled (the proxy's locality is known then); each pick only counts healthy endpoints
//! to choose a level, then a locality inside it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use crate::detector::OutlierDetector;
use crate::endpoint::LbEndpoint;
use crate::priority::{availability, level_for_roll, priority_loads, MAX_LEVELS};
use crate::random::Rng;
use crate::schedule::WeightedSchedule;
use crate::selection::Candidates;
use crate::zone_aware::ZoneRouting;

/// The endpoints of one locality within a level, with the locality's weight (`distribute`).
#[derive(Debug, Clone)]
struct Group {
    members: Vec<usize>,
    weight: u32,
}

/// One priority level: its localities and, when they carry weights, a smooth schedule over
/// them for the common case where every locality is fully available (exact splits).
#[derive(Debug, Clone)]
struct Level {
    groups: Vec<Group>,
    schedule: Option<WeightedSchedule>,
}

/// Endpoint indices arranged in priority levels (0 first) of weighted localities.
#[derive(Debug, Clone)]
pub struct LocalityLayout {
    levels: Vec<Level>,
    /// Zone-aware routing within level 0 (`zoneAwareLbSetting` with a known local cluster).
    zones: Option<Arc<ZoneRouting>>,
}

/// One level as given to [`LocalityLayout::new`]: its localities as (endpoint indices, weight).
pub type LevelSpec = Vec<(Vec<usize>, u32)>;

impl LocalityLayout {
    /// A layout from levels in priority order. A weight of 0 on every locality of a level means
    /// "unweighted": the level's endpoints are balanced as one set. Levels past
    /// [`MAX_LEVELS`] are merged into the last one; empty levels and localities are dropped.
    /// `counter` keeps the locality schedule's position (from the state store).
    pub fn new(levels: Vec<LevelSpec>, counter: Arc<AtomicU64>) -> Self {
        let mut specs: Vec<LevelSpec> = levels
            .into_iter()
            .map(|l| l.into_iter().filter(|(m, _)| !m.is_empty()).collect())
            .filter(|l: &LevelSpec| !l.is_empty())
            .collect();
        if specs.len() > MAX_LEVELS {
            let rest: LevelSpec = specs.drain(MAX_LEVELS - 1..).flatten().collect();
            specs.push(rest);
        }
        let levels = specs
            .into_iter()
            .map(|spec| {
                let weighted = spec.iter().any(|(_, w)| *w > 0);
                let groups: Vec<Group> = if weighted {
                    spec.into_iter()
                        .map(|(members, weight)| Group { members, weight })
                        .collect()
                } else {
                    vec![Group {
                        members: spec.into_iter().flat_map(|(m, _)| m).collect(),
                        weight: 0,
                    }]
                };
                let schedule = (groups.len() > 1).then(|| {
                    let weights: Vec<u32> = groups.iter().map(|g| g.weight).collect();
                    WeightedSchedule::new(&weights, Arc::clone(&counter))
                });
                Level { groups, schedule }
            })
            .collect();
        LocalityLayout {
            levels,
            zones: None,
        }
    }

    /// The same layout, choosing a zone of level 0 per request by Envoy's zone-aware routing
    /// (`zones` is built over level 0's endpoints).
    pub fn with_zones(self, zones: Option<ZoneRouting>) -> Self {
        LocalityLayout {
            zones: zones.map(Arc::new),
            ..self
        }
    }

    /// The zone-aware routing of level 0, if any.
    pub fn zones(&self) -> Option<&ZoneRouting> {
        self.zones.as_deref()
    }

    /// Number of priority levels.
    pub fn levels(&self) -> usize {
        self.levels.len()
    }

    /// The endpoint indices of level `level` (all its localities).
    pub fn level_members(&self, level: usize) -> Vec<usize> {
        self.levels.get(level).map_or_else(Vec::new, |l| {
            l.groups.iter().flat_map(|g| g.members.clone()).collect()
        })
    }

    /// The candidates of one pick: a level by Envoy's priority loads, a locality of it by
    /// weight × availability, then its healthy endpoints not in `exclude` (excluded ones come
    /// back when nothing else is left; ejected ones only when the level is in panic).
    pub fn candidates(
        &self,
        endpoints: &[LbEndpoint],
        outlier: Option<&OutlierDetector>,
        exclude: &[usize],
        other_levels: bool,
        now: Option<Instant>,
        rng: &mut Rng,
    ) -> Candidates {
        let now = outlier.map(|_| now.unwrap_or_else(Instant::now));
        let weighted = |i: usize| endpoints.get(i).is_some_and(|e| e.weight > 0);
        let healthy = |i: usize| {
            weighted(i)
                && match now {
                    Some(now) => endpoints
                        .get(i)
                        .is_some_and(|e| !e.state.outlier().is_ejected(now)),
                    None => true,
                }
        };
        let count = |members: &[usize]| {
            let total = members.iter().filter(|&&i| weighted(i)).count();
            let up = members.iter().filter(|&&i| healthy(i)).count();
            (up, total)
        };
        let mut health = [0u32; MAX_LEVELS];
        let mut totals = [(0usize, 0usize); MAX_LEVELS];
        for (l, level) in self.levels.iter().enumerate() {
            let (up, total) = level
                .groups
                .iter()
                .map(|g| count(&g.members))
                .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
            health[l] = availability(up, total);
            totals[l] = (up, total);
        }
        let n = self.levels.len();
        if other_levels && !exclude.is_empty() {
            // Envoy's previous_priorities: levels already tried count as unavailable, unless
            // that leaves none.
            let mut left = health;
            for (l, level) in self.levels.iter().enumerate() {
                let tried = level
                    .groups
                    .iter()
                    .any(|g| g.members.iter().any(|i| exclude.contains(i)));
                if tried {
                    left[l] = 0;
                }
            }
            if left[..n].iter().any(|&h| h > 0) {
                health = left;
            }
        }
        let (level_index, panic) = match priority_loads(&health[..n]) {
            Some(loads) => {
                let l = level_for_roll(&loads[..n], rng.below(100) as u32);
                let (up, total) = totals[l];
                (l, outlier.is_some_and(|d| d.in_panic(up, total)))
            }
            // Nothing healthy anywhere: only panic mode still sends traffic (to the first level).
            None => {
                let (up, total) = totals.iter().fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
                if total == 0 || !outlier.is_some_and(|d| d.in_panic(up, total)) {
                    return Candidates::None;
                }
                (0, true)
            }
        };
        let Some(level) = self.levels.get(level_index) else {
            return Candidates::None;
        };
        let Some(group) = choose_group(level, |m| count(m), rng) else {
            return Candidates::None;
        };
        let usable = |i: usize| if panic { weighted(i) } else { healthy(i) };
        // Envoy routes by zone only in level 0 and not in panic.
        let zone = match &self.zones {
            Some(zones) if level_index == 0 && !panic => {
                zones.choose(outlier.is_some(), healthy, rng)
            }
            _ => None,
        };
        let members: &[usize] = match zone {
            // A zone with nothing usable (only by rounding): the whole level.
            Some(z) if z.iter().any(|&i| usable(i)) => z,
            _ => &group.members,
        };
        let mut mask = vec![false; endpoints.len()];
        let mut any = false;
        for &i in members {
            if usable(i) && i < mask.len() {
                mask[i] = true;
                any = true;
            }
        }
        if !any {
            return Candidates::None;
        }
        let keeps_one = members
            .iter()
            .any(|&i| mask.get(i).copied().unwrap_or(false) && !exclude.contains(&i));
        if keeps_one {
            for &i in exclude {
                if let Some(m) = mask.get_mut(i) {
                    *m = false;
                }
            }
        }
        Candidates::Only(mask)
    }
}

/// A locality of `level`: by the schedule when every locality is fully available (exact
/// weights), otherwise at random by `weight × availability`, as Envoy weighs localities. No
/// allocation: availabilities are counted again on the second walk instead of being kept.
fn choose_group<'a>(
    level: &'a Level,
    count: impl Fn(&[usize]) -> (usize, usize),
    rng: &mut Rng,
) -> Option<&'a Group> {
    let first = level.groups.first();
    let Some(schedule) = &level.schedule else {
        return first;
    };
    let effective = |g: &Group| {
        let (up, total) = count(&g.members);
        (
            u64::from(g.weight) * u64::from(availability(up, total)),
            availability(up, total),
        )
    };
    let mut sum = 0u64;
    let mut all_available = true;
    for g in &level.groups {
        let (w, a) = effective(g);
        sum += w;
        all_available &= a == 100;
    }
    if all_available {
        return schedule.next().and_then(|i| level.groups.get(i)).or(first);
    }
    if sum == 0 {
        return first;
    }
    let mut roll = rng.below(sum);
    for g in &level.groups {
        let (w, _) = effective(g);
        if roll < w {
            return Some(g);
        }
        roll -= w;
    }
    first
}
