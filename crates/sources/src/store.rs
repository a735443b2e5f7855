//! The config store: every source's objects in one place, keyed by source.

use std::collections::BTreeMap;

use sluice_model::{Diagnostic, Parsed, Resource};

/// Objects from all sources (files, Kubernetes), each source replaced as a whole when it changes.
#[derive(Debug, Default)]
pub struct ConfigStore {
    sources: BTreeMap<String, Parsed>,
}

impl ConfigStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces what one source contributes.
    pub fn set(&mut self, source: impl Into<String>, parsed: Parsed) {
        self.sources.insert(source.into(), parsed);
    }

    /// Removes a source.
    pub fn remove(&mut self, source: &str) {
        self.sources.remove(source);
    }

    /// All objects and diagnostics, in source order.
    pub fn collect(&self) -> (Vec<Resource>, Vec<Diagnostic>) {
        let mut resources = Vec::new();
        let mut diagnostics = Vec::new();
        for p in self.sources.values() {
            resources.extend(p.resources.iter().cloned());
            diagnostics.extend(p.diagnostics.iter().cloned());
        }
        (resources, diagnostics)
    }
}
