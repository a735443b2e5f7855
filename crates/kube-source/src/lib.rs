//! Kubernetes mode of sluice: watch the Istio CRDs and the cluster's Services through the same
//! config store as file mode, inject sidecars, and set up transparent interception.
//!
//! - `source`: [`KubeSource`] (list + watch, per-object admission, Services as ServiceEntries)
//!   behind the [`ConfigSource`] trait the runtime reads from.
//! - `inject`: `sluice inject`, like `istioctl kube-inject`.
//! - `iptables`: `sluice iptables`, the init container's nat rules.

pub mod args;
pub mod canary;
pub mod client;
pub mod inject;
pub mod iptables;
pub mod labels;
pub mod root_cert;
pub mod source;
pub mod token_review;

pub use args::{start, KubeArgs};
pub use client::{connect, install_crypto_provider};
pub use inject::{inject, InjectArgs};
pub use iptables::{plan, IptablesArgs};
pub use source::{next_change, ConfigSource, KubeOptions, KubeSource, SecretFeed, SecretSink};
