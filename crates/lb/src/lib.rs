//! Load balancing with no sockets: endpoint state that survives reloads, the balancers Istio
//! offers (round robin, least request, random, ring hash, Maglev) and outlier detection.
//!
//! Time and randomness are injected (`now: Instant`, `random: u64` in [`PickContext`]), so
//! everything here is deterministic under test.
//!
//! Typical use, per cluster at compile time and per request:
//!
//! ```
//! use std::time::Instant;
//! use sluice_lb::{Balancer, LbAlgorithm, OutlierConfig, PickContext, StateStore, fresh_seed};
//!
//! let store = StateStore::new();
//! let lb = Balancer::from_store(
//!     LbAlgorithm::LeastRequest,
//!     "outbound|9080||reviews.default.svc.cluster.local",
//!     [("10.0.0.1:9080", 1), ("10.0.0.2:9080", 1)],
//!     Some(OutlierConfig::default()),
//!     &store,
//! );
//! let now = Instant::now();
//! let i = lb.pick(&PickContext::new(now, fresh_seed())).expect("503 UH otherwise");
//! let guard = lb.start_request(i); // in flight until dropped
//! lb.record_status(i, 200, now);
//! drop(guard);
//! ```

#![warn(missing_docs)]

pub mod balancer;
pub mod detector;
pub mod endpoint;
pub mod hash;
pub mod layout;
pub mod least_request;
pub mod locality;
pub mod locality_policy;
pub mod maglev;
pub mod outlier;
pub mod priority;
pub mod random;
pub mod ring_hash;
pub mod schedule;
pub mod selection;
pub mod slow_start;
pub mod state;
pub mod zone_aware;

pub use balancer::{Balancer, LbAlgorithm, PickContext};
pub use detector::OutlierDetector;
pub use endpoint::{EndpointState, InFlight, LbEndpoint};
pub use hash::hash_key;
pub use layout::{LevelSpec, LocalityLayout};
pub use least_request::LeastRequest;
pub use locality::Locality;
pub use locality_policy::{Distribute, LocalityPolicy, Origin, Placement};
pub use maglev::Maglev;
pub use outlier::{
    Ejection, EjectionReason, FailureKind, OutlierConfig, OutlierState, OutlierStatus, StatusSet,
};
pub use random::{fresh_seed, Rng, WeightedRandom};
pub use ring_hash::RingHash;
pub use schedule::WeightedSchedule;
pub use selection::Candidates;
pub use slow_start::SlowStart;
pub use state::StateStore;
pub use zone_aware::{ZoneRouting, ZoneState, DEFAULT_MIN_CLUSTER_SIZE};
