//! Golden fixtures: `sluice analyze` output for broken and clean config sets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use sluice::analyze::{diagnostics, has_errors, render, Format};

fn run(dir: &str) -> (String, bool) {
    let d = diagnostics(&[PathBuf::from(format!("tests/fixtures/analyze/{dir}"))]);
    (render(&d, Format::Human, false), has_errors(&d))
}

#[test]
fn broken_set_reports_every_problem_with_position() {
    let (out, errors) = run("broken");
    assert!(errors);
    insta::assert_snapshot!("broken", out);
}

#[test]
fn syntax_error_points_at_the_line() {
    let (out, errors) = run("syntax");
    assert!(errors);
    insta::assert_snapshot!("syntax", out);
}

#[test]
fn bookinfo_reviews_is_clean() {
    let (out, errors) = run("clean");
    assert!(!errors, "{out}");
    insta::assert_snapshot!("clean", out);
}

#[test]
fn json_output_is_an_array_with_fields() {
    let d = diagnostics(&[PathBuf::from("tests/fixtures/analyze/broken")]);
    let v: serde_json::Value = serde_json::from_str(&render(&d, Format::Json, false)).unwrap();
    let first = &v.as_array().unwrap()[0];
    for key in ["severity", "code", "message", "file", "location"] {
        assert!(first.get(key).is_some(), "missing {key} in {first}");
    }
}

#[test]
fn unenforced_istio_kinds_are_warnings_naming_the_kind() {
    let (out, errors) = run("unenforced");
    assert!(!errors, "{out}");
    insta::assert_snapshot!("unenforced", out);
    assert!(
        out.contains("EnvoyFilter `add-header` is not enforced"),
        "{out}"
    );
    assert!(!out.contains("unix domain socket"), "{out}");
    assert!(!out.contains("Deployment"), "{out}");
}
