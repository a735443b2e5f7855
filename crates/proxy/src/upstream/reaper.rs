//! The idle-connection reaper both pools run: one task per pool, started with its first
//! connection and ended with the pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// The reaper never runs more often than this, whatever the idle timeout.
const MIN_REAP_PERIOD: Duration = Duration::from_millis(10);

/// Whether a pool's reaper task runs.
#[derive(Debug, Default)]
pub(super) struct Reaper(AtomicBool);

impl Reaper {
    /// Starts, once, a task calling `reap(pool, now)` every `period` while `pool` lives.
    pub(super) fn start<T: Send + Sync + 'static>(
        &self,
        pool: &Arc<T>,
        period: Duration,
        reap: fn(&T, Instant),
    ) {
        if self.0.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = Arc::downgrade(pool);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period.max(MIN_REAP_PERIOD));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                reap(&pool, Instant::now());
            }
        });
    }
}
