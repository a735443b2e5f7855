//! The downstream connection budget shared by every proxy listener (`--max-connections`).
//!
//! Past the budget a new connection is accepted and closed at once: the client learns at once
//! instead of waiting in the kernel's backlog, the accept loop keeps draining the backlog
//! without spinning, and the process never reaches its open-files limit, where accepting
//! fails for every listener, the admin one included.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sluice_telemetry::Telemetry;

/// File descriptors kept out of the budget: the admin listener and its clients, config files
/// read at a reload, the file watcher, the access log, the trace exporter, the runtime's own.
const FD_RESERVE: u64 = 256;

/// The budget when the open-files limit is unlimited: the kernel's default `nr_open`.
const UNLIMITED_FDS: u64 = 1 << 20;

/// Connections open at once over all proxy listeners; the permits are counted here.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    open: AtomicUsize,
    telemetry: Option<Arc<Telemetry>>,
}

impl ConnectionLimit {
    /// A budget of `max` connections; refusals are counted in `sluice_downstream_connections_
    /// refused_total` when `telemetry` is given.
    pub fn new(max: usize, telemetry: Option<Arc<Telemetry>>) -> Arc<Self> {
        Arc::new(ConnectionLimit {
            max,
            open: AtomicUsize::new(0),
            telemetry,
        })
    }

    /// A permit for one more connection, or `None` (counted as a refusal) when the budget is
    /// spent.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnectionPermit> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok();
        if !admitted {
            if let Some(t) = &self.telemetry {
                t.proxy().downstream_connection_refused();
            }
            return None;
        }
        Some(ConnectionPermit(self.clone()))
    }

    /// Connections holding a permit now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The budget.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// One connection's place in the budget, given back when dropped.
#[derive(Debug)]
pub struct ConnectionPermit(Arc<ConnectionLimit>);

impl ConnectionPermit {
    /// Runs `f` holding the permit (a connection served by a task of its own).
    pub async fn hold<F: Future>(self, f: F) -> F::Output {
        let out = f.await;
        drop(self);
        out
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The default budget: half of the open-files soft limit left after a reserve.
///
/// Half, because a proxied connection usually needs an upstream socket too; a budget that let
/// downstream connections take every descriptor would leave none to reach the upstreams.
/// With the common soft limit of 1,024 that is 384 connections; raise `ulimit -n` (or pass
/// `--max-connections`) for more.
pub fn default_max_connections() -> usize {
    budget_for(open_files_limit())
}

fn budget_for(soft_limit: Option<u64>) -> usize {
    let fds = soft_limit.unwrap_or(UNLIMITED_FDS);
    // A small limit keeps three quarters of itself rather than going to zero.
    let usable = fds.saturating_sub(FD_RESERVE.min(fds / 4));
    usize::try_from(usable / 2).unwrap_or(usize::MAX).max(1)
}

/// The soft `RLIMIT_NOFILE`, `None` when unlimited.
#[cfg(unix)]
fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
fn open_files_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_and_given_back() {
        let limit = ConnectionLimit::new(2, None);
        let a = limit.try_acquire().unwrap();
        let b = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none(), "the third is refused");
        assert_eq!(limit.open(), 2);
        drop(a);
        let c = limit.try_acquire();
        assert!(c.is_some());
        drop((b, c));
        assert_eq!(limit.open(), 0);
    }

    #[test]
    fn the_default_budget_leaves_room_for_upstreams_and_a_reserve() {
        assert_eq!(budget_for(Some(1024)), 384);
        assert_eq!(budget_for(Some(20_000)), 9_872);
        assert_eq!(budget_for(Some(256)), 96);
        assert_eq!(budget_for(Some(0)), 1);
        assert_eq!(budget_for(None), 524_160);
        assert!(default_max_connections() >= 1);
    }
}
