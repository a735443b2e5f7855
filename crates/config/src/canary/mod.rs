//! The `Canary` kind's pure parts: its settings resolved from the spec, and the overlay its
//! state puts on the targeted VirtualService route at compile time.

pub mod overlay;
pub mod settings;

pub use overlay::{apply_overlays, AppliedCanary, CanaryOverlay, CanaryOverlays};
pub use settings::{CanarySettings, HookType, MetricCheck, MetricKind, Stage, Webhook};
