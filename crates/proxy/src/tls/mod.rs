//! TLS: termination and SNI passthrough on gateway listeners, origination to upstreams.
//!
//! The snapshot only says which certificate a listener or cluster needs ([`sluice_config::tls`]);
//! the material lives in a [`CertStore`] outside it, and the rustls configs built from both are
//! cached per (policy, material generation), so a reload that keeps a server's TLS settings
//! reuses its config and a rotated certificate is picked up by the next handshake.

pub mod accept;
pub mod certs;
mod client_config;
pub(crate) mod errors;
pub mod peer;
mod server_config;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ServerConfig};
use sluice_config::tls::{ClientTls, ServerTls, TlsVersion};

pub use certs::{CertError, CertStore};
pub use errors::HandshakeFailures;

/// Why a TLS config could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// Certificate material is missing or invalid.
    #[error(transparent)]
    Material(#[from] CertError),
    /// A terminating server has no certificate configured.
    #[error("no server certificate configured")]
    NoCertificate,
    /// MUTUAL without a client CA.
    #[error("no CA to verify client certificates (caCertificates or credentialName)")]
    NoClientCa,
    /// rustls refused the settings.
    #[error("TLS settings: {0}")]
    Config(rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// Configs by the policy they were built from, valid for one material generation.
struct Cache<K, V> {
    generation: u64,
    map: HashMap<Arc<K>, Arc<V>>,
}

impl<K, V> Default for Cache<K, V> {
    fn default() -> Self {
        Cache {
            generation: 0,
            map: HashMap::new(),
        }
    }
}

/// Looks `key` up in `cache` for `generation`, building and inserting on a miss.
fn cached<K: Hash + Eq, V>(
    cache: &ArcSwap<Cache<K, V>>,
    generation: u64,
    key: &Arc<K>,
    build: impl FnOnce() -> Result<V, TlsError>,
) -> Result<Arc<V>, TlsError> {
    {
        let current = cache.load();
        if current.generation == generation {
            if let Some(v) = current.map.get(key) {
                return Ok(v.clone());
            }
        }
    }
    let value = Arc::new(build()?);
    cache.rcu(|old| {
        let mut map = if old.generation == generation {
            old.map.clone()
        } else {
            HashMap::new()
        };
        map.insert(key.clone(), value.clone());
        Cache { generation, map }
    });
    Ok(value)
}

struct Inner {
    store: CertStore,
    provider: Arc<CryptoProvider>,
    servers: ArcSwap<Cache<ServerTls, ServerConfig>>,
    clients: ArcSwap<Cache<ClientTls, ClientConfig>>,
    meshes: ArcSwap<Cache<MeshServer, ServerConfig>>,
    failures: HandshakeFailures,
}

/// What a mesh inbound chain accepts: peers of these trust domains, from this TLS version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MeshServer {
    /// The mesh's trust domain and its aliases.
    pub trust_domains: Vec<String>,
    /// The lowest TLS version (MeshConfig `meshMTLS.minProtocolVersion`).
    pub min_version: TlsVersion,
}

/// Certificate material and the TLS configs built from it; cheap to clone.
#[derive(Clone)]
pub struct TlsRuntime {
    inner: Arc<Inner>,
}

impl Default for TlsRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TlsRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsRuntime")
    }
}

/// How often certificate files are checked for changes.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

impl TlsRuntime {
    /// An empty store, with the process's `ring` provider.
    pub fn new() -> Self {
        TlsRuntime {
            inner: Arc::new(Inner {
                store: CertStore::default(),
                provider: Arc::new(rustls::crypto::ring::default_provider()),
                servers: ArcSwap::default(),
                clients: ArcSwap::default(),
                meshes: ArcSwap::default(),
                failures: HandshakeFailures::default(),
            }),
        }
    }

    /// The certificate store (Kubernetes Secrets are fed into it).
    pub fn store(&self) -> &CertStore {
        &self.inner.store
    }

    /// Handshake failure accounting.
    pub fn failures(&self) -> &HandshakeFailures {
        &self.inner.failures
    }

    /// The server config for a terminating server's settings.
    pub fn server_config(&self, tls: &Arc<ServerTls>) -> Result<Arc<ServerConfig>, TlsError> {
        let i = &self.inner;
        cached(&i.servers, i.store.generation(), tls, || {
            server_config::build(tls, &i.store, &i.provider)
        })
    }

    /// The server config terminating mesh mTLS with the workload certificate.
    pub fn mesh_server_config(
        &self,
        mesh: &Arc<MeshServer>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let i = &self.inner;
        cached(&i.meshes, i.store.generation(), mesh, || {
            server_config::build_mesh(&mesh.trust_domains, mesh.min_version, &i.store, &i.provider)
        })
    }

    /// The client config for a cluster's upstream TLS.
    pub fn client_config(&self, tls: &Arc<ClientTls>) -> Result<Arc<ClientConfig>, TlsError> {
        let i = &self.inner;
        cached(&i.clients, i.store.generation(), tls, || {
            client_config::build(tls, &i.store, &i.provider)
        })
    }

    /// Re-reads changed certificate files until the process ends (a weak handle: it stops when
    /// the runtime is dropped).
    pub fn spawn_refresh(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let store = inner.store.clone();
                drop(inner);
                // A handful of stat calls; off the workers all the same, as file systems stall.
                let _ = tokio::task::spawn_blocking(move || store.refresh()).await;
            }
        });
    }
}
