//! From parsed objects to a snapshot: validate, reject on blocking errors, analyze, compile.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sluice_lb::StateStore;
use sluice_model::{codes, Diagnostic, Resource, Severity};

use crate::canary::CanaryOverlays;
use crate::proxy::ProxyConfig;
use crate::snapshot::Snapshot;

/// A config set that was not applied, with every diagnostic found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("config rejected: {} error(s)", diagnostics.iter().filter(|d| is_blocking(d)).count())]
pub struct Rejected {
    /// All diagnostics, blocking and not.
    pub diagnostics: Vec<Diagnostic>,
}

/// Whether a diagnostic makes the whole config set invalid (Istio's webhook would refuse it).
pub fn is_blocking(d: &Diagnostic) -> bool {
    d.severity == Severity::Error
        && matches!(
            d.code,
            codes::SYNTAX
                | codes::LIMIT_EXCEEDED
                | codes::WRONG_TYPE
                | codes::SCHEMA_VALIDATION
                | codes::DUPLICATE_OBJECT
        )
}

/// Every diagnostic for a config set: parse findings, per-object validation, duplicates, analysis.
pub fn check(resources: &[Resource], parse_diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out = parse_diagnostics;
    let mut seen: HashMap<sluice_model::ResourceRef, &Resource> = HashMap::new();
    for r in resources {
        out.extend(crate::validate::validate_resource(r));
        // Every later copy names the first definition (not the copy before it).
        let first = *seen.entry(r.key()).or_insert(r);
        if !std::ptr::eq(first, r) {
            let line = first
                .locate("metadata.name")
                .map(|l| format!(":{}", l.line))
                .unwrap_or_default();
            let at = first
                .origin
                .file
                .as_deref()
                .map(|f| format!(" (first defined in {f}{line})"))
                .unwrap_or_default();
            out.push(r.diag(
                Severity::Error,
                codes::DUPLICATE_OBJECT,
                "metadata.name",
                format!("{} is defined twice{at}", r.key()),
            ));
        }
    }
    out.extend(crate::analyze::analyze(resources));
    out
}

/// Validates and compiles a config set for `proxy`; blocking errors reject it whole.
pub fn build_snapshot(
    resources: Vec<Resource>,
    parse_diagnostics: Vec<Diagnostic>,
    proxy: &ProxyConfig,
    state: &StateStore,
    version: u64,
) -> Result<Snapshot, Rejected> {
    build_snapshot_with(
        resources,
        parse_diagnostics,
        proxy,
        state,
        version,
        &CanaryOverlays::new(),
    )
}

/// [`build_snapshot`] with the canary controller's overlays applied to the compiled routes
/// (the objects kept in the snapshot stay the user's).
pub fn build_snapshot_with(
    resources: Vec<Resource>,
    parse_diagnostics: Vec<Diagnostic>,
    proxy: &ProxyConfig,
    state: &StateStore,
    version: u64,
    overlays: &CanaryOverlays,
) -> Result<Snapshot, Rejected> {
    let mut diagnostics = check(&resources, parse_diagnostics);
    if diagnostics.iter().any(is_blocking) {
        return Err(Rejected { diagnostics });
    }
    let (overlaid, canaries) = crate::canary::apply_overlays(&resources, overlays);
    let compiled = crate::compile::compile(overlaid.as_deref().unwrap_or(&resources), proxy, state);
    // Hashed, not a `contains` per finding: both lists grow with the config.
    let mut known: HashSet<&Diagnostic> = diagnostics.iter().collect();
    let fresh: Vec<Diagnostic> = compiled
        .diagnostics
        .iter()
        .filter(|d| known.insert(d))
        .cloned()
        .collect();
    drop(known);
    diagnostics.extend(fresh);
    let mut snapshot = Snapshot::new(
        version,
        proxy.clone(),
        compiled,
        Arc::new(resources),
        diagnostics,
    );
    snapshot.canaries = canaries;
    Ok(snapshot)
}
