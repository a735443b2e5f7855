//! Certificate material (PEM files and Kubernetes Secrets) kept outside the snapshot.
//!
//! Files are read when a TLS config first needs them and re-read when their size, modification
//! time or inode changes ([`CertStore::refresh`], polled twice a second), which also catches a
//! Kubernetes `..data` symlink swap. Every change bumps a generation so that the TLS configs built
//! from the old material are rebuilt for new handshakes; handshakes already running keep theirs.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use sluice_config::tls::{CaSource, CertificateSource};

/// Why certificate material could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CertError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The PEM held no usable certificate or key.
    #[error("{what} in {origin}: {reason}")]
    Invalid {
        /// Certificate, key or CA bundle.
        what: &'static str,
        /// File or Secret.
        origin: String,
        /// What was wrong.
        reason: String,
    },
    /// Mesh mTLS is asked for but the proxy has no workload certificate (no `--ca`).
    #[error("no workload certificate: mesh mTLS needs an identity (`sluice run --ca DIR`)")]
    NoMeshIdentity,
    /// The Secret is not known (yet).
    #[error("secret {namespace}/{name} not found (or without {keys})")]
    NoSecret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The keys looked for.
        keys: &'static str,
    },
}

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &str) -> Result<Stamp, String> {
    let m = std::fs::metadata(path).map_err(|e| e.to_string())?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode,
    })
}

/// One file's last read.
struct FileEntry {
    stamp: Result<Stamp, String>,
    bytes: Result<Arc<[u8]>, String>,
}

fn read_file(path: &str) -> FileEntry {
    let stamp = stamp(path);
    let bytes = std::fs::read(path)
        .map(Arc::from)
        .map_err(|e| e.to_string());
    FileEntry { stamp, bytes }
}

/// A Secret's data by key.
type SecretData = BTreeMap<String, Arc<[u8]>>;

#[derive(Default)]
struct Inner {
    files: HashMap<String, FileEntry>,
    /// By (namespace, name).
    secrets: HashMap<(String, String), SecretData>,
    mesh: Option<MeshMaterial>,
}

/// The workload certificate and the mesh roots, as handed over by the identity room.
#[derive(Clone)]
struct MeshMaterial {
    key: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
    identity: Arc<str>,
}

/// PEM material by file path and Secret; cheap to clone.
#[derive(Clone, Default)]
pub struct CertStore {
    inner: Arc<Mutex<Inner>>,
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for CertStore {
    // Never the material: only how much there is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("CertStore")
            .field("files", &inner.files.len())
            .field("secrets", &inner.secrets.len())
            .field("generation", &self.generation())
            .finish()
    }
}

impl CertStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Bumped whenever any material changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Re-reads every file whose stamp changed; returns whether anything did.
    pub fn refresh(&self) -> bool {
        let paths: Vec<String> = self.lock().files.keys().cloned().collect();
        let mut changed = false;
        for path in paths {
            let now = stamp(&path);
            let same = self.lock().files.get(&path).is_some_and(|e| e.stamp == now);
            if same {
                continue;
            }
            let entry = read_file(&path);
            match &entry.bytes {
                Ok(_) => tracing::info!(%path, "certificate file changed; new handshakes use it"),
                Err(e) => {
                    tracing::warn!(%path, error = %e, "certificate file unreadable; new handshakes with it fail")
                }
            }
            self.lock().files.insert(path, entry);
            changed = true;
        }
        if changed {
            self.bump();
        }
        changed
    }

    /// Sets (or replaces) a Secret's data.
    pub fn set_secret(&self, namespace: &str, name: &str, data: BTreeMap<String, Vec<u8>>) {
        let data = data.into_iter().map(|(k, v)| (k, Arc::from(v))).collect();
        self.lock()
            .secrets
            .insert((namespace.to_string(), name.to_string()), data);
        self.bump();
    }

    /// Forgets a Secret.
    pub fn remove_secret(&self, namespace: &str, name: &str) {
        let removed = self
            .lock()
            .secrets
            .remove(&(namespace.to_string(), name.to_string()));
        if removed.is_some() {
            self.bump();
        }
    }

    fn file(&self, path: &str) -> Result<Arc<[u8]>, CertError> {
        let mut inner = self.lock();
        let entry = inner
            .files
            .entry(path.to_string())
            .or_insert_with(|| read_file(path));
        entry.bytes.clone().map_err(|reason| CertError::Read {
            path: path.to_string(),
            reason,
        })
    }

    /// The first of `keys` present in Secret `namespace/name`.
    fn secret_entry(&self, namespace: &str, name: &str, keys: &[&str]) -> Option<Arc<[u8]>> {
        let inner = self.lock();
        let data = inner
            .secrets
            .get(&(namespace.to_string(), name.to_string()))?;
        keys.iter().find_map(|k| data.get(*k).cloned())
    }

    /// Installs a new workload certificate (leaf first, then its CA chain), its key and the
    /// mesh roots; the next mesh handshake uses them, running ones keep the old ones.
    pub fn set_mesh(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<(), CertError> {
        let origin = "workload certificate";
        let invalid = |what: &'static str, reason: String| CertError::Invalid {
            what,
            origin: origin.to_string(),
            reason,
        };
        let identity = chain
            .first()
            .and_then(|leaf| super::peer::uri_sans(leaf).into_iter().next())
            .ok_or_else(|| invalid("certificate", "no URI SAN (SPIFFE identity)".into()))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| invalid("private key", e.to_string()))?;
        let mut store = RootCertStore::empty();
        for c in roots {
            store
                .add(c)
                .map_err(|e| invalid("CA certificate", e.to_string()))?;
        }
        let material = MeshMaterial {
            key: Arc::new(CertifiedKey::new(chain, signing)),
            roots: Arc::new(store),
            identity: Arc::from(identity),
        };
        self.lock().mesh = Some(material);
        self.bump();
        Ok(())
    }

    /// The SPIFFE identity of the workload certificate, when there is one.
    pub fn mesh_identity(&self) -> Option<Arc<str>> {
        self.lock().mesh.as_ref().map(|m| m.identity.clone())
    }

    fn mesh(&self) -> Result<MeshMaterial, CertError> {
        self.lock().mesh.clone().ok_or(CertError::NoMeshIdentity)
    }

    /// The certificate chain and key of a source, ready to sign handshakes.
    pub fn certified_key(&self, src: &CertificateSource) -> Result<Arc<CertifiedKey>, CertError> {
        let (chain_pem, key_pem, origin) = match src {
            CertificateSource::Mesh => return Ok(self.mesh()?.key),
            CertificateSource::Files {
                certificate,
                private_key,
            } => (
                self.file(certificate)?,
                self.file(private_key)?,
                (certificate.clone(), private_key.clone()),
            ),
            CertificateSource::Secret { namespace, name } => {
                // Istio checks the generic layout first, then the kubernetes.io/tls one.
                let pair = self
                    .secret_entry(namespace, name, &["cert"])
                    .zip(self.secret_entry(namespace, name, &["key"]))
                    .or_else(|| {
                        self.secret_entry(namespace, name, &["tls.crt"])
                            .zip(self.secret_entry(namespace, name, &["tls.key"]))
                    });
                let Some((c, k)) = pair else {
                    return Err(CertError::NoSecret {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        keys: "tls.crt/tls.key or cert/key",
                    });
                };
                let origin = format!("secret {namespace}/{name}");
                (c, k, (origin.clone(), origin))
            }
        };
        let chain = parse_certs(&chain_pem, "certificate", &origin.0)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| CertError::Invalid {
            what: "private key",
            origin: origin.1.clone(),
            reason: e.to_string(),
        })?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
            CertError::Invalid {
                what: "private key",
                origin: origin.1.clone(),
                reason: e.to_string(),
            }
        })?;
        let ck = CertifiedKey::new(chain, signing);
        if let Err(e) = ck.keys_match() {
            // `Unknown` means the check could not be made (not a mismatch).
            if !matches!(
                e,
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)
            ) {
                return Err(CertError::Invalid {
                    what: "private key",
                    origin: origin.1,
                    reason: format!("does not match the certificate in {}", origin.0),
                });
            }
        }
        Ok(Arc::new(ck))
    }

    /// The certificate revocation lists of a PEM file (`caCrl`), watched like every file.
    pub fn crls(
        &self,
        path: &str,
    ) -> Result<Vec<CertificateRevocationListDer<'static>>, CertError> {
        let pem = self.file(path)?;
        let invalid = |reason: String| CertError::Invalid {
            what: "certificate revocation list",
            origin: path.to_string(),
            reason,
        };
        let crls: Vec<CertificateRevocationListDer<'static>> =
            CertificateRevocationListDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(e.to_string()))?;
        if crls.is_empty() {
            return Err(invalid("no PEM X509 CRL found".into()));
        }
        Ok(crls)
    }

    /// Trusted roots of a CA source.
    pub fn roots(&self, src: &CaSource) -> Result<Arc<RootCertStore>, CertError> {
        let (pem, origin) = match src {
            CaSource::System => return Ok(system_roots()),
            CaSource::Mesh => return Ok(self.mesh()?.roots),
            CaSource::File { path } => (self.file(path)?, path.clone()),
            CaSource::Secret { namespace, name } => {
                // Istio's order: a `<name>-cacert` Secret, then the Secret's own CA key.
                let keys = ["cacert", "ca.crt"];
                let own = format!("{name}-cacert");
                let found = self
                    .secret_entry(namespace, &own, &keys)
                    .map(|b| (b, format!("secret {namespace}/{own}")))
                    .or_else(|| {
                        self.secret_entry(namespace, name, &keys)
                            .map(|b| (b, format!("secret {namespace}/{name}")))
                    });
                match found {
                    Some(f) => f,
                    None => {
                        return Err(CertError::NoSecret {
                            namespace: namespace.clone(),
                            name: name.clone(),
                            keys: "ca.crt or cacert",
                        })
                    }
                }
            }
        };
        let mut roots = RootCertStore::empty();
        for c in parse_certs(&pem, "CA certificate", &origin)? {
            roots.add(c).map_err(|e| CertError::Invalid {
                what: "CA certificate",
                origin: origin.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(Arc::new(roots))
    }
}

fn parse_certs(
    pem: &[u8],
    what: &'static str,
    origin: &str,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let invalid = |reason: String| CertError::Invalid {
        what,
        origin: origin.to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// The system's trusted roots, loaded once.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            for e in &loaded.errors {
                tracing::warn!(error = %e, "reading the system's CA certificates");
            }
            let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
            tracing::debug!(added, ignored, "system CA certificates loaded");
            Arc::new(roots)
        })
        .clone()
}
