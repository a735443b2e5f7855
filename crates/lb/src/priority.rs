//! Envoy's priority levels with the overprovisioning factor: how much of the traffic each level
//! gets from the share of its endpoints that are healthy.
//!
//! A level is "healthy" in proportion to `min(100, 1.4 × healthy%)`; levels are filled in order,
//! so level 0 keeps all the traffic while at least 72 % (100 / 1.4) of its endpoints are healthy
//! and spills the rest to level 1, and so on. Integer percentages throughout, as Envoy computes.

/// Envoy's default overprovisioning factor (1.4), in percent.
pub const OVERPROVISIONING_PERCENT: u64 = 140;

/// The most levels a layout keeps; lower priorities beyond it share the last level, so the
/// request path can work on a fixed array.
pub const MAX_LEVELS: usize = 16;

/// A level's (or a locality's) availability in percent: `min(100, 1.4 × healthy / total)`.
pub fn availability(healthy: usize, total: usize) -> u32 {
    if total == 0 {
        return 0;
    }
    let pct = OVERPROVISIONING_PERCENT * healthy as u64 / total as u64;
    pct.min(100) as u32
}

/// The share of traffic (percent, summing to 100) each level receives given its availability;
/// `None` when no level has any healthy endpoint.
///
/// Each level takes `availability × 100 / min(100, Σ availability)`, capped by what is left;
/// rounding leftovers go to the first level with any availability.
pub fn priority_loads(health: &[u32]) -> Option<[u32; MAX_LEVELS]> {
    let total: u32 = health.iter().map(|h| (*h).min(100)).sum::<u32>().min(100);
    if total == 0 {
        return None;
    }
    let mut loads = [0u32; MAX_LEVELS];
    let mut left = 100u32;
    let mut first = None;
    for (i, h) in health.iter().take(MAX_LEVELS).enumerate() {
        let share = ((*h).min(100) * 100 / total).min(left);
        loads[i] = share;
        left -= share;
        if *h > 0 && first.is_none() {
            first = Some(i);
        }
    }
    if let Some(i) = first {
        loads[i] += left;
    }
    Some(loads)
}

/// The level a roll in `0..100` lands on, given the loads of [`priority_loads`].
pub fn level_for_roll(loads: &[u32], roll: u32) -> usize {
    let mut sum = 0;
    for (i, load) in loads.iter().enumerate() {
        sum += load;
        if roll < sum {
            return i;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(health: &[u32]) -> Vec<u32> {
        priority_loads(health)
            .map(|l| l[..health.len()].to_vec())
            .unwrap_or_default()
    }

    #[test]
    fn availability_is_healthy_share_times_1_4_capped() {
        assert_eq!(availability(4, 4), 100);
        assert_eq!(availability(3, 4), 100); // 75 % × 1.4 = 105
        assert_eq!(availability(1, 2), 70);
        assert_eq!(availability(1, 4), 35);
        assert_eq!(availability(0, 4), 0);
        assert_eq!(availability(0, 0), 0);
    }

    #[test]
    fn a_healthy_first_level_takes_everything() {
        assert_eq!(loads(&[100, 100, 100]), vec![100, 0, 0]);
    }

    #[test]
    fn a_degraded_level_spills_to_the_next() {
        // Half of level 0 healthy: 70 % stays, 30 % spills to level 1.
        assert_eq!(loads(&[70, 100]), vec![70, 30]);
        // A quarter healthy: 35 % stays, level 1 takes the rest.
        assert_eq!(loads(&[35, 100, 100]), vec![35, 65, 0]);
        // Both degraded: 35 + 35 < 100, so loads are scaled to 50/50.
        assert_eq!(loads(&[35, 35]), vec![50, 50]);
        // Level 0 gone: level 1 takes everything.
        assert_eq!(loads(&[0, 100, 100]), vec![0, 100, 0]);
        assert_eq!(loads(&[0, 0, 70]), vec![0, 0, 100]);
    }

    #[test]
    fn rounding_leftovers_go_to_the_first_available_level() {
        // 3 levels at 35 %: 35 × 100 / 100 each = 35, 35, 30 (capped by what is left).
        assert_eq!(loads(&[35, 35, 35]), vec![35, 35, 30]);
        // Σ = 21 + 21 = 42: 50 + 50.
        assert_eq!(loads(&[21, 21]), vec![50, 50]);
        // Σ = 10 + 20 + 10 = 40: 25, 50, 25.
        assert_eq!(loads(&[10, 20, 10]), vec![25, 50, 25]);
        // Σ = 30 + 30 + 30 = 90: 33, 33, 33 and the leftover 1 to the first.
        assert_eq!(loads(&[30, 30, 30]), vec![34, 33, 33]);
        assert!(priority_loads(&[0, 0]).is_none());
    }

    #[test]
    fn rolls_land_by_cumulative_load() {
        let l = [70, 30, 0];
        assert_eq!(level_for_roll(&l, 0), 0);
        assert_eq!(level_for_roll(&l, 69), 0);
        assert_eq!(level_for_roll(&l, 70), 1);
        assert_eq!(level_for_roll(&l, 99), 1);
        let counts = (0..100).fold([0; 3], |mut c, r| {
            c[level_for_roll(&l, r)] += 1;
            c
        });
        assert_eq!(counts, [70, 30, 0]);
    }
}
