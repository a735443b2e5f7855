//! The resolver of DNS ServiceEntry names: each name is re-resolved on its record's TTL
//! (bounded to [1 s, `--dns-refresh`]) by a task of its own, off the request path; the answers
//! are published as one immutable [`DnsAnswers`] table, and a change bumps a generation that
//! the runtime watches to recompile the clusters that use the name.

#![warn(missing_docs)]

mod dynamic;
mod refresh;
mod settings;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_resolver::TokioResolver;
use sluice_config::dns::DnsAnswers;
use tokio::sync::watch;
use tokio::task::AbortHandle;

pub use settings::{parse_server, DnsSettings};

/// Why the resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The system's resolver configuration (`/etc/resolv.conf`) could not be read.
    #[error("cannot read the system's DNS configuration: {0}")]
    SystemConfig(String),
    /// A `--dns-server` value is not `IP` or `IP:PORT`.
    #[error("invalid DNS server `{0}`: expected IP or IP:PORT")]
    Server(String),
}

/// The answers and the generation that produced them.
#[derive(Debug, Default)]
pub struct Published {
    /// Bumped by every change of an address list.
    pub generation: u64,
    /// The latest addresses of every tracked name.
    pub answers: DnsAnswers,
}

/// Tracks the names the config needs and keeps their addresses fresh; cheap to clone.
#[derive(Clone)]
pub struct DnsResolver {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: TokioResolver,
    refresh: Duration,
    published: ArcSwap<Published>,
    /// Serializes writers of `published` (readers never wait).
    write: Mutex<()>,
    tasks: Mutex<HashMap<String, AbortHandle>>,
    changed: watch::Sender<u64>,
    /// `DYNAMIC_DNS` answers, resolved at request time.
    dynamic: Mutex<dynamic::HostCache>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).values() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver")
            .field("refresh", &self.inner.refresh)
            .field("names", &lock(&self.inner.tasks).len())
            .finish()
    }
}

impl DnsResolver {
    /// A resolver asking `settings.servers` (or the system's, when empty).
    pub fn new(settings: &DnsSettings) -> Result<Self, DnsError> {
        let resolver = settings::build(settings)?;
        let (changed, _) = watch::channel(0);
        Ok(DnsResolver {
            inner: Arc::new(Inner {
                resolver,
                refresh: settings.refresh,
                published: ArcSwap::from_pointee(Published::default()),
                write: Mutex::new(()),
                tasks: Mutex::new(HashMap::new()),
                changed,
                dynamic: Mutex::new(dynamic::HostCache::default()),
            }),
        })
    }

    /// The latest answers (a lock-free load).
    pub fn published(&self) -> Arc<Published> {
        self.inner.published.load_full()
    }

    /// Receives the generation after each change of some name's addresses.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Tracks exactly `names`: names no longer wanted are forgotten, and each new one gets a
    /// refresh task; waits up to `wait` for the new names' first answers (so a new DNS cluster
    /// is published with its addresses, as Envoy warms a cluster before using it). Returns
    /// whether any new name was answered meanwhile.
    pub async fn track(&self, names: &BTreeSet<String>, wait: Duration) -> bool {
        let mut first = Vec::new();
        {
            let mut tasks = lock(&self.inner.tasks);
            let gone: Vec<String> = tasks
                .keys()
                .filter(|n| !names.contains(*n))
                .cloned()
                .collect();
            for name in &gone {
                if let Some(task) = tasks.remove(name) {
                    task.abort();
                }
            }
            if !gone.is_empty() {
                self.inner.update(|answers| {
                    for name in &gone {
                        answers.remove(name);
                    }
                    false
                });
            }
            for name in names {
                if tasks.contains_key(name) {
                    continue;
                }
                let (tx, rx) = tokio::sync::oneshot::channel();
                let task = tokio::spawn(refresh::run(
                    Arc::downgrade(&self.inner),
                    self.inner.resolver.clone(),
                    self.inner.refresh,
                    name.clone(),
                    tx,
                ));
                tasks.insert(name.clone(), task.abort_handle());
                first.push(rx);
            }
        }
        if first.is_empty() {
            return false;
        }
        let all = futures_join(first);
        let answered = tokio::time::timeout(wait, all).await.unwrap_or_default();
        answered > 0
    }

    /// The names currently tracked.
    pub fn names(&self) -> BTreeSet<String> {
        lock(&self.inner.tasks).keys().cloned().collect()
    }
}

/// Waits for every first answer; counts those that brought addresses.
async fn futures_join(first: Vec<tokio::sync::oneshot::Receiver<bool>>) -> usize {
    let mut answered = 0;
    for rx in first {
        if rx.await.unwrap_or(false) {
            answered += 1;
        }
    }
    answered
}

impl Inner {
    /// Applies `edit` to a copy of the answers and publishes it; `edit` says whether the
    /// addresses changed (which bumps the generation and wakes the watchers).
    fn update(&self, edit: impl FnOnce(&mut DnsAnswers) -> bool) {
        let _guard = lock(&self.write);
        let current = self.published.load();
        let mut answers = current.answers.clone();
        let changed = edit(&mut answers);
        let generation = current.generation + u64::from(changed);
        self.published.store(Arc::new(Published {
            generation,
            answers,
        }));
        if changed {
            self.changed.send_replace(generation);
        }
    }

    /// Records an answer for `name`; whether its addresses differ from the last ones. The
    /// same addresses in another order are no change: servers that rotate their answers would
    /// otherwise recompile the config at every TTL (a LOGICAL_DNS cluster then keeps the first
    /// address it had until the set itself changes).
    fn set(&self, name: &str, addresses: Vec<IpAddr>) -> bool {
        let mut differs = false;
        self.update(|answers| {
            differs = !answers
                .get(name)
                .is_some_and(|old| same_set(old, &addresses));
            if differs {
                answers.insert(name, addresses);
            }
            differs
        });
        differs
    }
}

/// Whether two answers hold the same addresses, in any order.
fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_answer_is_no_change() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!(same_set(
            &[ip("10.0.0.1"), ip("10.0.0.2")],
            &[ip("10.0.0.2"), ip("10.0.0.1")]
        ));
        assert!(!same_set(
            &[ip("10.0.0.1")],
            &[ip("10.0.0.1"), ip("10.0.0.2")]
        ));
        assert!(!same_set(&[ip("10.0.0.1")], &[ip("10.0.0.3")]));
        assert!(same_set(&[], &[]));
    }
}
