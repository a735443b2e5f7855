//! From parsed objects to a snapshot: validate, reject on blocking errors, analyze, compile.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sluice_lb::StateStore;
use sluice_model::{codes, Diagnostic, Resource, Severity};

use crate::canary::CanaryOverlays;
use crate::dns::DnsAnswers;
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
pub fn check<R: Borrow<Resource> + Sync>(
    resources: &[R],
    parse_diagnostics: Vec<Diagnostic>,
) -> Vec<Diagnostic> {
    let mut out = validate(resources, parse_diagnostics);
    out.extend(crate::analyze::analyze(resources));
    out
}

/// Parse findings, per-object validation and duplicates: what [`check`] does short of the
/// cross-object analysis, and all that decides whether a config set can be compiled.
pub fn validate<R: Borrow<Resource> + Sync>(
    resources: &[R],
    parse_diagnostics: Vec<Diagnostic>,
) -> Vec<Diagnostic> {
    validate_with(resources, parse_diagnostics, None, None)
}

/// Per-object validation findings by object address (see [`crate::compile::reuse`]), for the
/// objects of the snapshot that holds them that have any: an object of that snapshot absent
/// here has none (a map of every object, nearly all without findings, was 2 MB at 10,000
/// services).
pub type Validated = HashMap<usize, Vec<Diagnostic>, foldhash::fast::RandomState>;

/// Per-object validation and duplicates (what [`check`] does short of the cross-object
/// analysis), taking the findings of objects `previous` validated (the same objects: their
/// addresses are stable while the snapshot holding them lives) and recording every object's
/// in `record`.
fn validate_with<R: Borrow<Resource> + Sync>(
    resources: &[R],
    parse_diagnostics: Vec<Diagnostic>,
    previous: Option<&Snapshot>,
    mut record: Option<&mut Validated>,
) -> Vec<Diagnostic> {
    let mut out = parse_diagnostics;
    fn key(r: &Resource) -> (sluice_model::Kind, &str, &str) {
        (r.kind, &r.metadata.namespace, &r.metadata.name)
    }
    // The previous snapshot was accepted, so no two of its objects shared a name: when every
    // object sits where one of the same kind, namespace and name sat, none do now either, and
    // the names need not be indexed again.
    let same_names = previous.is_some_and(|p| {
        p.resources.len() == resources.len()
            && p.resources
                .iter()
                .zip(resources)
                .all(|(b, r)| std::ptr::eq(&**b, r.borrow()) || key(b) == key(r.borrow()))
    });
    let mut own = own_findings(resources, previous).into_iter();
    let mut seen: HashMap<(sluice_model::Kind, &str, &str), &Resource, _> =
        HashMap::with_capacity_and_hasher(
            if same_names { 0 } else { resources.len() },
            foldhash::fast::RandomState::default(),
        );
    for r in resources.iter().map(Borrow::borrow) {
        let address = crate::compile::reuse::address(r);
        let found = own.next().unwrap_or_default();
        out.extend(found.iter().cloned());
        if let Some(record) = record.as_deref_mut().filter(|_| !found.is_empty()) {
            record.insert(address, found);
        }
        if same_names {
            continue;
        }
        // Every later copy names the first definition (not the copy before it).
        let first = *seen.entry(key(r)).or_insert(r);
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
    out
}

/// Below this many objects to validate, a second thread costs more than it saves.
const MIN_OBJECTS_PER_THREAD: usize = 2_000;

/// Each object's own findings, in order: those `previous` recorded for the same object, else
/// validated now. Objects are independent, so a start-up (every object new) spreads them over
/// the cores: on one thread, validation was a tenth of a 10,000-service start and grew faster
/// than the config.
fn own_findings<R: Borrow<Resource> + Sync>(
    resources: &[R],
    previous: Option<&Snapshot>,
) -> Vec<Vec<Diagnostic>> {
    // The previous snapshot's objects, for those that moved: most sit where they sat.
    let moved: HashSet<usize, foldhash::fast::RandomState> = match previous {
        Some(p) => {
            let in_place = |(i, r): (usize, &R)| {
                p.resources
                    .get(i)
                    .is_some_and(|b| std::ptr::eq(&**b, r.borrow()))
            };
            if resources.iter().enumerate().all(in_place) {
                HashSet::default()
            } else {
                p.resources
                    .iter()
                    .map(|b| crate::compile::reuse::address(b))
                    .collect()
            }
        }
        None => HashSet::default(),
    };
    let findings = |start: usize, chunk: &[R]| -> Vec<Vec<Diagnostic>> {
        chunk
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let r = r.borrow();
                let address = crate::compile::reuse::address(r);
                let kept = previous.filter(|p| {
                    p.resources
                        .get(start + i)
                        .is_some_and(|b| std::ptr::eq(&**b, r))
                        || moved.contains(&address)
                });
                match kept {
                    Some(p) => p.validated.get(&address).cloned().unwrap_or_default(),
                    None => crate::validate::validate_resource(r),
                }
            })
            .collect()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(resources.len() / MIN_OBJECTS_PER_THREAD).max(1);
    // An incremental build keeps nearly every object's findings: nothing to spread.
    if threads == 1 || previous.is_some_and(|p| !p.resources.is_empty()) {
        return findings(0, resources);
    }
    let chunk = resources.len().div_ceil(threads);
    let findings = &findings;
    std::thread::scope(|s| {
        let handles: Vec<_> = resources
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| s.spawn(move || findings(n * chunk, part)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Validates and compiles a config set for `proxy`; blocking errors reject it whole.
pub fn build_snapshot(
    resources: impl IntoIterator<Item = impl Into<Arc<Resource>>>,
    parse_diagnostics: Vec<Diagnostic>,
    proxy: &ProxyConfig,
    state: &StateStore,
    version: u64,
) -> Result<Snapshot, Rejected> {
    build_snapshot_resolved(resources, parse_diagnostics, proxy, state, version, None)
}

/// [`build_snapshot`] with the resolver's latest answers for DNS services.
pub fn build_snapshot_resolved(
    resources: impl IntoIterator<Item = impl Into<Arc<Resource>>>,
    parse_diagnostics: Vec<Diagnostic>,
    proxy: &ProxyConfig,
    state: &StateStore,
    version: u64,
    dns: Option<&DnsAnswers>,
) -> Result<Snapshot, Rejected> {
    let inputs = BuildInputs {
        dns,
        ..BuildInputs::default()
    };
    finished(build_snapshot_unless(
        shared(resources),
        parse_diagnostics,
        proxy,
        state,
        version,
        &inputs,
        &|| false,
    ))
}

/// [`build_snapshot`] with the canary controller's overlays applied to the compiled routes
/// (the objects kept in the snapshot stay the user's).
pub fn build_snapshot_with(
    resources: impl IntoIterator<Item = impl Into<Arc<Resource>>>,
    parse_diagnostics: Vec<Diagnostic>,
    proxy: &ProxyConfig,
    state: &StateStore,
    version: u64,
    overlays: &CanaryOverlays,
) -> Result<Snapshot, Rejected> {
    let inputs = BuildInputs {
        overlays: Some(overlays),
        ..BuildInputs::default()
    };
    finished(build_snapshot_unless(
        shared(resources),
        parse_diagnostics,
        proxy,
        state,
        version,
        &inputs,
        &|| false,
    ))
}

/// Objects, owned or already shared, shared the way the running proxy shares them.
fn shared(resources: impl IntoIterator<Item = impl Into<Arc<Resource>>>) -> Vec<Arc<Resource>> {
    let mut shared: Vec<Arc<Resource>> = resources.into_iter().map(Into::into).collect();
    // From a `Vec<Resource>` the collect reuses its buffer, 27 times the size needed, and the
    // snapshot keeps the list.
    shared.shrink_to_fit();
    shared
}

/// The outcome of a build nothing could supersede.
fn finished(built: Result<Snapshot, Stopped>) -> Result<Snapshot, Rejected> {
    match built {
        Ok(s) => Ok(s),
        Err(Stopped::Rejected(r)) => Err(r),
        Err(Stopped::Superseded) => Err(Rejected {
            diagnostics: vec![Diagnostic::error(
                codes::INTERNAL,
                "the build was superseded although nothing could supersede it",
            )],
        }),
    }
}

/// What a build takes besides the objects: state kept by the running proxy.
#[derive(Debug, Default, Clone, Copy)]
pub struct BuildInputs<'a> {
    /// The resolver's latest answers for DNS services.
    pub dns: Option<&'a DnsAnswers>,
    /// The canary controller's overlays.
    pub overlays: Option<&'a CanaryOverlays>,
    /// The active snapshot, built for the same proxy: what did not change is taken from it
    /// rather than validated and compiled again.
    pub previous: Option<&'a Snapshot>,
}

/// Why [`build_snapshot_unless`] returned no snapshot.
#[derive(Debug, Clone)]
pub enum Stopped {
    /// The config set is invalid.
    Rejected(Rejected),
    /// A newer change arrived: the build was abandoned between two of its phases.
    Superseded,
}

/// A build with the running proxy's `inputs` that gives up between phases once `superseded()`
/// says a newer config set is waiting: building an outdated set in full would only delay the
/// newer one.
pub fn build_snapshot_unless(
    resources: Vec<Arc<Resource>>,
    parse_diagnostics: Vec<Diagnostic>,
    proxy: &ProxyConfig,
    state: &StateStore,
    version: u64,
    inputs: &BuildInputs<'_>,
    superseded: &dyn Fn() -> bool,
) -> Result<Snapshot, Stopped> {
    if superseded() {
        return Err(Stopped::Superseded);
    }
    let started = std::time::Instant::now();
    let mut validated = Validated::default();
    let mut diagnostics = validate_with(
        &resources,
        parse_diagnostics,
        inputs.previous,
        Some(&mut validated),
    );
    let checked = std::time::Instant::now();
    if diagnostics.iter().any(is_blocking) {
        diagnostics.extend(crate::analyze::analyze(&resources));
        return Err(Stopped::Rejected(Rejected { diagnostics }));
    }
    if superseded() {
        return Err(Stopped::Superseded);
    }
    let no_overlays = CanaryOverlays::new();
    let (overlaid, canaries) =
        crate::canary::apply_overlays(&resources, inputs.overlays.unwrap_or(&no_overlays));
    // The analysis of the user's objects blocks nothing: it runs on a thread of its own beside
    // the compile (a reload takes the longer of the two, not their sum). A finished compile
    // is published even when outdated: the newer set follows at once.
    let (findings, analysis, analyzed, compiled) = std::thread::scope(|s| {
        let analysis = s.spawn(|| {
            let memo = inputs.previous.map(|p| &p.memo);
            let previous = inputs.previous.map(|p| &p.analysis);
            let (findings, memo) = crate::analyze::analyze_with(&resources, memo, previous);
            (findings, memo, checked.elapsed())
        });
        let compiled = crate::compile::compile_incremental(
            overlaid.as_deref().unwrap_or(&resources),
            inputs.previous.map(|p| (&p.memo, &p.registry)),
            proxy,
            state,
            inputs.dns,
        );
        let (findings, analysis, analyzed) = analysis
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (findings, analysis, analyzed, compiled)
    });
    let compile = checked.elapsed();
    diagnostics.extend(findings);
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
    snapshot.validated = validated;
    let reanalyzed = analysis.reanalyzed;
    snapshot.analysis = analysis;
    snapshot.timings = crate::snapshot::BuildTimings {
        check: checked - started,
        analyze: analyzed,
        compile,
        reanalyzed,
    };
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const CONFIG: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: [a.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n";

    fn build(superseded: &dyn Fn() -> bool) -> Result<Snapshot, Stopped> {
        let parsed = sluice_model::parse_text(CONFIG, None);
        build_snapshot_unless(
            shared(parsed.resources),
            parsed.diagnostics,
            &ProxyConfig::default(),
            &StateStore::new(),
            1,
            &BuildInputs::default(),
            superseded,
        )
    }

    /// Validation spread over threads gives every object's findings in the objects' order, as
    /// one thread does, with duplicates still named after the first definition.
    #[test]
    fn findings_come_in_object_order_however_many_threads_validate() {
        let mut text = String::new();
        for i in 0..2 * MIN_OBJECTS_PER_THREAD + 7 {
            // Every third one has a timeout that is no duration: a finding of its own.
            let timeout = if i % 3 == 0 { "5 seconds" } else { "5s" };
            text.push_str(&format!("---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs-{i}}}\nspec:\n  hosts: [a.example.com]\n  http:\n  - route: [{{destination: {{host: a.example.com}}}}]\n    timeout: {timeout}\n"));
        }
        text.push_str(&format!("---\n{CONFIG}---\n{CONFIG}"));
        let parsed = sluice_model::parse_text(&text, Some("all.yaml".into()));
        let one_by_one: Vec<Diagnostic> = parsed
            .resources
            .iter()
            .flat_map(crate::validate::validate_resource)
            .collect();
        assert!(one_by_one.len() > MIN_OBJECTS_PER_THREAD / 2);
        let found = validate(&parsed.resources, Vec::new());
        let (duplicates, own): (Vec<_>, Vec<_>) = found
            .into_iter()
            .partition(|d| d.code == codes::DUPLICATE_OBJECT);
        assert_eq!(own, one_by_one);
        assert_eq!(duplicates.len(), 1, "{duplicates:#?}");
        assert!(duplicates[0].message.contains("first defined in all.yaml"));
    }

    /// A build of `objects` for the default proxy, incremental from `previous` when given.
    fn rebuild(
        objects: Vec<Arc<Resource>>,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, Stopped> {
        let inputs = BuildInputs {
            previous,
            ..BuildInputs::default()
        };
        build_snapshot_unless(
            objects,
            Vec::new(),
            &ProxyConfig::default(),
            &StateStore::new(),
            1,
            &inputs,
            &|| false,
        )
    }

    /// A reload keeps the findings of the objects it had validated, wherever they now sit, and
    /// records only objects that have findings.
    #[test]
    fn a_reload_keeps_findings_of_objects_that_moved() {
        let remote = CONFIG
            .replace("name: a}", "name: b}")
            .replace("[a.example.com]", "[b.example.com]")
            .replace("address: 127.0.0.1", "address: 127.0.0.2, network: other");
        let text = format!("{CONFIG}---\n{remote}");
        let objects = shared(sluice_model::parse_text(&text, None).resources);
        let build = |objects, previous| {
            finished(rebuild(objects, previous))
                .unwrap_or_else(|r| panic!("rejected: {:#?}", r.diagnostics))
        };
        let own = |s: &Snapshot| -> Vec<String> {
            s.diagnostics
                .iter()
                .filter(|d| d.message.contains("network `other`"))
                .map(|d| d.message.clone())
                .collect()
        };
        let first = build(objects.clone(), None);
        assert_eq!(own(&first).len(), 1);
        assert_eq!(first.validated.len(), 1, "only the object with a finding");
        // A new object in front: every kept object moved one place.
        let new = CONFIG
            .replace("name: a}", "name: c}")
            .replace("[a.example.com]", "[c.example.com]");
        let mut moved = shared(sluice_model::parse_text(&new, None).resources);
        moved.extend(objects.iter().cloned());
        let second = build(moved, Some(&first));
        assert_eq!(own(&second), own(&first));
        let bad = crate::compile::reuse::address(&objects[1]);
        assert_eq!(second.validated.keys().collect::<Vec<_>>(), [&bad]);
    }

    /// An incremental build skips indexing names only when every object keeps the name of the
    /// object in its place: a renamed object that now repeats another's name is still caught.
    #[test]
    fn a_rename_into_a_duplicate_is_caught_after_an_accepted_build() {
        let two = format!("{CONFIG}---\n{}", CONFIG.replace("name: a}", "name: b}"));
        let parsed = sluice_model::parse_text(&two, None);
        let objects = shared(parsed.resources);
        let build = rebuild;
        let Ok(first) = build(objects.clone(), None) else {
            panic!("two distinct objects are accepted");
        };
        // The second object edited, its name kept: accepted.
        let mut edited = objects.clone();
        let retargeted = CONFIG
            .replace("name: a}", "name: b}")
            .replace("127.0.0.1", "127.0.0.2");
        edited[1] = shared(sluice_model::parse_text(&retargeted, None).resources).remove(0);
        assert!(build(edited, Some(&first)).is_ok());
        // The second object renamed to the first's name: rejected as a duplicate.
        let mut renamed = objects;
        let copy = CONFIG.replace("127.0.0.1", "127.0.0.3");
        renamed[1] = shared(sluice_model::parse_text(&copy, None).resources).remove(0);
        let Err(Stopped::Rejected(rejected)) = build(renamed, Some(&first)) else {
            panic!("a duplicate name is rejected");
        };
        assert!(rejected
            .diagnostics
            .iter()
            .any(|d| d.code == sluice_model::codes::DUPLICATE_OBJECT));
    }

    #[test]
    fn a_newer_change_stops_the_build_before_validation_or_compilation() {
        assert!(matches!(build(&|| true), Err(Stopped::Superseded)));
        // Superseded while validating: the compile is skipped.
        let calls = Cell::new(0);
        let after_first = || {
            calls.set(calls.get() + 1);
            calls.get() > 1
        };
        assert!(matches!(build(&after_first), Err(Stopped::Superseded)));
        assert_eq!(calls.get(), 2);
        // Never superseded: the same snapshot as `build_snapshot`.
        assert!(build(&|| false).is_ok());
    }
}
