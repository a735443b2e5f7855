//! Kubernetes TLS Secrets into the proxy's certificate store.

use std::collections::BTreeMap;

use sluice_kube::SecretSink;
use sluice_proxy::tls::CertStore;

/// Feeds watched Secrets into a [`CertStore`].
#[derive(Debug, Clone)]
pub struct StoreSink(pub CertStore);

impl SecretSink for StoreSink {
    fn apply(&self, namespace: &str, name: &str, data: BTreeMap<String, Vec<u8>>) {
        self.0.set_secret(namespace, name, data);
    }

    fn remove(&self, namespace: &str, name: &str) {
        self.0.remove_secret(namespace, name);
    }
}
