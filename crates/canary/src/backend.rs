//! Where canary states are kept and who decides. File mode: the state file, and the one proxy
//! always decides. Kubernetes (implemented in `sluice-kube`): each Canary's `status`
//! subresource, and only the holder of a Lease decides while the others follow the statuses.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;

use crate::controller::CanaryKey;
use crate::machine::Transition;
use crate::state::CanaryState;
use crate::store::StateFile;

/// A boxed future, for the object-safe trait below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The annotation an operator (or `sluice canary ... --kubernetes`) sets on a Canary to ask the
/// deciding proxy for `promote`, `abort`, `pause` or `resume`; the value is `ACTION` or
/// `ACTION@ID`, and a value is acted on once (the state remembers the last one handled).
pub const COMMAND_ANNOTATION: &str = "rollouts.sluice.dev/command";

/// Persistence and leadership of the canary controller.
pub trait StateBackend: Send + Sync + 'static {
    /// The saved states, by `namespace/name`.
    fn load(&self) -> BTreeMap<CanaryKey, CanaryState>;

    /// Saves the states (a backend may write only those that changed).
    fn save<'a>(&'a self, states: &'a BTreeMap<CanaryKey, CanaryState>) -> BoxFuture<'a, ()>;

    /// Whether this proxy decides: runs the checks, calls the webhooks, acts on commands.
    fn is_leader(&self) -> bool {
        true
    }

    /// Leadership changes (`None`: this proxy always decides).
    fn leadership(&self) -> Option<watch::Receiver<bool>> {
        None
    }

    /// Whether the saved states are shared with other proxies: those that do not decide take
    /// their states from [`StateBackend::load`] at every config change.
    fn shared(&self) -> bool {
        false
    }

    /// A canary changed phase or stage (Kubernetes: an Event regarding the Canary).
    fn transition(&self, _key: &str, _t: &Transition) {}
}

/// No persistence: states live as long as the process.
#[derive(Debug, Default)]
pub struct InMemory;

impl StateBackend for InMemory {
    fn load(&self) -> BTreeMap<CanaryKey, CanaryState> {
        BTreeMap::new()
    }

    fn save<'a>(&'a self, _: &'a BTreeMap<CanaryKey, CanaryState>) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

impl StateBackend for StateFile {
    fn load(&self) -> BTreeMap<CanaryKey, CanaryState> {
        StateFile::load(self).unwrap_or_else(|e| {
            tracing::warn!(file = %self.path().display(), "canary state file unreadable, starting over: {e}");
            BTreeMap::new()
        })
    }

    fn save<'a>(&'a self, states: &'a BTreeMap<CanaryKey, CanaryState>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = StateFile::save(self, states) {
                tracing::error!(file = %self.path().display(), "cannot save the canary states: {e}");
            }
        })
    }
}

/// The Event reason of a transition (Kubernetes Events regarding the Canary).
pub fn event_reason(t: &Transition) -> &'static str {
    use crate::state::Phase;
    if t.rollback {
        return "RolledBack";
    }
    if t.step {
        return "WeightStep";
    }
    match (t.from, t.to) {
        (_, Phase::Progressing) => "Progressing",
        (_, Phase::Waiting) => "Waiting",
        (_, Phase::Paused) => "Paused",
        (_, Phase::Promoting) => "Promoting",
        (_, Phase::Succeeded) => "Promoted",
        (_, Phase::Failed) => "RolledBack",
        (_, Phase::Initializing) => "Initializing",
    }
}
