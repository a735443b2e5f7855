//! The keys of one JWKS source, swapped atomically so requests never wait for a fetch.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::key_set::KeySet;
use crate::rule::{JwksSource, JwtRule};

/// Where a key set is read from; equal origins share one slot and one refresher.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Origin {
    Inline(String),
    Http(String),
    File(PathBuf),
    /// OpenID discovery under this issuer.
    Discovery(String),
}

impl Origin {
    /// The origin of `rule`'s keys.
    pub fn of(rule: &JwtRule) -> Self {
        match &rule.jwks {
            JwksSource::Inline(json) => Origin::Inline(json.clone()),
            JwksSource::Discovery => Origin::Discovery(rule.issuer.clone()),
            JwksSource::Uri(uri) => {
                let lower = uri.to_ascii_lowercase();
                if lower.starts_with("http://") || lower.starts_with("https://") {
                    Origin::Http(uri.clone())
                } else if let Some(path) = uri.strip_prefix("file://") {
                    Origin::File(PathBuf::from(path))
                } else {
                    Origin::File(PathBuf::from(uri))
                }
            }
        }
    }

    /// True for origins read again over time (everything but inline sets).
    pub fn is_fetched(&self) -> bool {
        !matches!(self, Origin::Inline(_))
    }

    /// True for origins fetched over HTTP: a bad body there is a failed fetch.
    pub fn is_remote(&self) -> bool {
        matches!(self, Origin::Http(_) | Origin::Discovery(_))
    }

    /// Short text naming the origin in logs and status.
    pub fn describe(&self) -> String {
        match self {
            Origin::Inline(_) => "inline".to_owned(),
            Origin::Http(url) => url.clone(),
            Origin::File(path) => format!("file://{}", path.display()),
            Origin::Discovery(issuer) => format!("discovery:{issuer}"),
        }
    }
}

/// What a request sees of a source.
#[derive(Debug)]
pub(crate) enum KeysState {
    /// Fetched source not fetched yet.
    Pending,
    /// Keys in force (possibly none, which refuses every token).
    Ready(KeySet),
    /// Fetching failed and no earlier fetch succeeded.
    FetchFailed,
}

/// One source's current keys and the task that refreshes them.
pub(crate) struct JwksSlot {
    /// Where the keys are read from.
    pub origin: Origin,
    /// Bound on one fetch.
    pub timeout: Duration,
    state: ArcSwap<KeysState>,
    attempted: watch::Sender<bool>,
    refresher: Mutex<Option<AbortHandle>>,
}

impl std::fmt::Debug for JwksSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSlot")
            .field("origin", &self.origin.describe())
            .field("state", &self.state.load())
            .finish()
    }
}

impl JwksSlot {
    /// A slot whose state is already known (inline sets, files read at creation) or pending.
    pub fn new(origin: Origin, timeout: Duration, initial: KeysState) -> Self {
        let attempted = !matches!(initial, KeysState::Pending);
        Self {
            origin,
            timeout,
            state: ArcSwap::from_pointee(initial),
            attempted: watch::Sender::new(attempted),
            refresher: Mutex::new(None),
        }
    }

    /// The keys in force; never blocks.
    pub fn load(&self) -> arc_swap::Guard<Arc<KeysState>> {
        self.state.load()
    }

    /// Records a fetch: new keys replace the old; a failure keeps keys fetched before.
    pub fn record(&self, fetched: Option<KeySet>) {
        match fetched {
            Some(keys) => self.state.store(Arc::new(KeysState::Ready(keys))),
            None => {
                if !matches!(**self.state.load(), KeysState::Ready(_)) {
                    self.state.store(Arc::new(KeysState::FetchFailed));
                }
            }
        }
        self.attempted.send_replace(true);
    }

    /// True once the first fetch finished, whatever its result.
    pub fn attempted(&self) -> bool {
        *self.attempted.borrow()
    }

    /// Waits for the first fetch to finish.
    pub async fn wait_attempted(&self) {
        let mut rx = self.attempted.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Stores the refresher's handle unless one is running; false if one was.
    pub fn set_refresher(&self, start: impl FnOnce() -> AbortHandle) -> bool {
        let mut guard = self.refresher.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_some() {
            return false;
        }
        *guard = Some(start());
        true
    }
}

impl Drop for JwksSlot {
    fn drop(&mut self) {
        // No rule uses this source any more: stop refreshing it.
        let handle = self
            .refresher
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(issuer: &str, jwks: JwksSource) -> Origin {
        Origin::of(&JwtRule::new(issuer, jwks))
    }

    #[test]
    fn origins_by_source() {
        assert_eq!(
            origin("i", JwksSource::Uri("HTTPS://idp/keys".into())),
            Origin::Http("HTTPS://idp/keys".into())
        );
        assert_eq!(
            origin("i", JwksSource::Uri("file:///etc/jwks.json".into())),
            Origin::File("/etc/jwks.json".into())
        );
        assert_eq!(
            origin("i", JwksSource::Uri("keys/jwks.json".into())),
            Origin::File("keys/jwks.json".into())
        );
        assert_eq!(
            origin("https://idp", JwksSource::Discovery),
            Origin::Discovery("https://idp".into())
        );
        assert!(!origin("i", JwksSource::Inline("{}".into())).is_fetched());
    }

    #[test]
    fn a_failed_refresh_keeps_fetched_keys() {
        let slot = JwksSlot::new(
            Origin::Http("u".into()),
            Duration::from_secs(1),
            KeysState::Pending,
        );
        assert!(!slot.attempted());
        slot.record(None);
        assert!(slot.attempted());
        assert!(matches!(**slot.load(), KeysState::FetchFailed));
        slot.record(Some(KeySet::empty()));
        slot.record(None);
        assert!(matches!(**slot.load(), KeysState::Ready(_)));
    }
}
