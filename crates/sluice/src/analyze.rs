//! `sluice analyze`: every diagnostic for a config set, for humans (with the YAML line) or as JSON.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

use sluice_model::{Diagnostic, Severity};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable, with source excerpts.
    Human,
    /// JSON: `analyze` prints an array of diagnostics, `explain` one explanation object.
    Json,
}

/// Reads, validates and analyzes `paths`; returns the diagnostics, sorted by file and position.
pub fn diagnostics(paths: &[PathBuf]) -> Vec<Diagnostic> {
    analyzed(paths, None)
}

/// [`diagnostics`], plus what compiling the config for a proxy with `labels` finds (a Gateway
/// selecting none of them, listener conflicts), as `sluice run --labels` would report it.
pub fn diagnostics_for(paths: &[PathBuf], labels: &BTreeMap<String, String>) -> Vec<Diagnostic> {
    analyzed(paths, Some(labels))
}

fn analyzed(paths: &[PathBuf], labels: Option<&BTreeMap<String, String>>) -> Vec<Diagnostic> {
    let parsed = sluice_sources::read_paths(paths);
    let mut diags = sluice_config::load::validate(&parsed.resources, parsed.diagnostics);
    let tls = crate::tls_material::diagnostics(
        &parsed.resources,
        &sluice_proxy::tls::CertStore::default(),
        false,
    );
    if diags.iter().chain(&tls).any(sluice_config::is_blocking) {
        diags.extend(sluice_config::analyze::analyze(&parsed.resources));
        diags.extend(tls);
    } else {
        // A valid set is compiled with the cross-object analysis beside it, as a running
        // proxy builds it: the two take the longer of their times, not the sum.
        let proxy = sluice_config::ProxyConfig {
            labels: labels.cloned().unwrap_or_default(),
            ..Default::default()
        };
        let state = sluice_lb::StateStore::new();
        let (analysis, compiled) = std::thread::scope(|s| {
            let analysis = s.spawn(|| sluice_config::analyze::analyze(&parsed.resources));
            let compiled = sluice_config::compile::compile(&parsed.resources, &proxy, &state);
            let analysis = analysis
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (analysis, compiled)
        });
        diags.extend(analysis);
        diags.extend(tls);
        match labels {
            Some(_) => diags.extend(compiled.diagnostics),
            // Without labels, what `sluice run` (file mode, no interception, no labels) would
            // say is not enforced or acts differently there: original destinations exist only
            // where the proxy intercepts traffic, and zone-aware routing only where the proxy's
            // own service is known.
            None => diags.extend(compiled.diagnostics.into_iter().filter(|d| {
                d.code == sluice_model::codes::NOT_ENFORCED
                    || d.code == sluice_model::codes::ZONE_AWARE_WITHOUT_LOCAL_CLUSTER
                    || d.code == sluice_model::codes::ORIGINAL_DST_WITHOUT_INTERCEPTION
            })),
        }
    }
    diags.sort_by(|a, b| {
        (a.file.as_deref(), a.location, b.severity).cmp(&(
            b.file.as_deref(),
            b.location,
            a.severity,
        ))
    });
    diags.dedup();
    diags
}

/// Renders diagnostics; `Severity::Info` ones only when `verbose`.
pub fn render(diags: &[Diagnostic], format: Format, verbose: bool) -> String {
    let shown: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| verbose || d.severity > Severity::Info)
        .collect();
    if format == Format::Json {
        return serde_json::to_string_pretty(&shown).unwrap_or_else(|_| "[]".into());
    }
    let mut sources: HashMap<String, Vec<String>> = HashMap::new();
    let mut out = String::new();
    for d in &shown {
        let _ = write!(out, "{}[{}]", d.severity, d.code);
        if let Some(r) = &d.resource {
            let _ = write!(out, " {r}");
        }
        if let Some(f) = &d.field {
            let _ = write!(out, " {f}");
        }
        let _ = writeln!(out, ": {}", d.message);
        if let Some(pos) = d.position() {
            let _ = writeln!(out, "  --> {pos}");
        }
        if let (Some(file), Some(loc)) = (&d.file, d.location) {
            let lines = sources.entry(file.to_string()).or_insert_with(|| {
                std::fs::read_to_string(file.as_ref())
                    .map(|t| t.lines().map(str::to_string).collect())
                    .unwrap_or_default()
            });
            if let Some(line) = lines.get(loc.line.saturating_sub(1) as usize) {
                let n = loc.line.to_string();
                let pad = " ".repeat(n.len());
                let caret = " ".repeat(loc.column.saturating_sub(1) as usize);
                let _ = writeln!(out, "{pad} |\n{n} | {line}\n{pad} | {caret}^");
            }
        }
        out.push('\n');
    }
    let count = |s| diags.iter().filter(|d| d.severity == s).count();
    let _ = writeln!(
        out,
        "{} error(s), {} warning(s), {} info",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    );
    out
}

/// Whether the set has any error (analyze exits 1 then).
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}
