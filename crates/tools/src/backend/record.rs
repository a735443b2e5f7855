//! A bounded log of the requests a backend received.
//!
//! Integration tests put the proxy between a client and a backend and then
//! need to see exactly what the proxy forwarded (Host, x-forwarded-for,
//! x-request-id, rewritten paths), so the backend keeps the most recent ones.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;

use serde::Serialize;

/// How many requests the log keeps before dropping the oldest.
pub const RECEIVED_CAPACITY: usize = 1000;

/// One request as the backend saw it on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReceivedRequest {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Request target as received: path plus `?query` when present.
    pub path: String,
    /// Header fields in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// HTTP version, e.g. `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// The URI authority (HTTP/2 `:authority`), which HTTP/1.1 rarely carries.
    pub authority: Option<String>,
    /// Length of the request body in bytes.
    pub body_len: usize,
    /// The client socket address, which tells apart the proxy's upstream connections.
    pub peer: SocketAddr,
}

impl ReceivedRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (case-insensitive), in arrival order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The effective host: the Host header, or `:authority` for HTTP/2.
    pub fn host(&self) -> Option<&str> {
        self.header("host").or(self.authority.as_deref())
    }
}

/// Thread-safe ring buffer of [`ReceivedRequest`]s.
#[derive(Debug, Default)]
pub(crate) struct ReceivedLog {
    entries: Mutex<VecDeque<ReceivedRequest>>,
}

impl ReceivedLog {
    /// Appends a request, evicting the oldest one when full.
    pub(crate) fn push(&self, request: ReceivedRequest) {
        let mut entries = self.lock();
        if entries.len() >= RECEIVED_CAPACITY {
            entries.pop_front();
        }
        entries.push_back(request);
    }

    /// Copies out the retained requests, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<ReceivedRequest> {
        self.lock().iter().cloned().collect()
    }

    /// The most recent request, if any.
    pub(crate) fn last(&self) -> Option<ReceivedRequest> {
        self.lock().back().cloned()
    }

    /// Forgets everything retained so far.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<ReceivedRequest>> {
        // A panic while holding the lock cannot leave the deque half-updated,
        // so a poisoned lock is still safe to use.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> ReceivedRequest {
        ReceivedRequest {
            method: "GET".into(),
            path: path.into(),
            headers: vec![
                ("host".into(), "example".into()),
                ("x-a".into(), "1".into()),
                ("X-A".into(), "2".into()),
            ],
            version: "HTTP/1.1".into(),
            authority: None,
            body_len: 0,
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
        }
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let r = request("/");
        assert_eq!(r.header("HOST"), Some("example"));
        assert_eq!(r.header_all("x-a"), vec!["1", "2"]);
        assert_eq!(r.host(), Some("example"));
        assert_eq!(r.header("missing"), None);
    }

    #[test]
    fn host_falls_back_to_authority() {
        let mut r = request("/");
        r.headers.clear();
        r.authority = Some("svc:80".into());
        assert_eq!(r.host(), Some("svc:80"));
    }

    #[test]
    fn log_is_bounded_and_ordered() {
        let log = ReceivedLog::default();
        for i in 0..RECEIVED_CAPACITY + 5 {
            log.push(request(&format!("/{i}")));
        }
        let all = log.snapshot();
        assert_eq!(all.len(), RECEIVED_CAPACITY);
        assert_eq!(all[0].path, "/5");
        assert_eq!(
            log.last().map(|r| r.path),
            Some(format!("/{}", RECEIVED_CAPACITY + 4))
        );
        log.clear();
        assert!(log.snapshot().is_empty());
    }
}
