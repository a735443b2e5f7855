//! Validation and compilation of Istio config into an immutable routing [`Snapshot`].
//!
//! Pure: no I/O, no async. The proxy, `analyze` and `explain` all use the same [`route`] function.

pub mod duration;
pub mod host;
pub mod labels;
pub mod validate;
