//! Idle HTTP/1.1 connections kept per endpoint and reused oldest first, for both HTTP/1.1 clients.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

use super::http1_pool::PoolSettings;

/// Idle connections one endpoint keeps at most.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// A pooled connection with its bookkeeping.
pub(super) struct Idle<C> {
    /// The connection.
    pub conn: C,
    /// Requests sent on it so far.
    pub served: u32,
    /// When it was last checked in.
    pub since: Instant,
    /// When it was opened (`maxConnectionDuration`).
    pub born: Instant,
}

impl<C> Idle<C> {
    /// A connection that has served nothing yet.
    pub(super) fn new(conn: C) -> Self {
        let now = Instant::now();
        Idle {
            conn,
            served: 0,
            since: now,
            born: now,
        }
    }
}

/// What [`IdleConns::checkout`] does with a connection it looks at.
pub(super) enum Verdict {
    /// Hand it out.
    Use,
    /// Keep it for later (still busy).
    Skip,
    /// Close it (closed by the peer, expired).
    Drop,
}

type Map<C> = HashMap<Box<str>, VecDeque<Idle<C>>, foldhash::fast::RandomState>;

/// Idle connections keyed by endpoint authority.
pub(super) struct IdleConns<C> {
    map: Mutex<Map<C>>,
}

impl<C> Default for IdleConns<C> {
    fn default() -> Self {
        IdleConns {
            map: Mutex::new(HashMap::default()),
        }
    }
}

impl<C> IdleConns<C> {
    fn lock(&self) -> MutexGuard<'_, Map<C>> {
        // The map stays consistent whatever a panicking holder did: each operation is one push
        // or pop.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest connection to `authority` that `judge` lets through.
    pub(super) fn checkout(
        &self,
        authority: &str,
        mut judge: impl FnMut(&Idle<C>) -> Verdict,
    ) -> Option<Idle<C>> {
        let mut map = self.lock();
        let queue = map.get_mut(authority)?;
        for _ in 0..queue.len() {
            let idle = queue.pop_front()?;
            match judge(&idle) {
                Verdict::Use => return Some(idle),
                Verdict::Skip => queue.push_back(idle),
                Verdict::Drop => {}
            }
        }
        None
    }

    /// Counts the request `idle` carried and keeps it for reuse, unless it has carried
    /// `maxRequestsPerConnection`, outlived `maxConnectionDuration` or the endpoint already
    /// keeps enough.
    pub(super) fn checkin(&self, authority: &str, mut idle: Idle<C>, settings: &PoolSettings) {
        idle.served = idle.served.saturating_add(1);
        let max_requests = settings.max_requests_per_connection;
        if max_requests > 0 && idle.served >= max_requests {
            return;
        }
        idle.since = Instant::now();
        if settings.aged(idle.born, idle.since) {
            return;
        }
        let mut map = self.lock();
        if let Some(queue) = map.get_mut(authority) {
            if queue.len() < MAX_IDLE_PER_ENDPOINT {
                queue.push_back(idle);
            }
            return;
        }
        map.insert(authority.into(), VecDeque::from([idle]));
    }

    /// Drops the connections `keep` rejects, and endpoints left with none.
    pub(super) fn retain(&self, mut keep: impl FnMut(&Idle<C>) -> bool) {
        self.lock().retain(|_, queue| {
            queue.retain(&mut keep);
            !queue.is_empty()
        });
    }

    /// Connections held, over all endpoints.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().values().map(VecDeque::len).sum()
    }
}
