//! Tutorial tools bundled with sluice: a test backend service and a traffic
//! generator, so the Istio task walkthroughs run without curl loops or httpbin.

pub mod backend;
pub mod duration;
pub mod traffic;

pub use backend::{Backend, BackendArgs, BackendHandle, ReceivedRequest};
pub use duration::parse_duration;
pub use traffic::{run_traffic, verdict, KeyBy, Report, TrafficArgs};
