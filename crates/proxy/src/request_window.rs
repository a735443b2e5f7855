//! The requests a cluster started within a recent interval, for a retry budget with
//! `budgetInterval`: a sliding window of ten slots, as Envoy's retry budget keeps it (each slot
//! a tenth of the interval; the oldest slot's requests expire as time moves on).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Slots the interval is divided into.
const SLOTS: usize = 10;

/// Requests started within the last `interval`, counted per tenth of it.
#[derive(Debug)]
pub(crate) struct RequestWindow {
    slot: Duration,
    state: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    counts: [u64; SLOTS],
    /// The slot counting now.
    head: usize,
    /// When the head slot began.
    head_start: Instant,
}

impl RequestWindow {
    /// A window over `interval` (at least ten nanoseconds, so each slot lasts at least one).
    pub(crate) fn new(interval: Duration) -> Self {
        RequestWindow {
            slot: (interval / SLOTS as u32).max(Duration::from_nanos(1)),
            state: Mutex::new(Slots {
                counts: [0; SLOTS],
                head: 0,
                head_start: Instant::now(),
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Slots) -> T) -> T {
        let mut s = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        self.advance(&mut s, Instant::now());
        f(&mut s)
    }

    /// Moves the head to the slot of `now`, emptying the slots that expired on the way.
    fn advance(&self, s: &mut Slots, now: Instant) {
        let elapsed = now.saturating_duration_since(s.head_start);
        let steps = (elapsed.as_nanos() / self.slot.as_nanos().max(1)) as u64;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(SLOTS as u64) {
            s.head = (s.head + 1) % SLOTS;
            if let Some(c) = s.counts.get_mut(s.head) {
                *c = 0;
            }
        }
        let moved = u32::try_from(steps).unwrap_or(u32::MAX);
        s.head_start += self.slot.saturating_mul(moved);
        if s.head_start > now {
            s.head_start = now;
        }
    }

    /// Counts a request starting now.
    pub(crate) fn record(&self) {
        self.with(|s| {
            if let Some(c) = s.counts.get_mut(s.head) {
                *c = c.saturating_add(1);
            }
        });
    }

    /// Requests started within the interval.
    pub(crate) fn count(&self) -> u64 {
        self.with(|s| s.counts.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_expire_a_tenth_of_the_interval_at_a_time() {
        let w = RequestWindow::new(Duration::from_secs(10));
        for _ in 0..5 {
            w.record();
        }
        tokio::time::advance(Duration::from_secs(4)).await;
        for _ in 0..3 {
            w.record();
        }
        assert_eq!(w.count(), 8);
        // 10 s after the first five, they are gone; the three later ones stay.
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(w.count(), 3);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(w.count(), 0);
        // A long quiet time empties everything at once.
        w.record();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(w.count(), 0);
        w.record();
        assert_eq!(w.count(), 1);
    }
}
