//! The load balancer of one cluster: an algorithm over an endpoint list, honouring outlier
//! ejections, panic mode and the retry exclusion list.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use crate::detector::OutlierDetector;
use crate::endpoint::{InFlight, LbEndpoint};
use crate::layout::LocalityLayout;
use crate::least_request::LeastRequest;
use crate::maglev::Maglev;
use crate::outlier::{Ejection, FailureKind, OutlierConfig};
use crate::random::{Rng, WeightedRandom};
use crate::ring_hash::RingHash;
use crate::schedule::WeightedSchedule;
use crate::selection::{candidates, Candidates};
use crate::slow_start::{self, SlowStart};
use crate::state::StateStore;

/// DestinationRule `loadBalancer`, as the balancer needs it (`PASSTHROUGH` is not balancing and
/// stays in the proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbAlgorithm {
    /// Smooth weighted round robin ([`WeightedSchedule`]).
    RoundRobin,
    /// Power of two choices on in-flight requests (Istio's default, also `LEAST_CONN`).
    LeastRequest,
    /// Weighted random.
    Random,
    /// Consistent hashing on a Ketama ring ([`RingHash`]).
    RingHash {
        /// `minimumRingSize` (Istio default 1024).
        minimum_ring_size: u64,
    },
    /// Consistent hashing with a Maglev table ([`Maglev`]).
    Maglev {
        /// `tableSize`, prime (Istio default 65537).
        table_size: u64,
    },
}

/// Everything one pick depends on besides the balancer itself.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    /// The time ejections are compared with; `None` reads the clock if an ejection check needs
    /// it (without outlier detection none does).
    pub now: Option<Instant>,
    /// Random bits for this pick (e.g. `rand::random()` or [`fresh_seed`](crate::fresh_seed)).
    pub random: u64,
    /// The request's consistent-hash key ([`hash_key`](crate::hash_key) of the header, cookie,
    /// source IP or query value). Ignored by non-hash algorithms; when absent, hash algorithms
    /// use `random` instead (Envoy: no hash ⇒ effectively random).
    pub hash: Option<u64>,
    /// Endpoint indices tried by earlier attempts of this request, to avoid on retry (Istio
    /// omits this with consistent hashing: pass `&[]` there).
    pub exclude: &'a [usize],
    /// A retry that should leave the priority levels (localities) of `exclude` for others
    /// (`retryRemoteLocalities`, Envoy's `previous_priorities`); ignored without localities.
    pub other_levels: bool,
}

impl PickContext<'static> {
    /// A context with no hash and nothing to exclude.
    pub fn new(now: Instant, random: u64) -> Self {
        PickContext {
            now: Some(now),
            ..PickContext::at_pick_time(random)
        }
    }

    /// A context that reads the clock when it picks, and only if it must.
    pub fn at_pick_time(random: u64) -> Self {
        PickContext {
            now: None,
            random,
            hash: None,
            exclude: &[],
            other_levels: false,
        }
    }
}

impl<'a> PickContext<'a> {
    /// The same context with a hash key.
    pub fn with_hash(self, hash: Option<u64>) -> Self {
        PickContext { hash, ..self }
    }

    /// The same context avoiding `exclude` (falls back to them if nothing else is available).
    pub fn excluding<'b>(self, exclude: &'b [usize]) -> PickContext<'b> {
        PickContext {
            now: self.now,
            random: self.random,
            hash: self.hash,
            exclude,
            other_levels: self.other_levels,
        }
    }

    /// The same context, moving retries to other priority levels (`retryRemoteLocalities`).
    pub fn other_levels(self, other_levels: bool) -> Self {
        PickContext {
            other_levels,
            ..self
        }
    }
}

#[derive(Debug)]
enum Kind {
    RoundRobin(WeightedSchedule),
    LeastRequest(LeastRequest),
    Random,
    RingHash(RingHash),
    Maglev(Maglev),
}

#[derive(Debug)]
struct Inner {
    algorithm: LbAlgorithm,
    endpoints: Vec<LbEndpoint>,
    weights: WeightedRandom,
    kind: Kind,
    /// Boxed: one balancer is kept per cluster and outlier detection is rarely configured.
    outlier: Option<Box<OutlierDetector>>,
    /// Priority levels and weighted localities; `None` keeps the flat path. Boxed, as slow
    /// start is: most clusters have neither.
    locality: Option<Box<LocalityLayout>>,
    /// Slow start (round robin and least request only).
    slow_start: Option<Box<SlowStart>>,
}

/// An immutable balancer for one cluster's endpoints, built at compile time and cheap to clone.
/// Picks return indices into [`Balancer::endpoints`], which keeps the order it was given.
#[derive(Debug, Clone)]
pub struct Balancer {
    inner: Arc<Inner>,
}

impl Balancer {
    /// A balancer over `endpoints`. `rr_counter` is the round-robin position (from
    /// [`StateStore::counter`], so it survives reloads; unused by other algorithms).
    /// Ring and table are built here, once.
    pub fn new(
        algorithm: LbAlgorithm,
        endpoints: Vec<LbEndpoint>,
        outlier: Option<OutlierConfig>,
        rr_counter: Arc<AtomicU64>,
    ) -> Self {
        Balancer::with_layout(algorithm, endpoints, outlier, rr_counter, None)
    }

    /// Like [`Balancer::new`], with the endpoints arranged in priority levels and weighted
    /// localities (`None`: one flat set, exactly as [`Balancer::new`]).
    pub fn with_layout(
        algorithm: LbAlgorithm,
        endpoints: Vec<LbEndpoint>,
        outlier: Option<OutlierConfig>,
        rr_counter: Arc<AtomicU64>,
        locality: Option<LocalityLayout>,
    ) -> Self {
        Balancer::build(algorithm, endpoints, outlier, rr_counter, locality, None)
    }

    /// Like [`Balancer::with_layout`], with slow start for round robin and least request
    /// (ignored by the other algorithms, as in Envoy).
    pub fn build(
        algorithm: LbAlgorithm,
        endpoints: Vec<LbEndpoint>,
        outlier: Option<OutlierConfig>,
        rr_counter: Arc<AtomicU64>,
        locality: Option<LocalityLayout>,
        slow_start: Option<SlowStart>,
    ) -> Self {
        let slow_start = slow_start.filter(|_| {
            matches!(
                algorithm,
                LbAlgorithm::RoundRobin | LbAlgorithm::LeastRequest
            )
        });
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let named =
            || -> Vec<(&str, u32)> { endpoints.iter().map(|e| (e.address(), e.weight)).collect() };
        let kind = match algorithm {
            LbAlgorithm::RoundRobin => {
                Kind::RoundRobin(WeightedSchedule::new(&weights, rr_counter))
            }
            LbAlgorithm::LeastRequest => Kind::LeastRequest(LeastRequest::new(&weights)),
            LbAlgorithm::Random => Kind::Random,
            LbAlgorithm::RingHash { minimum_ring_size } => {
                Kind::RingHash(RingHash::new(&named(), minimum_ring_size))
            }
            LbAlgorithm::Maglev { table_size } => Kind::Maglev(Maglev::new(&named(), table_size)),
        };
        Balancer {
            inner: Arc::new(Inner {
                algorithm,
                weights: WeightedRandom::new(&weights),
                endpoints,
                kind,
                outlier: outlier.map(|o| Box::new(OutlierDetector::new(o))),
                locality: locality.map(Box::new),
                slow_start: slow_start.map(Box::new),
            }),
        }
    }

    /// Builds the balancer for `cluster` from `(address, weight)` pairs, taking each endpoint's
    /// state and the round-robin position from `store` (keyed by cluster name and address).
    pub fn from_store<'a>(
        algorithm: LbAlgorithm,
        cluster: &str,
        endpoints: impl IntoIterator<Item = (&'a str, u32)>,
        outlier: Option<OutlierConfig>,
        store: &StateStore,
    ) -> Self {
        let endpoints = endpoints
            .into_iter()
            .map(|(address, weight)| LbEndpoint::new(weight, store.endpoint(cluster, address)))
            .collect();
        let counter = store.counter(&format!("lb-rr|{cluster}"));
        Balancer::new(algorithm, endpoints, outlier, counter)
    }

    /// The locality layout, when the cluster balances by priority and locality.
    pub fn layout(&self) -> Option<&LocalityLayout> {
        self.inner.locality.as_deref()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> LbAlgorithm {
        self.inner.algorithm
    }

    /// The endpoints, in the order given.
    pub fn endpoints(&self) -> &[LbEndpoint] {
        &self.inner.endpoints
    }

    /// Endpoint `index`.
    pub fn endpoint(&self, index: usize) -> Option<&LbEndpoint> {
        self.inner.endpoints.get(index)
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.inner.endpoints.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.inner.endpoints.is_empty()
    }

    /// The slow-start settings, when `warmup` applies.
    pub fn slow_start(&self) -> Option<&SlowStart> {
        self.inner.slow_start.as_deref()
    }

    /// The outlier detector, when `outlierDetection` is configured.
    pub fn outlier(&self) -> Option<&OutlierDetector> {
        self.inner.outlier.as_deref()
    }

    /// Picks an endpoint index, or `None` when no endpoint is available (503, flag `UH`).
    pub fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let inner = &*self.inner;
        if let Some(layout) = &inner.locality {
            let mut rng = Rng::new(ctx.random);
            let candidates = layout.candidates(
                &inner.endpoints,
                inner.outlier.as_deref(),
                ctx.exclude,
                ctx.other_levels,
                ctx.now,
                &mut rng,
            );
            return self.pick_among(&candidates, ctx, rng);
        }
        let candidates = candidates(
            &inner.endpoints,
            inner.outlier.as_deref(),
            ctx.exclude,
            ctx.now,
        );
        self.pick_among(&candidates, ctx, Rng::new(ctx.random))
    }

    /// Runs the algorithm over `candidates`.
    fn pick_among(
        &self,
        candidates: &Candidates,
        ctx: &PickContext<'_>,
        mut rng: Rng,
    ) -> Option<usize> {
        let inner = &*self.inner;
        if *candidates == Candidates::None {
            return None;
        }
        let mask = candidates.mask();
        let allowed = |i: usize| mask.is_none_or(|m| m.get(i).copied().unwrap_or(false));
        if let Some(ss) = &inner.slow_start {
            let now = ctx.now.unwrap_or_else(Instant::now);
            if ss.any_warming(&inner.endpoints, now) {
                return self.pick_warming(ss, now, &allowed, &mut rng);
            }
        }
        let choice = match &inner.kind {
            Kind::RoundRobin(schedule) => {
                (0..schedule.len()).find_map(|_| schedule.next().filter(|&i| allowed(i)))
            }
            Kind::LeastRequest(lr) => lr.pick(&mut rng, mask, |i| {
                inner
                    .endpoints
                    .get(i)
                    .map_or(u64::MAX, |e| e.state.in_flight())
            }),
            Kind::Random => None,
            Kind::RingHash(ring) => {
                let hash = ctx.hash.unwrap_or_else(|| rng.next_u64());
                ring.lookup_where(hash, mask)
            }
            Kind::Maglev(table) => {
                let hash = ctx.hash.unwrap_or_else(|| rng.next_u64());
                table.lookup_where(hash, mask)
            }
        };
        // Random, and the fallback when an algorithm's structure has no allowed entry.
        choice.or_else(|| match mask {
            None => inner.weights.pick(&mut rng),
            Some(_) => inner.weights.pick_where(&mut rng, allowed),
        })
    }

    /// A pick while some endpoint warms up: draws by effective weight (Envoy's schedule over
    /// the same weights gives the same shares); least request compares two such draws.
    fn pick_warming(
        &self,
        ss: &SlowStart,
        now: Instant,
        allowed: &dyn Fn(usize) -> bool,
        rng: &mut Rng,
    ) -> Option<usize> {
        let endpoints = &self.inner.endpoints;
        let first = slow_start::draw(ss, endpoints, now, rng, allowed)?;
        if !matches!(self.inner.kind, Kind::LeastRequest(_)) {
            return Some(first);
        }
        let in_flight = |i: usize| endpoints.get(i).map_or(u64::MAX, |e| e.state.in_flight());
        match slow_start::draw(ss, endpoints, now, rng, |i| i != first && allowed(i)) {
            Some(second) if in_flight(second) < in_flight(first) => Some(second),
            _ => Some(first),
        }
    }

    /// Counts a request to endpoint `index` as in flight until the guard is dropped.
    pub fn start_request(&self, index: usize) -> Option<InFlight> {
        self.endpoint(index).map(|e| e.state.start_request())
    }

    /// Reports a non-error response from endpoint `index`.
    pub fn record_success(&self, index: usize) {
        if let Some(d) = &self.inner.outlier {
            d.record_success(&self.inner.endpoints, index);
        }
    }

    /// Reports a failed attempt on endpoint `index`; returns the ejection it caused, if any.
    pub fn record_failure(
        &self,
        index: usize,
        kind: FailureKind,
        now: Instant,
    ) -> Option<Ejection> {
        let d = self.inner.outlier.as_deref()?;
        d.record_failure(&self.inner.endpoints, index, kind, now)
    }

    /// Reports an upstream response status (< 500 success, otherwise failure).
    pub fn record_status(&self, index: usize, status: u16, now: Instant) -> Option<Ejection> {
        let d = self.inner.outlier.as_deref()?;
        d.record_status(&self.inner.endpoints, index, status, now)
    }

    /// Ends expired ejections and decays multipliers (optional housekeeping); returns how many
    /// ejections ended.
    pub fn sweep(&self, now: Instant) -> usize {
        self.inner
            .outlier
            .as_ref()
            .map_or(0, |d| d.sweep(&self.inner.endpoints, now))
    }

    /// Endpoints with weight that are not ejected at `now` (all of them without outlier
    /// detection).
    pub fn healthy_count(&self, now: Instant) -> usize {
        let with_weight = self.inner.endpoints.iter().filter(|e| e.weight > 0);
        match &self.inner.outlier {
            None => with_weight.count(),
            Some(_) => with_weight
                .filter(|e| !e.state.outlier().is_ejected(now))
                .count(),
        }
    }
}
