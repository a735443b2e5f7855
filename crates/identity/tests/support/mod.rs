//! Shared helpers: CA directories written by the library itself.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use sluice_identity::init::{init_intermediate, init_root, InitOptions};

pub fn opts() -> InitOptions {
    InitOptions {
        trust_domain: "cluster.local".into(),
        validity: None,
        force: false,
    }
}

/// A root layout in `base/root` and an intermediate layout signed by it in `base/inter`.
pub fn root_and_intermediate(base: &Path) -> (PathBuf, PathBuf) {
    let root = base.join("root");
    let inter = base.join("inter");
    init_root(&root, &opts()).unwrap();
    init_intermediate(&inter, &root, &opts()).unwrap();
    (root, inter)
}

pub fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

pub fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    sluice_identity::LAYOUT
        .iter()
        .map(|n| (n.to_string(), read(dir, n)))
        .collect()
}
