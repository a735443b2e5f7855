//! Hands the workload certificate the identity room issues (and re-issues at half-life) to
//! the proxy's certificate store, where mesh mTLS picks it up at the next handshake.

use std::sync::Arc;

use sluice_identity::WorkloadCert;
use sluice_proxy::tls::CertStore;
use tokio::sync::watch;

/// Installs the current certificate now and every renewal after it, until the issuer stops.
pub fn follow(mut certs: watch::Receiver<Arc<WorkloadCert>>, store: CertStore) {
    install(&certs.borrow_and_update(), &store);
    tokio::spawn(async move {
        while certs.changed().await.is_ok() {
            let cert = certs.borrow_and_update().clone();
            install(&cert, &store);
        }
    });
}

fn install(cert: &WorkloadCert, store: &CertStore) {
    match store.set_mesh(cert.chain.clone(), cert.key.clone_key(), cert.roots.clone()) {
        Ok(()) => tracing::info!(identity = %cert.id, "workload certificate installed"),
        // The previous certificate stays in use; the next renewal tries again.
        Err(e) => tracing::error!(identity = %cert.id, error = %e, "workload certificate refused"),
    }
}
