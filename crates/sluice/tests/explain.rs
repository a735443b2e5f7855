//! `sluice explain` on the tutorials' configs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use sluice::analyze::Format;
use sluice::explain::{run, ExplainArgs};

fn args(config: &str, method: &str, url: &str, headers: &[&str]) -> ExplainArgs {
    ExplainArgs {
        paths: vec![PathBuf::from(config)],
        admin: None,
        gateway: None,
        mesh: false,
        labels: Default::default(),
        namespace: "default".into(),
        headers: headers.iter().map(|h| h.to_string()).collect(),
        output: Format::Human,
        method: method.into(),
        url: url.into(),
    }
}

#[test]
fn mesh_header_match_explains_earlier_rules() {
    let out = run(&args(
        "tests/fixtures/analyze/clean",
        "GET",
        "http://reviews:9080/",
        &[],
    ))
    .unwrap();
    assert!(out.contains("✗ reviews.0"), "{out}");
    assert!(out.contains("header `end-user` is absent"), "{out}");
    assert!(out.contains("✓ reviews.1"), "{out}");
    assert!(
        out.contains("50.0%  outbound|9080|v2|reviews.default.svc.cluster.local"),
        "{out}"
    );
    assert!(out.contains("2 retries on connect-failure"), "{out}");
    let jason = run(&args(
        "tests/fixtures/analyze/clean",
        "GET",
        "http://reviews:9080/",
        &["end-user: jason"],
    ))
    .unwrap();
    assert!(
        jason.contains("✓ reviews.0") && jason.contains("· reviews.1"),
        "{jason}"
    );
}

#[test]
fn gateway_explanation_and_json() {
    let mut a = args(
        "tests/fixtures/routes/gateway",
        "GET",
        "http://shop.example.com:8080/health",
        &[],
    );
    a.gateway = Some("bookinfo-gateway".into());
    let out = run(&a).unwrap();
    assert!(out.contains("0.0.0.0_8080"), "{out}");
    // Catch-all rules move last on a gateway, so the newer VirtualService's /health rule wins.
    assert!(out.contains("direct response 200"), "{out}");
    a.output = Format::Json;
    let v: serde_json::Value = serde_json::from_str(&run(&a).unwrap()).unwrap();
    assert!(v["rules"].as_array().unwrap().len() >= 2);
    // No such listener.
    a.url = "http://x:9999/".into();
    assert!(run(&a).is_err());
}

/// The two usual slips get a hint: a URL without the service's port, and a gateway URL
/// explained for the mesh.
#[test]
fn a_url_no_listener_serves_gets_a_hint() {
    let e = run(&args(
        "../../examples/header-canary",
        "GET",
        "http://app-backend/",
        &[],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("the URL has no port (80 assumed): try http://app-backend:9080/"),
        "{e}"
    );
    let e = run(&args(
        "../../examples/subdomain-gateway",
        "GET",
        "http://app.example.com:8080/",
        &[],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(
            "Gateway default/app-gateway serves port 8080: add `--gateway default/app-gateway`"
        ),
        "{e}"
    );
}

/// The README's example runs on a shipped example and routes.
#[test]
fn the_readme_example_routes() {
    let out = run(&args(
        "../../examples/header-canary",
        "GET",
        "http://app-backend:9080/",
        &["canary: canary-tester"],
    ))
    .unwrap();
    assert!(out.contains("app-backend"), "{out}");
    assert!(!out.contains("404"), "{out}");
}
