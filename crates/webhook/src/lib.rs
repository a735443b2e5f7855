//! `sluice webhook`: Kubernetes admission webhooks served over HTTPS.
//!
//! - `/inject` (mutating): adds the sidecar that `sluice inject` adds, as a JSONPatch, to Pods
//!   selected by Istio's rules ([`selection`]), with the namespace's labels read from the API
//!   server.
//! - `/validate` (validating): refuses networking.istio.io and security.istio.io objects that
//!   Istio's webhook would refuse, naming the field and the reason.
//!
//! The serving certificate is read from files and re-read when they change ([`cert`]).

pub mod args;
pub mod cert;
pub mod error;
pub mod inject;
pub mod review;
pub mod selection;
pub mod server;
pub mod validate;

pub use args::{run, WebhookArgs};
pub use cert::FileCert;
pub use error::WebhookError;
pub use inject::{Injector, NamespaceLabels};
pub use selection::{decide, Decision};
pub use server::{serve, Webhook};
pub use validate::validate;
