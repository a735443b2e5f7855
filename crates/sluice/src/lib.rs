//! The `sluice` binary's parts, as a library so integration tests can run them in-process.

pub mod analyze;
pub mod background;
pub mod ca;
pub mod ca_serve;
pub mod canary;
pub mod cli;
pub mod demo;
pub mod demo_canary;
pub mod explain;
pub mod mesh_identity;
pub mod reload;
pub mod runtime;
pub mod secrets;
pub mod tls_material;
