//! A local CA read from a directory in the plug-in layout and re-read when its files change
//! (polled stamps: size, modification time, inode), and the [`CaSource`] trait the CA server and
//! rotation read the current CA through.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::rotate::IssueFuture;
use crate::{CaBundle, IdentityError, Issuer, SpiffeId, LAYOUT};

/// Where the current CA comes from.
pub trait CaSource: Send + Sync {
    /// The CA in use now.
    fn bundle(&self) -> Arc<CaBundle>;

    /// Re-reads the CA material; true when it changed.
    fn refresh(&self) -> bool {
        false
    }
}

impl CaSource for Arc<CaBundle> {
    fn bundle(&self) -> Arc<CaBundle> {
        self.clone()
    }
}

/// What identifies one version of a file on disk (a Kubernetes `..data` symlink swap changes
/// the inode even when size and time do not).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamps(dir: &Path) -> Vec<Option<Stamp>> {
    LAYOUT
        .iter()
        .map(|name| {
            let m = std::fs::metadata(dir.join(name)).ok()?;
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let inode = 0;
            Some(Stamp {
                len: m.len(),
                modified: m.modified().ok(),
                inode,
            })
        })
        .collect()
}

struct DirState {
    bundle: Arc<CaBundle>,
    stamps: Vec<Option<Stamp>>,
}

/// A local CA read from a directory in the plug-in layout and re-read when its files change.
pub struct CaDir {
    dir: PathBuf,
    ttl: Duration,
    state: Mutex<DirState>,
}

impl std::fmt::Debug for CaDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaDir")
            .field("dir", &self.dir)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl CaDir {
    /// Loads the CA of `dir`; certificates it issues live `ttl`.
    pub fn open(dir: &Path, ttl: Duration) -> Result<Self, IdentityError> {
        let stamps = stamps(dir);
        let bundle = Arc::new(CaBundle::load_dir(dir)?);
        Ok(CaDir {
            dir: dir.to_path_buf(),
            ttl,
            state: Mutex::new(DirState { bundle, stamps }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, DirState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl CaSource for CaDir {
    fn bundle(&self) -> Arc<CaBundle> {
        CaDir::bundle(self)
    }

    fn refresh(&self) -> bool {
        CaDir::refresh(self)
    }
}

impl Issuer for CaDir {
    fn issue<'a>(&'a self, id: &'a SpiffeId) -> IssueFuture<'a> {
        let bundle = self.bundle();
        Box::pin(std::future::ready(bundle.issue(id, self.ttl)))
    }

    fn refresh(&self) -> bool {
        CaDir::refresh(self)
    }
}

impl CaDir {
    /// The CA in use now.
    pub fn bundle(&self) -> Arc<CaBundle> {
        self.lock().bundle.clone()
    }

    /// Re-reads the directory when a file's stamp changed; true when a new, usable CA replaced
    /// the previous one.
    pub fn refresh(&self) -> bool {
        let now = stamps(&self.dir);
        if self.lock().stamps == now {
            return false;
        }
        // The new stamps are kept even when the bundle is unusable: files of a CA being
        // replaced change one by one, and the last change triggers the next attempt.
        self.lock().stamps = now;
        match CaBundle::load_dir(&self.dir) {
            Ok(bundle) => {
                tracing::info!(dir = %self.dir.display(), "CA files changed; re-issuing the workload certificate");
                self.lock().bundle = Arc::new(bundle);
                true
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "CA files changed but are unusable; keeping the previous CA");
                false
            }
        }
    }
}
