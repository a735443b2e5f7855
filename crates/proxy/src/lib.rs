//! The HTTP data plane: listeners, routing each request with the active snapshot, forwarding.

pub mod body;
pub mod config_handle;
pub mod error;
pub mod handler;
pub mod headers;
pub mod server;
pub mod upstream;

pub use body::Body;
pub use config_handle::{ConfigHandle, RejectedReload};
pub use handler::{ProxyContext, ResponseFlags};
pub use server::ListenerManager;
pub use upstream::Upstreams;
