//! Watching config paths: directories are watched (editors rename over files, ConfigMaps swap a
//! `..data` symlink), and bursts of events are debounced into one reload signal.
//!
//! A watched directory that is deleted takes its OS watch with it; the parent of each root is
//! watched too, so when the directory comes back it is watched again (and a reload reads it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Errors starting a watch.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The OS watcher failed.
    #[error("cannot watch {path}: {source}")]
    Notify {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: notify::Error,
    },
}

/// A running watch; dropping it stops watching.
pub struct ConfigWatch {
    _watcher: Arc<Mutex<RecommendedWatcher>>,
    /// Receives one `()` per debounced burst of changes.
    pub changes: mpsc::Receiver<()>,
}

fn watch_root(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.to_path_buf()
    } else {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}

/// One watched root and whether its OS watch is in place.
struct Root {
    path: PathBuf,
    armed: bool,
}

/// Re-arms the watch of roots that exist again, and notes the ones that disappeared.
fn rearm(watcher: &Mutex<RecommendedWatcher>, roots: &mut [Root]) {
    for root in roots.iter_mut() {
        let exists = root.path.is_dir();
        if root.armed && !exists {
            root.armed = false;
            tracing::warn!(path = %root.path.display(), "config directory removed: the last config stays in force; it is watched again when it reappears");
        } else if !root.armed && exists {
            let mut w = match watcher.lock() {
                Ok(w) => w,
                Err(p) => p.into_inner(),
            };
            match w.watch(&root.path, RecursiveMode::Recursive) {
                Ok(()) => {
                    root.armed = true;
                    tracing::info!(path = %root.path.display(), "config directory reappeared: watching it again");
                }
                Err(e) => {
                    tracing::warn!(path = %root.path.display(), error = %e, "cannot watch the config directory again")
                }
            }
        }
    }
}

/// The name the canary controller's state file (and its temporary copy) starts with.
pub const CANARY_STATE_PREFIX: &str = ".sluice-canary-state";

/// Whether `p` is the canary state file or its temporary copy.
pub fn is_canary_state_file(p: &std::path::Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(CANARY_STATE_PREFIX))
}

/// Watches `paths` (directories recursively, files through their directory).
pub fn watch(paths: &[PathBuf], debounce: Duration) -> Result<ConfigWatch, WatchError> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    // Events name absolute paths even for a relative root (`sluice run config/`): compare with
    // the root made absolute, and resolved too when it goes through a symlink.
    let root_paths: Vec<PathBuf> = paths
        .iter()
        .map(|p| watch_root(p))
        .flat_map(|r| {
            let absolute = std::path::absolute(&r).unwrap_or_else(|_| r.clone());
            let resolved = std::fs::canonicalize(&r).ok();
            [Some(r), Some(absolute), resolved]
        })
        .flatten()
        .collect();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            // The parents' watches also report their other entries: only the roots count.
            // (An event without paths, e.g. a queue overflow, may hide anything: it counts.)
            // The canary controller's state file lives in the config directory: its writes
            // are no config change.
            let ours = ev.paths.is_empty()
                || ev.paths.iter().any(|p| {
                    root_paths.iter().any(|r| p.starts_with(r)) && !is_canary_state_file(p)
                });
            if ours && !ev.kind.is_access() {
                let _ = raw_tx.send(());
            }
        }
    })
    .map_err(|source| WatchError::Notify {
        path: PathBuf::new(),
        source,
    })?;
    let watcher = Arc::new(Mutex::new(watcher));
    let mut roots = Vec::new();
    {
        let mut w = match watcher.lock() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        for p in paths {
            let root = watch_root(p);
            w.watch(&root, RecursiveMode::Recursive)
                .map_err(|source| WatchError::Notify {
                    path: root.clone(),
                    source,
                })?;
            // The parent sees the root itself being deleted and created again.
            if let Some(parent) = root.parent().filter(|d| !d.as_os_str().is_empty()) {
                if let Err(e) = w.watch(parent, RecursiveMode::NonRecursive) {
                    tracing::debug!(path = %parent.display(), error = %e, "cannot watch the config directory's parent; a deleted directory will not be noticed coming back");
                }
            }
            roots.push(Root {
                path: root,
                armed: true,
            });
        }
    }
    let (tx, rx) = mpsc::channel(1);
    let rearming = watcher.clone();
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Wait for quiet: every further event restarts the debounce window.
            loop {
                match tokio::time::timeout(debounce, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            rearm(&rearming, &mut roots);
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(ConfigWatch {
        _watcher: watcher,
        changes: rx,
    })
}
