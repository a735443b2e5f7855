//! The canary controller: a control-plane room. It reads the per-subset counters telemetry
//! taps, decides with a pure state machine, persists its state, and hands the routes it wants
//! to the compile step as overlays; it never touches the request path.

pub mod backend;
pub mod controller;
pub mod machine;
pub mod state;
pub mod store;
pub mod webhook;

pub use backend::{event_reason, BoxFuture, InMemory, StateBackend, COMMAND_ANNOTATION};
pub use controller::{saved_overlays, CanaryKey, Command, Controller, ControllerHost};
pub use machine::{hooks_due, overlay_of, tick, Observation, Transition, Window};
pub use state::{CanaryState, HistoryEntry, Phase};
pub use store::StateFile;
