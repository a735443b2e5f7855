//! Workload identity for sluice: SPIFFE ids, Istio's plug-in CA layout, workload certificates
//! issued from it, their rotation, and a CA server with its client for Kubernetes.

pub mod api;
mod bundle;
mod ca_dir;
mod error;
pub mod init;
mod remote;
mod rotate;
mod server;
mod serving;
mod spiffe;
mod workload;

pub use bundle::{CaBundle, CA_CERT, CA_KEY, CERT_CHAIN, LAYOUT, ROOT_CERT};
pub use ca_dir::{CaDir, CaSource};
pub use error::IdentityError;
pub use remote::{RemoteIssuer, DEFAULT_TOKEN_FILE};
pub use rotate::{rotate, IssueFuture, Issuer, DEFAULT_TTL};
pub use server::{AuthFuture, Authenticator, CaServer, MAX_TTL};
pub use serving::ServingCert;
pub use spiffe::{SpiffeId, SCHEME};
pub use workload::{pem_certs, WorkloadCert, BACKDATE};
