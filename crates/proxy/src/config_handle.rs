//! The published config: the active snapshot (swapped atomically) and the last rejected reload.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use serde::Serialize;
use sluice_config::Snapshot;
use sluice_model::Diagnostic;

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
    rejected: ArcSwapOption<RejectedReload>,
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
        self.current.store(Some(snapshot));
    }

    /// Records a rejected reload (the active snapshot stays).
    pub fn reject(&self, version: u64, diagnostics: Vec<Diagnostic>) {
        let at_unix_secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
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
