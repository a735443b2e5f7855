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

/// A directory with three files, one ServiceEntry each, and the paths to read.
fn three_service_entries() -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let paths = vec![dir.path().to_path_buf()];
    for i in 0..3 {
        fs::write(
            dir.path().join(format!("se-{i}.yaml")),
            service_entry(&format!("se-{i}"), &format!("s{i}.example.com")),
        )
        .unwrap();
    }
    (dir, paths)
}

/// A read whose objects never became active (a superseded or rejected build) is undone by
/// putting back a clone from before it: the next read parses only what changed since the last
/// read that was kept, and gives what a fresh read gives.
#[test]
fn a_cache_put_back_after_an_unused_read_parses_only_the_changes() {
    let (dir, paths) = three_service_entries();
    let mut cache = FileCache::new();
    let active = cache.read_paths(&paths, &[]);

    fs::write(
        dir.path().join("se-1.yaml"),
        service_entry("se-1", "edited.example.com"),
    )
    .unwrap();
    let before = cache.clone();
    let unused = cache.read_paths(&paths, &active.resources);
    assert_eq!(cache.last_read().parsed, 1);
    drop(unused);
    cache = before;

    let next = cache.read_paths(&paths, &active.resources);
    assert_eq!(
        cache.last_read(),
        ReadStats {
            parsed: 1,
            by_document: 1,
            reused: 2,
            unread: 0
        }
    );
    assert_eq!(owned(&next), read_paths(&paths).resources);
    assert!(std::sync::Arc::ptr_eq(
        &next.resources[0],
        &active.resources[0]
    ));
}

#[test]
fn a_reread_parses_only_changed_and_new_files() {
    let (dir, paths) = three_service_entries();
    let mut cache = FileCache::new();
    let first = cache.read_paths(&paths, &[]);
    assert_eq!(
        cache.last_read(),
        ReadStats {
            parsed: 3,
            by_document: 0,
            reused: 0,
            unread: 0
        }
    );
    assert_eq!(owned(&first), read_paths(&paths).resources);

    let again = cache.read_paths(&paths, &first.resources);
    assert_eq!(
        cache.last_read(),
        ReadStats {
            parsed: 0,
            by_document: 0,
            reused: 3,
            unread: 0
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
            by_document: 1,
            reused: 1,
            unread: 0
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
            by_document: 0,
            reused: 3,
            unread: 0
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
            by_document: 0,
            reused: 0,
            unread: 0
        }
    );
    // Nor are those of a file missing from what is passed as the previous read's objects.
    cache.read_paths(&paths, &restored.resources[1..]);
    assert_eq!(
        cache.last_read(),
        ReadStats {
            parsed: 1,
            by_document: 0,
            reused: 3,
            unread: 0
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

#[test]
fn files_unchanged_since_they_settled_are_not_read_again() {
    let (dir, paths) = three_service_entries();
    // Files written just before a read are read every time: their metadata could stay the
    // same through another write within the same clock tick.
    let mut cautious = FileCache::new();
    let first = cautious.read_paths(&paths, &[]);
    cautious.read_paths(&paths, &first.resources);
    assert_eq!(cautious.last_read().unread, 0);

    let mut cache = FileCache::with_stamp_margin(std::time::Duration::ZERO);
    let first = cache.read_paths(&paths, &[]);
    let again = cache.read_paths(&paths, &first.resources);
    assert_eq!(
        cache.last_read(),
        ReadStats {
            parsed: 0,
            by_document: 0,
            reused: 3,
            unread: 3
        }
    );
    assert!(again
        .resources
        .iter()
        .zip(&first.resources)
        .all(|(a, b)| std::sync::Arc::ptr_eq(a, b)));
    // A write changes the metadata, even one keeping the length: that file is read.
    fs::write(
        dir.path().join("se-1.yaml"),
        service_entry("se-1", "s7.example.com"),
    )
    .unwrap();
    let edited = cache.read_paths(&paths, &again.resources);
    assert_eq!(
        cache.last_read(),
        ReadStats {
            parsed: 1,
            by_document: 1,
            reused: 2,
            unread: 2
        }
    );
    assert_eq!(owned(&edited), read_paths(&paths).resources);
}

#[test]
fn an_edited_file_keeps_the_objects_it_did_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let paths = vec![dir.path().to_path_buf()];
    let file = dir.path().join("all.yaml");
    let write = |hosts: [&str; 3], prefix: &str| {
        let docs: Vec<String> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| service_entry(&format!("se-{i}"), h))
            .collect();
        fs::write(&file, format!("{prefix}{}", docs.join("---\n"))).unwrap();
    };
    write(["a.example.com", "b.example.com", "c.example.com"], "");
    let mut cache = FileCache::new();
    let first = cache.read_paths(&paths, &[]);
    // The second object edited to the same length: the first and third are the same objects.
    write(["a.example.com", "x.example.com", "c.example.com"], "");
    let edited = cache.read_paths(&paths, &first.resources);
    assert_eq!(owned(&edited), read_paths(&paths).resources);
    // Only the edited document was parsed.
    assert_eq!(cache.last_read().by_document, 1);
    let same: Vec<bool> = edited
        .resources
        .iter()
        .zip(&first.resources)
        .map(|(a, b)| std::sync::Arc::ptr_eq(a, b))
        .collect();
    assert_eq!(same, [true, false, true]);
    // A line added on top moves every object's position: none is kept (findings name lines).
    write(
        ["a.example.com", "x.example.com", "c.example.com"],
        "# moved\n",
    );
    let moved = cache.read_paths(&paths, &edited.resources);
    assert_eq!(owned(&moved), read_paths(&paths).resources);
    assert_eq!(cache.last_read().by_document, 1);
    assert!(moved
        .resources
        .iter()
        .zip(&edited.resources)
        .all(|(a, b)| !std::sync::Arc::ptr_eq(a, b)));
}

fn owned(read: &sluice_sources::SharedRead) -> Vec<sluice_model::Resource> {
    read.resources.iter().map(|r| (**r).clone()).collect()
}
