//! Per-cluster circuit breaking (DestinationRule `connectionPool`): limits on active and pending
//! requests and on concurrent retries, enforced before a request reaches the connection pool.
//!
//! hyper-util's pool has no per-host limit, so the limits live here, keyed by cluster name and
//! kept across config reloads (a reload with new limits replaces the state for new requests).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use sluice_config::policy::PoolLimits;
use sluice_config::tls::ClientTls;
use tokio::sync::Notify;

use crate::request_window::RequestWindow;
use crate::tls::TlsRuntime;
use crate::upstream::connect::UpstreamTls;
use crate::upstream::ClusterPool;

/// Limits and counters of one cluster.
#[derive(Debug)]
pub struct ClusterRuntime {
    limits: PoolLimits,
    max_active: u32,
    active: AtomicU32,
    pending: AtomicU32,
    retries: AtomicU32,
    released: Notify,
    /// Requests started within the retry budget's `budgetInterval`, when it has one.
    window: Option<RequestWindow>,
    /// HTTP/2 upstream (the port's protocol, or `h2UpgradePolicy: UPGRADE`).
    h2: bool,
    /// The port's protocol speaks HTTP/2 (what the runtime was built for).
    protocol_h2: bool,
    /// Upstream TLS it was built for.
    tls: Option<Arc<ClientTls>>,
    pool: Option<ClusterPool>,
}

/// The cluster is over its limits: Envoy answers 503 with flag UO.
#[derive(Debug, thiserror::Error)]
#[error("circuit breaker overflow")]
pub struct Overflow;

/// An admitted request; releases its slot on drop.
#[derive(Debug)]
pub struct ActiveGuard(Arc<ClusterRuntime>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.released.notify_one();
    }
}

/// A retry in flight; releases on drop.
#[derive(Debug)]
pub struct RetryGuard(Arc<ClusterRuntime>);

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ClusterRuntime {
    fn new(limits: PoolLimits, protocol_h2: bool, tls: Option<UpstreamTls>) -> Self {
        let h2 = protocol_h2 || limits.h2_upgrade;
        let policy = tls.as_ref().map(|t| t.policy.clone());
        let pool = ClusterPool::for_limits(&limits, tls);
        // HTTP/1.1 carries one request per connection at a time, so maxConnections bounds the
        // active requests too; HTTP/2 multiplexes and only http2MaxRequests applies.
        let max_active = if h2 {
            limits.max_requests
        } else {
            limits.max_requests.min(limits.max_connections)
        };
        let window = limits
            .retry_budget
            .and_then(|b| b.interval)
            .map(RequestWindow::new);
        ClusterRuntime {
            limits,
            max_active,
            active: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            retries: AtomicU32::new(0),
            released: Notify::new(),
            window,
            h2,
            protocol_h2,
            tls: policy,
            pool,
        }
    }

    fn try_take(&self) -> bool {
        let taken = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                (a < self.max_active).then_some(a + 1)
            })
            .is_ok();
        if taken {
            if let Some(w) = &self.window {
                w.record();
            }
        }
        taken
    }

    /// Admits a request if a slot is free now, without queueing.
    pub fn try_admit(self: &Arc<Self>) -> Option<ActiveGuard> {
        self.try_take().then(|| ActiveGuard(self.clone()))
    }

    /// Admits a request: immediately, after queueing as pending, or not at all (overflow).
    pub async fn admit(self: &Arc<Self>) -> Result<ActiveGuard, Overflow> {
        if self.try_take() {
            return Ok(ActiveGuard(self.clone()));
        }
        let queued = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p < self.limits.max_pending_requests).then_some(p + 1)
            })
            .is_ok();
        if !queued {
            return Err(Overflow);
        }
        struct Pending<'a>(&'a AtomicU32);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _pending = Pending(&self.pending);
        loop {
            let notified = self.released.notified();
            if self.try_take() {
                return Ok(ActiveGuard(self.clone()));
            }
            notified.await;
        }
    }

    /// Admits a relayed TCP connection now or not at all: `maxConnections` bounds them, and
    /// Envoy's TCP proxy closes an overflowing connection rather than queueing it.
    pub fn try_connection(self: &Arc<Self>) -> Option<ActiveGuard> {
        self.try_take().then(|| ActiveGuard(self.clone()))
    }

    /// Takes a retry slot: `maxRetries` concurrent retries per cluster or, with a retry budget,
    /// its share of the active and pending requests, or of the requests started within its
    /// `budgetInterval` (Envoy ignores `maxRetries` then).
    pub fn try_retry(self: &Arc<Self>) -> Option<RetryGuard> {
        let max = match &self.limits.retry_budget {
            Some(budget) => budget.max_retries(match &self.window {
                Some(w) => u32::try_from(w.count()).unwrap_or(u32::MAX),
                None => self
                    .active
                    .load(Ordering::Acquire)
                    .saturating_add(self.pending.load(Ordering::Acquire)),
            }),
            None => self.limits.max_retries,
        };
        self.retries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                (r < max).then_some(r + 1)
            })
            .ok()
            .map(|_| RetryGuard(self.clone()))
    }

    /// Requests in flight.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// Whether requests go upstream as HTTP/2.
    pub fn upstream_h2(&self) -> bool {
        self.h2
    }

    /// Whether a request that came downstream as `version` goes upstream as HTTP/2: as it
    /// came with `useClientProtocol` (Envoy's `use_downstream_protocol`), else as the cluster
    /// says.
    pub fn upstream_h2_for(&self, version: http::Version) -> bool {
        if self.limits.use_client_protocol {
            version == http::Version::HTTP_2
        } else {
            self.h2
        }
    }

    /// The cluster's own connection pool, when its DestinationRule changes a connection setting.
    pub fn pool(&self) -> Option<&ClusterPool> {
        self.pool.as_ref()
    }

    /// The limits in force.
    pub fn limits(&self) -> &PoolLimits {
        &self.limits
    }
}

/// Cluster runtimes by name: read without a lock on every request, replaced copy-on-write when
/// a cluster appears or its limits change (rare: config reloads).
#[derive(Debug, Default)]
pub struct ClusterRuntimes {
    by_name: ArcSwap<HashMap<String, Arc<ClusterRuntime>, foldhash::fast::RandomState>>,
    writer: Mutex<()>,
    tls: TlsRuntime,
}

impl ClusterRuntimes {
    /// Runtimes whose upstream TLS configs come from `tls`.
    pub fn new(tls: TlsRuntime) -> Self {
        ClusterRuntimes {
            by_name: ArcSwap::default(),
            writer: Mutex::new(()),
            tls,
        }
    }

    /// The runtime of a cluster, created (or replaced when its limits, protocol or upstream
    /// TLS changed) on demand.
    pub fn get(
        &self,
        name: &str,
        limits: &PoolLimits,
        h2: bool,
        tls: Option<&Arc<ClientTls>>,
    ) -> Arc<ClusterRuntime> {
        let current_for = |rt: &ClusterRuntime| {
            rt.limits == *limits && rt.protocol_h2 == h2 && rt.tls.as_ref() == tls
        };
        if let Some(rt) = self.by_name.load().get(name) {
            if current_for(rt) {
                return rt.clone();
            }
        }
        let _writer = match self.writer.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let current = self.by_name.load_full();
        if let Some(rt) = current.get(name) {
            if current_for(rt) {
                return rt.clone();
            }
        }
        let upstream_tls = tls.map(|policy| UpstreamTls {
            policy: policy.clone(),
            runtime: self.tls.clone(),
        });
        let rt = Arc::new(ClusterRuntime::new(limits.clone(), h2, upstream_tls));
        let mut next = (*current).clone();
        next.insert(name.to_string(), rt.clone());
        self.by_name.store(Arc::new(next));
        rt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_active_one_pending_then_overflow() {
        let limits = PoolLimits {
            max_connections: 1,
            max_pending_requests: 1,
            ..PoolLimits::default()
        };
        let rts = ClusterRuntimes::default();
        let rt = rts.get("c", &limits, false, None);
        let first = rt.admit().await.unwrap();
        let rt2 = rt.clone();
        let waiting = tokio::spawn(async move { rt2.admit().await.map(|_| ()) });
        tokio::task::yield_now().await;
        assert!(rt.admit().await.is_err(), "third request must overflow");
        drop(first);
        assert!(waiting.await.unwrap().is_ok());
        assert_eq!(rt.active(), 0);
    }

    /// Envoy's retry budget: `max(minRetryConcurrency, percent × active)` concurrent retries,
    /// whatever `maxRetries` says.
    #[test]
    fn retry_budget_follows_the_active_requests() {
        let limits = PoolLimits {
            max_retries: 100,
            retry_budget: Some(sluice_config::policy::RetryBudget {
                percent: 20.0,
                min_retry_concurrency: 2,
                interval: None,
            }),
            ..PoolLimits::default()
        };
        let rts = ClusterRuntimes::default();
        let rt = rts.get("c", &limits, false, None);
        // Few requests: the minimum concurrency applies.
        let a = rt.try_retry().unwrap();
        let b = rt.try_retry().unwrap();
        assert!(rt.try_retry().is_none());
        // Twenty active requests: 20 % of them, 4 retries.
        let active: Vec<_> = (0..20).map(|_| rt.try_admit().unwrap()).collect();
        let more: Vec<_> = (0..2).map(|_| rt.try_retry().unwrap()).collect();
        assert!(rt.try_retry().is_none());
        drop((a, b, more, active));
        assert_eq!(rt.active(), 0);
    }

    /// With `budgetInterval` the budget follows the requests started within it, finished or
    /// not: 20 requests in the last 10 s allow 4 concurrent retries with none active.
    #[tokio::test(start_paused = true)]
    async fn retry_budget_interval_counts_the_recent_requests() {
        let limits = PoolLimits {
            retry_budget: Some(sluice_config::policy::RetryBudget {
                percent: 20.0,
                min_retry_concurrency: 1,
                interval: Some(std::time::Duration::from_secs(10)),
            }),
            ..PoolLimits::default()
        };
        let rt = ClusterRuntimes::default().get("c", &limits, false, None);
        for _ in 0..20 {
            drop(rt.try_admit().unwrap());
        }
        assert_eq!(rt.active(), 0);
        let retries: Vec<_> = (0..4).map(|_| rt.try_retry().unwrap()).collect();
        assert!(rt.try_retry().is_none());
        drop(retries);
        // Once the interval has passed, only the minimum concurrency is left.
        tokio::time::advance(std::time::Duration::from_secs(11)).await;
        let one = rt.try_retry().unwrap();
        assert!(rt.try_retry().is_none());
        drop(one);
    }

    #[test]
    fn retry_budget() {
        let limits = PoolLimits {
            max_retries: 1,
            ..PoolLimits::default()
        };
        let rt = ClusterRuntimes::default().get("c", &limits, false, None);
        let g = rt.try_retry();
        assert!(g.is_some());
        assert!(rt.try_retry().is_none());
        drop(g);
        assert!(rt.try_retry().is_some());
    }

    /// A reload that only changes a port's protocol (HTTP ↔ HTTP2/GRPC) or the upstream TLS
    /// gets a new runtime: the old one would keep speaking the old protocol.
    #[test]
    fn protocol_or_tls_change_replaces_the_runtime() {
        let rts = ClusterRuntimes::default();
        let limits = PoolLimits::default();
        let http1 = rts.get("c", &limits, false, None);
        assert!(!http1.upstream_h2());
        assert!(Arc::ptr_eq(&http1, &rts.get("c", &limits, false, None)));
        let h2 = rts.get("c", &limits, true, None);
        assert!(h2.upstream_h2());
        let tls = Arc::new(ClientTls {
            certificate: None,
            ca: sluice_config::tls::CaSource::System,
            sni: "c.example.com".into(),
            subject_alt_names: Vec::new(),
            insecure_skip_verify: false,
            ca_crl: None,
            h2: true,
        });
        let with_tls = rts.get("c", &limits, true, Some(&tls));
        assert!(!Arc::ptr_eq(&h2, &with_tls));
        assert!(
            with_tls.pool().is_some(),
            "TLS clusters have pools of their own"
        );
        assert!(Arc::ptr_eq(
            &with_tls,
            &rts.get("c", &limits, true, Some(&tls))
        ));
    }
}
