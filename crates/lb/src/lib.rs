//! Load-balancing building blocks with no sockets: weighted schedules and reload-surviving state.

pub mod schedule;
pub mod state;

pub use schedule::WeightedSchedule;
pub use state::StateStore;
