//! The webhook's serving certificate: PEM files kept in the proxy's [`CertStore`], whose stamp
//! polling re-reads them when they change (cert-manager renewals, a Secret volume's `..data`
//! swap), so new handshakes use the new certificate without a restart.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sluice_config::tls::CertificateSource;
use sluice_proxy::tls::CertStore;

use crate::error::WebhookError;

/// How often the files' stamps are checked (as the proxy's listeners do).
const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// Resolves the certificate read from a certificate and a key file.
pub struct FileCert {
    store: CertStore,
    source: CertificateSource,
    /// The key built for a store generation; rebuilt when the generation moves.
    current: Mutex<(u64, Arc<CertifiedKey>)>,
}

impl std::fmt::Debug for FileCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCert")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl FileCert {
    /// Reads the files; fails when they do not hold a certificate chain and its key.
    pub fn load(certificate: &Path, private_key: &Path) -> Result<Arc<Self>, WebhookError> {
        let store = CertStore::default();
        let source = CertificateSource::Files {
            certificate: certificate.display().to_string(),
            private_key: private_key.display().to_string(),
        };
        let generation = store.generation();
        let key = store.certified_key(&source)?;
        Ok(Arc::new(FileCert {
            store,
            source,
            current: Mutex::new((generation, key)),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, (u64, Arc<CertifiedKey>)> {
        match self.current.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The certificate to present now: the files' latest usable content.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let generation = self.store.generation();
        let mut cur = self.lock();
        if cur.0 != generation {
            match self.store.certified_key(&self.source) {
                Ok(key) => *cur = (generation, key),
                // Half-written files during a renewal: keep serving the previous pair.
                Err(e) => {
                    tracing::warn!(error = %e, "new serving certificate unusable; keeping the previous one");
                    cur.0 = generation;
                }
            }
        }
        cur.1.clone()
    }

    /// Re-reads the files if they changed; returns whether they did.
    pub fn refresh(&self) -> bool {
        self.store.refresh()
    }

    /// Polls the files until `self` is dropped everywhere else.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(cert) = weak.upgrade() else { return };
                // A few stat calls, off the workers all the same: file systems stall.
                let _ = tokio::task::spawn_blocking(move || cert.refresh()).await;
            }
        });
    }
}

impl ResolvesServerCert for FileCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A rustls server configuration (ring, TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1) presenting `cert`.
pub fn server_config(cert: Arc<FileCert>) -> Result<Arc<rustls::ServerConfig>, WebhookError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
