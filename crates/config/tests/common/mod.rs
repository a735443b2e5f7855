//! Shared helpers of the validation tests: run `validate_resource` on YAML and compare
//! (severity, field path) pairs.
#![allow(dead_code)]

pub use sluice_config::validate::validate_resource;
pub use sluice_model::{codes, parse_text, Diagnostic, Severity};

pub const E: Severity = Severity::Error;
pub const W: Severity = Severity::Warning;
/// Deprecated fields are infos (IST0002), as istioctl reports them.
pub const I: Severity = Severity::Info;

/// (case name, YAML, expected (severity, field path) pairs).
pub type Case<'a> = (&'a str, &'a str, &'a [(Severity, &'a str)]);

pub fn schema_diags(yaml: &str) -> Vec<Diagnostic> {
    let parsed = parse_text(yaml, Some("t.yaml".into()));
    assert!(
        parsed.diagnostics.iter().all(|d| d.severity != E),
        "parse failed: {:#?}",
        parsed.diagnostics
    );
    assert!(!parsed.resources.is_empty(), "no resource in {yaml}");
    parsed
        .resources
        .iter()
        .flat_map(validate_resource)
        .filter(|d| d.code == codes::SCHEMA_VALIDATION || d.code == codes::DEPRECATED)
        .collect()
}

/// Every expected (severity, field) appears, and no error appears that was not expected.
pub fn check_yaml(name: &str, yaml: &str, expected: &[(Severity, &str)]) {
    let diags = schema_diags(yaml);
    for (sev, field) in expected {
        assert!(
            diags
                .iter()
                .any(|d| d.severity == *sev && d.field.as_deref() == Some(*field)),
            "{name}: expected {sev} at {field}, got {diags:#?}"
        );
    }
    for d in diags.iter().filter(|d| d.severity == E) {
        let f = d.field.as_deref().unwrap_or("");
        assert!(
            expected.iter().any(|(s, e)| *s == E && *e == f),
            "{name}: unexpected error {d}"
        );
    }
}
