//! Reading config directories from disk: symlinks, loops and aliases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::symlink;

use sluice_model::{codes, Severity};
use sluice_sources::read_paths;

const GATEWAY: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n";

#[test]
fn a_symlink_loop_is_read_once_and_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("gw.yaml"), GATEWAY).unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    // `sub/up` leads back to the root, which contains `sub`: a loop.
    symlink("..", root.join("sub/up")).unwrap();
    // A second name for `sub`: an alias, not a loop.
    symlink("sub", root.join("sub-alias")).unwrap();

    let parsed = read_paths(&[root.to_path_buf()]);
    assert_eq!(parsed.resources.len(), 1, "{:#?}", parsed.diagnostics);
    let loops: Vec<_> = parsed
        .diagnostics
        .iter()
        .filter(|d| d.code == codes::SYMLINK_LOOP)
        .collect();
    assert_eq!(loops.len(), 1, "{:#?}", parsed.diagnostics);
    assert_eq!(loops[0].severity, Severity::Warning);
    assert!(loops[0].message.contains("sub/up"), "{}", loops[0]);
    assert!(
        parsed
            .diagnostics
            .iter()
            .all(|d| d.severity < Severity::Error),
        "{:#?}",
        parsed.diagnostics
    );
}

#[test]
fn a_link_to_the_directory_itself_is_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.yaml"), GATEWAY).unwrap();
    symlink(".", dir.path().join("self")).unwrap();
    let parsed = read_paths(&[dir.path().to_path_buf()]);
    assert_eq!(parsed.resources.len(), 1);
    assert_eq!(
        parsed
            .diagnostics
            .iter()
            .filter(|d| d.code == codes::SYMLINK_LOOP)
            .count(),
        1,
        "{:#?}",
        parsed.diagnostics
    );
}
