//! `FileCache`: unchanged files are not parsed again, changed and new ones are, removed ones
//! are forgotten, and the result is what a fresh read gives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use sluice_sources::{read_paths, FileCache, ReadStats};

fn service_entry(name: &str, host: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  hosts: [{host}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: DNS\n"
    )
}

#[test]
fn a_reread_parses_only_changed_and_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let paths = vec![dir.path().to_path_buf()];
    for i in 0..3 {
        fs::write(
            dir.path().join(format!("se-{i}.yaml")),
            service_entry(&format!("se-{i}"), &format!("s{i}.example.com")),
        )
        .unwrap();
    }
    let mut cache = FileCache::new();
    let first = cache.read_paths(&paths, &[]);
    assert_eq!(
        cache.last_read(),
        ReadStats {
            parsed: 3,
            reused: 0
        }
    );
    assert_eq!(owned(&first), read_paths(&paths).resources);

    let again = cache.read_paths(&paths, &first.resources);
    assert_eq!(
        cache.last_read(),
        ReadStats {
            parsed: 0,
            reused: 3
        }
    );
    assert_eq!(again.resources, first.resources);
    // Not copies: the very objects of the previous read, so what depends on them can be kept.
    assert!(again
        .resources
        .iter()
        .zip(&first.resources)
        .all(|(a, b)| std::sync::Arc::ptr_eq(a, b)));

    // One file edited, one added, one removed.
    fs::write(
        dir.path().join("se-1.yaml"),
        service_entry("se-1", "edited.example.com"),
    )
    .unwrap();
    fs::write(
        dir.path().join("se-9.yaml"),
        service_entry("se-9", "s9.example.com"),
    )
    .unwrap();
    fs::remove_file(dir.path().join("se-2.yaml")).unwrap();
    let edited = cache.read_paths(&paths, &again.resources);
    assert_eq!(
        cache.last_read(),
        ReadStats {
            parsed: 2,
            reused: 1
        }
    );
    let fresh = read_paths(&paths);
    assert_eq!(owned(&edited), fresh.resources);
    assert_eq!(edited.diagnostics, fresh.diagnostics);
    let names: Vec<&str> = edited
        .resources
        .iter()
        .map(|r| r.metadata.name.as_str())
        .collect();
    assert_eq!(names, ["se-0", "se-1", "se-9"]);

    // A file brought back to an earlier content was forgotten meanwhile: parsed again.
    fs::write(
        dir.path().join("se-2.yaml"),
        service_entry("se-2", "s2.example.com"),
    )
    .unwrap();
    let restored = cache.read_paths(&paths, &edited.resources);
    assert_eq!(
        cache.last_read(),
        ReadStats {
            parsed: 1,
            reused: 3
        }
    );
    assert_eq!(owned(&restored), read_paths(&paths).resources);

    // Objects that did not become active (a rejected reload) are not reused.
    cache.clear();
    cache.read_paths(&paths, &restored.resources);
    assert_eq!(
        cache.last_read(),
        ReadStats {
            parsed: 4,
            reused: 0
        }
    );
    // Nor are those of a file missing from what is passed as the previous read's objects.
    cache.read_paths(&paths, &restored.resources[1..]);
    assert_eq!(
        cache.last_read(),
        ReadStats {
            parsed: 1,
            reused: 3
        }
    );
}

#[test]
fn syntax_errors_and_unreadable_files_are_reported_on_every_read() {
    let dir = tempfile::tempdir().unwrap();
    let paths = vec![dir.path().to_path_buf()];
    fs::write(dir.path().join("bad.yaml"), "kind: [unclosed\n").unwrap();
    let mut cache = FileCache::new();
    let first = cache.read_paths(&paths, &[]);
    assert!(!first.diagnostics.is_empty());
    let again = cache.read_paths(&paths, &first.resources);
    assert_eq!(again.diagnostics, first.diagnostics);
    assert_eq!(again.diagnostics, read_paths(&paths).diagnostics);
}

fn owned(read: &sluice_sources::SharedRead) -> Vec<sluice_model::Resource> {
    read.resources.iter().map(|r| (**r).clone()).collect()
}
