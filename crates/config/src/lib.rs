//! Validation and compilation of Istio config into an immutable routing [`Snapshot`].
//!
//! Pure: no I/O, no async. The proxy, `analyze` and `explain` all use the same [`route`] function.

pub mod analyze;
pub mod authz;
pub mod canary;
pub mod cluster;
pub mod cluster_map;
pub mod compile;
pub mod dns;
pub mod domain_index;
pub mod duration;
pub mod explain;
pub mod host;
pub mod jwt_claim;
pub mod labels;
pub mod listener;
pub mod load;
pub mod local_cluster;
pub mod matcher;
pub mod outbound;
pub mod pipe;
pub mod policy;
pub mod protocol;
pub mod proxy;
pub mod registry;
pub mod route_table;
pub mod scope;
pub mod snapshot;
pub mod tcp_route;
pub mod tls;
pub mod validate;
pub mod vhost;

#[cfg(test)]
mod scale_tests;

pub use load::{
    build_snapshot, build_snapshot_resolved, build_snapshot_unless, build_snapshot_with,
    is_blocking, BuildInputs, Rejected, Stopped,
};
pub use matcher::RequestInfo;
pub use proxy::ProxyConfig;
pub use snapshot::{route, BuildTimings, RouteMatch, Routed, Snapshot};
