//! The key sets of every rule in use, each parsed once and refreshed in the background.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rustls::ClientConfig;
use tokio::runtime::Handle;

use crate::fetch::{FetchError, Fetcher};
use crate::key_set::KeySet;
use crate::rule::JwtRule;
use crate::slot::{JwksSlot, KeysState, Origin};

/// How often a fetched key set is read again (istiod's refresh period).
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// How soon a failed fetch is tried again.
pub const JWKS_RETRY_INTERVAL: Duration = Duration::from_secs(60);

/// How one key source stands, for status pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksSourceStatus {
    /// `inline`, the URL, `file://<path>` or `discovery:<issuer>`.
    pub source: String,
    /// Usable keys in force; `None` while pending or after a failed first fetch.
    pub keys: Option<usize>,
    /// True once the first fetch finished (always true for inline sets).
    pub attempted: bool,
}

/// Key sets by source, shared by the authenticators of successive configurations so a
/// reload keeps keys already fetched. Sources no authenticator uses any more are dropped
/// with their refresher.
pub struct JwksCache {
    slots: Mutex<HashMap<Origin, Weak<JwksSlot>>>,
    fetcher: Arc<Fetcher>,
    runtime: Option<Handle>,
    refresh: Duration,
    retry: Duration,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("sources", &self.status())
            .finish()
    }
}

impl Default for JwksCache {
    fn default() -> Self {
        Self::new()
    }
}

impl JwksCache {
    /// A cache trusting the platform's roots for HTTPS. Refreshers run on the runtime current
    /// here, else on the one current when a rule is compiled, else from the first
    /// [`JwksCache::refresh_now`].
    pub fn new() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            fetcher: Arc::new(Fetcher::native()),
            runtime: Handle::try_current().ok(),
            refresh: JWKS_REFRESH_INTERVAL,
            retry: JWKS_RETRY_INTERVAL,
        }
    }

    /// Uses `config` (its roots, its provider) for HTTPS fetches.
    pub fn with_tls(mut self, config: Arc<ClientConfig>) -> Self {
        self.fetcher = Arc::new(Fetcher::with_tls(config));
        self
    }

    /// Runs refreshers on `runtime`.
    pub fn with_runtime(mut self, runtime: Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Changes the refresh period and the retry delay after a failure.
    pub fn with_intervals(mut self, refresh: Duration, retry: Duration) -> Self {
        self.refresh = refresh;
        self.retry = retry;
        self
    }

    /// The slot for `rule`'s keys, shared with every rule naming the same source.
    pub(crate) fn slot(&self, rule: &JwtRule) -> Arc<JwksSlot> {
        let origin = Origin::of(rule);
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|_, weak| weak.strong_count() > 0);
        if let Some(slot) = slots.get(&origin).and_then(Weak::upgrade) {
            return slot;
        }
        let initial = initial_state(&origin);
        let slot = Arc::new(JwksSlot::new(origin.clone(), rule.timeout, initial));
        slots.insert(origin, Arc::downgrade(&slot));
        drop(slots);
        if let Some(runtime) = self.runtime.clone().or_else(|| Handle::try_current().ok()) {
            self.start_refresher(&slot, &runtime);
        }
        slot
    }

    /// Fetches every source in use now and waits for the results; starts the periodic
    /// refreshers if none could be started before.
    pub async fn refresh_now(&self) {
        let slots = self.live_slots();
        let fetches = slots
            .iter()
            .filter(|slot| slot.origin.is_fetched())
            .map(|slot| refresh_slot(&self.fetcher, slot));
        futures_util::future::join_all(fetches).await;
        let runtime = self.runtime.clone().or_else(|| Handle::try_current().ok());
        if let Some(runtime) = runtime {
            for slot in &slots {
                self.start_refresher(slot, &runtime);
            }
        }
    }

    /// Waits until every source in use has finished its first fetch (successful or not).
    pub async fn ready(&self) {
        let slots = self.live_slots();
        // Rules compiled outside any runtime have no refresher yet: start them here.
        if let Some(runtime) = self.runtime.clone().or_else(|| Handle::try_current().ok()) {
            for slot in &slots {
                self.start_refresher(slot, &runtime);
            }
        }
        for slot in slots {
            slot.wait_attempted().await;
        }
    }

    /// True when every source in use has finished its first fetch.
    pub fn is_ready(&self) -> bool {
        self.live_slots().iter().all(|slot| slot.attempted())
    }

    /// How each source in use stands.
    pub fn status(&self) -> Vec<JwksSourceStatus> {
        let mut out: Vec<JwksSourceStatus> = self
            .live_slots()
            .iter()
            .map(|slot| JwksSourceStatus {
                source: slot.origin.describe(),
                keys: match &**slot.load() {
                    KeysState::Ready(keys) => Some(keys.len()),
                    KeysState::Pending | KeysState::FetchFailed => None,
                },
                attempted: slot.attempted(),
            })
            .collect();
        out.sort_by(|a, b| a.source.cmp(&b.source));
        out
    }

    fn live_slots(&self) -> Vec<Arc<JwksSlot>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.values().filter_map(Weak::upgrade).collect()
    }

    fn start_refresher(&self, slot: &Arc<JwksSlot>, runtime: &Handle) {
        if !slot.origin.is_fetched() {
            return;
        }
        let weak = Arc::downgrade(slot);
        let fetcher = Arc::clone(&self.fetcher);
        let (refresh, retry) = (self.refresh, self.retry);
        slot.set_refresher(|| {
            runtime
                .spawn(refresh_loop(weak, fetcher, refresh, retry))
                .abort_handle()
        });
    }
}

/// Inline sets are parsed here once; files are read here so they are ready at once.
fn initial_state(origin: &Origin) -> KeysState {
    match origin {
        Origin::Inline(json) => KeysState::Ready(parse_local(json, origin)),
        Origin::File(path) => match std::fs::read_to_string(path) {
            Ok(text) => KeysState::Ready(parse_local(&text, origin)),
            // The refresher reads it again and records the failure.
            Err(_) => KeysState::Pending,
        },
        Origin::Http(_) | Origin::Discovery(_) => KeysState::Pending,
    }
}

/// A local set that does not parse has no keys, so its issuer's tokens are refused.
fn parse_local(json: &str, origin: &Origin) -> KeySet {
    KeySet::parse(json).unwrap_or_else(|error| {
        tracing::warn!(source = %origin.describe(), %error, "JWKS has no usable key");
        KeySet::empty()
    })
}

/// Fetches once and records the result; true on success.
async fn refresh_slot(fetcher: &Fetcher, slot: &JwksSlot) -> bool {
    let result = fetcher.fetch(&slot.origin, slot.timeout).await;
    match result {
        Ok(keys) => {
            slot.record(Some(keys));
            true
        }
        Err(FetchError::Jwks(error)) if !slot.origin.is_remote() => {
            tracing::warn!(source = %slot.origin.describe(), %error, "JWKS has no usable key");
            slot.record(Some(KeySet::empty()));
            true
        }
        Err(error) => {
            tracing::warn!(source = %slot.origin.describe(), %error, "JWKS fetch failed");
            slot.record(None);
            false
        }
    }
}

/// Fetches at once, then every `refresh`, or after `retry` when a fetch failed; ends when
/// no rule uses the source any more.
async fn refresh_loop(
    slot: Weak<JwksSlot>,
    fetcher: Arc<Fetcher>,
    refresh: Duration,
    retry: Duration,
) {
    loop {
        let Some(strong) = slot.upgrade() else {
            return;
        };
        let ok = refresh_slot(&fetcher, &strong).await;
        drop(strong);
        tokio::time::sleep(if ok { refresh } else { retry }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::JwksSource;

    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn shareable_across_tasks() {
        assert_send_sync::<JwksCache>();
        assert_send_sync::<crate::JwtAuthenticator>();
        let cache = JwksCache::new();
        assert_send(&cache.refresh_now());
        assert_send(&cache.ready());
    }

    #[test]
    fn rules_compiled_outside_a_runtime_are_fetched_once_one_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let cache = JwksCache::new();
        let rule = JwtRule::new("i", JwksSource::Uri(path.display().to_string()));
        // The file does not exist yet: pending, and no runtime to retry on.
        let slot = cache.slot(&rule);
        assert!(!slot.attempted());
        std::fs::write(&path, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(cache.ready());
        assert_eq!(cache.status()[0].keys, Some(1));
    }
}
