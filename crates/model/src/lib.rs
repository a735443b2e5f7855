//! Istio `networking.istio.io` and `security.istio.io` config types, sluice's `Canary`, and their parsing from YAML and JSON.
//!
//! Pure: no I/O. Files are read by the `sources` crate and handed here as text.

pub mod canary;
pub mod common;
pub mod destination_rule;
pub mod diagnostic;
pub mod gateway;
pub mod limits;
pub mod location;
pub mod resource;
pub mod security;
pub mod service_entry;
pub mod sidecar;
pub mod skipped;
pub mod small_map;
pub mod virtual_service;
pub mod yaml;

pub use canary::*;
pub use common::*;
pub use destination_rule::*;
pub use diagnostic::{codes, Diagnostic, Location, ResourceRef, Severity};
pub use gateway::*;
pub use location::{SpanMap, Spans};
pub use resource::{
    decode_value, parse_text, parse_text_by_document, Kind, ObjectMeta, Origin, Parsed, Resource,
    Spec,
};
pub use security::*;
pub use service_entry::*;
pub use sidecar::*;
pub use small_map::SmallMap;
pub use virtual_service::*;
