//! Per-endpoint state that outlives config snapshots: in-flight requests and outlier state.
//!
//! The proxy gets one [`EndpointState`] per (cluster, endpoint address) from
//! [`StateStore::endpoint`](crate::StateStore::endpoint); every snapshot that contains the endpoint
//! shares it, so a reload neither forgets ejections nor resets least-request counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::outlier::OutlierState;

/// Live state of one endpoint of one cluster.
#[derive(Debug)]
pub struct EndpointState {
    address: String,
    in_flight: AtomicU64,
    outlier: OutlierState,
    /// When the endpoint joined the cluster (slow start counts from here).
    created: Instant,
}

impl EndpointState {
    /// Fresh state for `address` (`host:port`, also the consistent-hash identity).
    pub fn new(address: impl Into<String>) -> Self {
        EndpointState::new_at(address, Instant::now())
    }

    /// Fresh state for `address` that joined the cluster at `created` (tests with a fake clock).
    pub fn new_at(address: impl Into<String>, created: Instant) -> Self {
        EndpointState {
            address: address.into(),
            in_flight: AtomicU64::new(0),
            outlier: OutlierState::default(),
            created,
        }
    }

    /// When the endpoint joined the cluster (its state was first created).
    pub fn created(&self) -> Instant {
        self.created
    }

    /// Since when the endpoint has been serving without interruption at `now`: the later of
    /// joining the cluster and the end of its last ejection (what slow start counts from).
    pub fn serving_since(&self, now: Instant) -> Instant {
        match self.outlier.returned_at(now) {
            Some(t) if t > self.created => t,
            _ => self.created,
        }
    }

    /// The endpoint's `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Requests currently outstanding to this endpoint (least request reads this).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one request as in flight until the returned guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// The outlier-detection state (ejection, failure runs).
    pub fn outlier(&self) -> &OutlierState {
        &self.outlier
    }
}

/// RAII guard of one in-flight request: increments on creation, decrements on drop.
#[derive(Debug)]
#[must_use = "the request stops counting as in flight when the guard is dropped"]
pub struct InFlight(Arc<EndpointState>);

impl InFlight {
    /// The endpoint this request went to.
    pub fn endpoint(&self) -> &Arc<EndpointState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An endpoint as a balancer sees it: its weight and its shared state.
#[derive(Debug, Clone)]
pub struct LbEndpoint {
    /// Relative weight (Istio endpoint `weight`); 0 is never picked.
    pub weight: u32,
    /// Shared state from the [`StateStore`](crate::StateStore).
    pub state: Arc<EndpointState>,
}

impl LbEndpoint {
    /// Pairs a weight with the endpoint's state.
    pub fn new(weight: u32, state: Arc<EndpointState>) -> Self {
        LbEndpoint { weight, state }
    }

    /// The endpoint's `host:port`.
    pub fn address(&self) -> &str {
        self.state.address()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_guard_counts_until_dropped() {
        let e = Arc::new(EndpointState::new("10.0.0.1:80"));
        let a = e.start_request();
        let b = e.start_request();
        assert_eq!(e.in_flight(), 2);
        assert_eq!(a.endpoint().address(), "10.0.0.1:80");
        drop(a);
        assert_eq!(e.in_flight(), 1);
        drop(b);
        assert_eq!(e.in_flight(), 0);
    }

    /// One is kept per endpoint of every cluster (40,000 at 10,000 services): the ejection
    /// record, rarely made, is not inline.
    #[test]
    fn an_endpoint_state_stays_small() {
        assert!(std::mem::size_of::<EndpointState>() <= 80);
    }
}
