//! The YAML loader, validation, analysis and compilation on arbitrary text: every input ends in
//! a snapshot or a rejection with diagnostics, within the loader's limits, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_config::{build_snapshot, ProxyConfig};
use sluice_lb::StateStore;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = sluice_model::parse_text(&text, Some("fuzz.yaml".into()));
    let _ = build_snapshot(
        parsed.resources,
        parsed.diagnostics,
        &ProxyConfig::default(),
        &StateStore::new(),
        1,
    );
});
