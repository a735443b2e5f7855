//! Workload identity for sluice: SPIFFE ids, Istio's plug-in CA layout, workload certificates
//! issued from it, and their rotation.

mod bundle;
mod error;
pub mod init;
mod rotate;
mod spiffe;
mod workload;

pub use bundle::{CaBundle, CA_CERT, CA_KEY, CERT_CHAIN, LAYOUT, ROOT_CERT};
pub use error::IdentityError;
pub use rotate::{rotate, CaDir, IssueFuture, Issuer, DEFAULT_TTL};
pub use spiffe::{SpiffeId, SCHEME};
pub use workload::{pem_certs, WorkloadCert, BACKDATE};
