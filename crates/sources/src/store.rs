//! The config store: every source's objects in one place, keyed by source.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_model::{Diagnostic, Parsed, Resource};

/// Objects from all sources (files, Kubernetes), each source replaced as a whole when it changes.
#[derive(Debug, Default)]
pub struct ConfigStore {
    sources: BTreeMap<String, Shared>,
}

/// One source's objects, shared with the snapshots built from them (a build clones pointers,
/// not objects).
#[derive(Debug, Default)]
struct Shared {
    resources: Vec<Arc<Resource>>,
    diagnostics: Vec<Diagnostic>,
}

impl ConfigStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces what one source contributes.
    pub fn set(&mut self, source: impl Into<String>, parsed: Parsed) {
        let shared = Shared {
            resources: parsed.resources.into_iter().map(Arc::new).collect(),
            diagnostics: parsed.diagnostics,
        };
        self.sources.insert(source.into(), shared);
    }

    /// Removes a source.
    pub fn remove(&mut self, source: &str) {
        self.sources.remove(source);
    }

    /// All objects and diagnostics, in source order.
    pub fn collect(&self) -> (Vec<Arc<Resource>>, Vec<Diagnostic>) {
        let mut resources = Vec::new();
        let mut diagnostics = Vec::new();
        for p in self.sources.values() {
            resources.extend(p.resources.iter().cloned());
            diagnostics.extend(p.diagnostics.iter().cloned());
        }
        (resources, diagnostics)
    }
}
