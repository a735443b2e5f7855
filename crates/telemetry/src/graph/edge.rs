//! Graph edges: the per-edge sliding window of 1-second buckets with request and 5xx counts and
//! a latency histogram per bucket (4 bins per power of two of microseconds: ≤ 12.5 % error).

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use crate::cache::FxHasher;
use crate::labels::PeerLabels;

use super::now_secs;

pub(super) const BINS: usize = 128;

/// The names identifying an edge; the proxy passes them at record time.
#[derive(Debug, Clone, Copy)]
pub struct EdgeKey<'a> {
    /// The traffic source node ([`listener_source`] of the listener the request came in on).
    pub source: &'a str,
    /// Virtual host name.
    pub virtual_host: &'a str,
    /// Route name.
    pub route: &'a str,
    /// Destination service host.
    pub service: &'a str,
    /// Destination subset.
    pub subset: Option<&'a str>,
    /// A mirror copy (not part of the split).
    pub mirror: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct OwnedKey {
    pub(super) source: String,
    pub(super) virtual_host: String,
    pub(super) route: String,
    pub(super) service: String,
    pub(super) subset: Option<String>,
    pub(super) mirror: bool,
}

impl OwnedKey {
    pub(super) fn of(k: &EdgeKey<'_>) -> OwnedKey {
        OwnedKey {
            source: k.source.to_string(),
            virtual_host: k.virtual_host.to_string(),
            route: k.route.to_string(),
            service: k.service.to_string(),
            subset: k.subset.map(str::to_string),
            mirror: k.mirror,
        }
    }

    pub(super) fn matches(&self, k: &EdgeKey<'_>) -> bool {
        self.mirror == k.mirror
            && self.service == k.service
            && self.subset.as_deref() == k.subset
            && self.route == k.route
            && self.virtual_host == k.virtual_host
            && self.source == k.source
    }

    pub(super) fn group(&self) -> (&str, &str, &str) {
        (&self.source, &self.virtual_host, &self.route)
    }
}

pub(super) fn edge_hash(k: &EdgeKey<'_>) -> u64 {
    use std::hash::Hasher;
    let mut h = FxHasher::default();
    h.write_str_sampled(k.source);
    h.write_str_sampled(k.virtual_host);
    h.write_str_sampled(k.route);
    h.write_str_sampled(k.service);
    h.write_str_sampled(k.subset.unwrap_or("\0"));
    h.write_u8(u8::from(k.mirror));
    h.finish()
}

/// Latency bin of a duration: 4 bins per power of two of microseconds.
fn bin_of(d: Duration) -> usize {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    let e = 63 - us.leading_zeros() as usize;
    let frac = if e >= 2 {
        (us >> (e - 2)) & 3
    } else {
        (us << (2 - e)) & 3
    } as usize;
    (4 * e + frac).min(BINS - 1)
}

/// Midpoint of a bin, in milliseconds.
fn bin_mid_ms(bin: usize) -> f64 {
    let e = (bin / 4) as i32;
    let frac = (bin % 4) as f64;
    let lower = 2f64.powi(e) * (1.0 + frac / 4.0);
    let upper = 2f64.powi(e) * (1.0 + (frac + 1.0) / 4.0);
    (lower + upper) / 2.0 / 1000.0
}

#[derive(Clone)]
struct Bucket {
    sec: u64,
    requests: u64,
    errors: u64,
    latency: [u32; BINS],
}

impl Bucket {
    fn empty() -> Bucket {
        Bucket {
            sec: 0,
            requests: 0,
            errors: 0,
            latency: [0; BINS],
        }
    }
}

struct EdgeState {
    buckets: Vec<Bucket>,
    first_sec: u64,
    last_peer: u32,
    version: Option<String>,
    workloads: BTreeSet<String>,
}

/// One edge's window; keep the `Arc` to record without the map lookup.
pub struct Edge {
    pub(super) key: OwnedKey,
    window: u64,
    state: Mutex<EdgeState>,
    /// The route split counter of this edge's destination, resolved once (saves a lookup).
    split: OnceLock<Counter>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").field("key", &self.key).finish()
    }
}

/// At most this many workload names are listed per destination node.
const MAX_WORKLOADS: usize = 16;

impl Edge {
    pub(super) fn new(key: OwnedKey, window: u64) -> Edge {
        Edge {
            key,
            window,
            split: OnceLock::new(),
            state: Mutex::new(EdgeState {
                buckets: vec![Bucket::empty(); usize::try_from(window).unwrap_or(1)],
                first_sec: u64::MAX,
                last_peer: 0,
                version: None,
                workloads: BTreeSet::new(),
            }),
        }
    }

    /// The split counter attached to this edge, made by `make` on first use.
    pub(crate) fn split_counter(&self, make: impl FnOnce() -> Counter) -> &Counter {
        self.split.get_or_init(make)
    }

    /// Records one request now.
    pub fn record(&self, destination: Option<&PeerLabels>, status: u16, duration: Duration) {
        self.record_at(now_secs(), destination, status, duration);
    }

    /// Records one request at `now_secs` (Unix seconds).
    pub fn record_at(
        &self,
        now_secs: u64,
        destination: Option<&PeerLabels>,
        status: u16,
        duration: Duration,
    ) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let idx = usize::try_from(now_secs % self.window).unwrap_or(0);
        let Some(b) = st.buckets.get_mut(idx) else {
            return;
        };
        if b.sec != now_secs {
            if b.sec > now_secs {
                // The clock went back past this slot's data: too old to count.
                return;
            }
            *b = Bucket::empty();
            b.sec = now_secs;
        }
        b.requests += 1;
        if status >= 500 {
            b.errors += 1;
        }
        if let Some(bin) = b.latency.get_mut(bin_of(duration)) {
            *bin = bin.saturating_add(1);
        }
        st.first_sec = st.first_sec.min(now_secs);
        if let Some(p) = destination {
            // Compare interned ids so the common case (same endpoint as last time) is free.
            if p.id() != st.last_peer {
                st.last_peer = p.id();
                if st.version.as_deref() != Some(p.canonical_revision.as_str()) {
                    st.version = Some(p.canonical_revision.clone());
                }
                if st.workloads.len() < MAX_WORKLOADS && !st.workloads.contains(&p.workload) {
                    st.workloads.insert(p.workload.clone());
                }
            }
        }
    }

    /// Forgets the window's requests (not the destination's version and workloads): the
    /// edge's route was changed by a reload.
    pub(super) fn reset(&self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.buckets.fill(Bucket::empty());
        st.first_sec = u64::MAX;
    }

    pub(super) fn stats_at(&self, now_secs: u64) -> EdgeStats {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut s = EdgeStats {
            version: st.version.clone(),
            workloads: st.workloads.iter().cloned().collect(),
            ..Default::default()
        };
        let mut bins = [0u64; BINS];
        for b in st
            .buckets
            .iter()
            .filter(|b| b.sec <= now_secs && b.sec + self.window > now_secs && b.requests > 0)
        {
            s.requests += b.requests;
            s.errors += b.errors;
            for (acc, n) in bins.iter_mut().zip(b.latency.iter()) {
                *acc += u64::from(*n);
            }
        }
        if st.first_sec <= now_secs {
            s.elapsed = (now_secs - st.first_sec + 1).min(self.window);
        }
        s.p50_ms = percentile(&bins, s.requests, 0.50);
        s.p99_ms = percentile(&bins, s.requests, 0.99);
        s
    }
}

fn percentile(bins: &[u64; BINS], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, n) in bins.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bin_mid_ms(i));
        }
    }
    None
}

#[derive(Default)]
pub(super) struct EdgeStats {
    pub(super) requests: u64,
    pub(super) errors: u64,
    /// Seconds of the window the edge has existed for (the rate's denominator).
    pub(super) elapsed: u64,
    pub(super) p50_ms: Option<f64>,
    pub(super) p99_ms: Option<f64>,
    pub(super) version: Option<String>,
    pub(super) workloads: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_monotonic_and_bounded() {
        let mut last = 0;
        for us in [1u64, 2, 3, 5, 8, 100, 1000, 1500, 60_000_000, u64::MAX] {
            let b = bin_of(Duration::from_micros(us));
            assert!(b >= last, "{us}µs");
            last = b;
        }
        assert_eq!(bin_of(Duration::from_secs(1_000_000)), BINS - 1);
        // A bin's midpoint is within 12.5 % of any value in it.
        for us in [7u64, 1000, 1234, 99_999, 3_000_000] {
            let mid = bin_mid_ms(bin_of(Duration::from_micros(us))) * 1000.0;
            assert!((mid / us as f64 - 1.0).abs() <= 0.125, "{us}: {mid}");
        }
    }
}
