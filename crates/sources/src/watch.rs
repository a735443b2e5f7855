//! Watching config paths: directories are watched (editors rename over files, ConfigMaps swap a
//! `..data` symlink), and bursts of events are debounced into one reload signal.

use std::path::{Path, PathBuf};
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
    _watcher: RecommendedWatcher,
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

/// Watches `paths` (directories recursively, files through their directory).
pub fn watch(paths: &[PathBuf], debounce: Duration) -> Result<ConfigWatch, WatchError> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !ev.kind.is_access() {
                let _ = raw_tx.send(());
            }
        }
    })
    .map_err(|source| WatchError::Notify {
        path: PathBuf::new(),
        source,
    })?;
    for p in paths {
        let root = watch_root(p);
        watcher
            .watch(&root, RecursiveMode::Recursive)
            .map_err(|source| WatchError::Notify { path: root, source })?;
    }
    let (tx, rx) = mpsc::channel(1);
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
