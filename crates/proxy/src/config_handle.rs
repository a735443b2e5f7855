//! The published config: the active snapshot (swapped atomically) and the last rejected reload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use serde::Serialize;
use sluice_config::Snapshot;
use sluice_model::Diagnostic;

use crate::retire::Retirer;

/// A reload that was refused, kept for `/config_dump`.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedReload {
    /// The version it would have had.
    pub version: u64,
    /// When it was refused (seconds since the epoch).
    pub at_unix_secs: u64,
    /// Everything found, blocking or not.
    pub diagnostics: Vec<Diagnostic>,
}

/// Shared between the data plane (reads), the reloader (writes) and admin (reads).
#[derive(Debug, Default)]
pub struct ConfigHandle {
    current: ArcSwapOption<Snapshot>,
    /// Frees replaced snapshots off the request path.
    retired: Retirer<Snapshot>,
    rejected: ArcSwapOption<RejectedReload>,
    /// When the active snapshot was published (Unix ms; 0 = never), for the dashboard.
    published_at_ms: AtomicU64,
}

fn unix_now() -> std::time::Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

impl ConfigHandle {
    /// A handle with no config yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The active snapshot, if any; callers keep the `Arc` for the whole request.
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Publishes a new snapshot.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        let ms = u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX);
        if let Some(previous) = self.current.swap(Some(snapshot)) {
            self.retired.retire(previous);
        }
        self.published_at_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// When the active snapshot was published (Unix milliseconds), if one was.
    pub fn published_at_unix_ms(&self) -> Option<u64> {
        match self.published_at_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(ms),
        }
    }

    /// Records a rejected reload (the active snapshot stays).
    pub fn reject(&self, version: u64, diagnostics: Vec<Diagnostic>) {
        let at_unix_secs = unix_now().as_secs();
        self.rejected.store(Some(Arc::new(RejectedReload {
            version,
            at_unix_secs,
            diagnostics,
        })));
    }

    /// The last rejected reload.
    pub fn last_rejected(&self) -> Option<Arc<RejectedReload>> {
        self.rejected.load_full()
    }
}
