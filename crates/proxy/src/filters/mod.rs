//! Per-route request/response filters applied around forwarding.

pub mod cors;
pub mod fault;
pub mod header_ops;
pub mod rewrite;
