//! The HTTP data plane: listeners, routing each request with the active snapshot, forwarding.

pub mod authority;
mod black_hole;
pub mod body;
pub mod circuit_breaker;
pub mod config_handle;
pub mod downstream;
pub mod drain;
pub mod dynamic_dns;
pub mod error;
pub mod filters;
pub mod handler;
pub mod hash_key;
pub mod headers;
pub mod inbound;
pub mod intercept;
pub mod mirror;
pub mod no_route;
pub mod observe;
pub mod passthrough;
pub mod path_normalize;
pub mod port_owner;
pub mod replay;
pub mod retry;
pub mod security;
pub mod server;
pub mod tcp_proxy;
pub mod tls;
pub mod trace_span;
pub mod upstream;

pub use body::Body;
pub use config_handle::{ConfigHandle, RejectedReload};
pub use downstream::DownstreamOptions;
pub use handler::{Entry, ProxyContext, ProxyOptions, ResponseFlags};
pub use intercept::Intercept;
pub use server::ListenerManager;
pub use upstream::Upstreams;
