//! A fake Kubernetes API server on 127.0.0.1:0 that speaks real list + watch: discovery of
//! networking.istio.io and security.istio.io, lists with a resourceVersion, chunked watch streams of
//! `{"type":…,"object":…}` lines from a resourceVersion, 410 Gone for compacted history,
//! BOOKMARK events, metadata-only lists/watches, and Event creation.

#![allow(dead_code)]

mod http;
pub mod store;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use store::{by_kind, Msg, Shared, Store};

/// A running fake API server.
pub struct FakeApi {
    pub url: String,
    pub store: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApi {
    /// Starts the server with no objects.
    pub async fn start() -> FakeApi {
        Self::start_with(Store::new()).await
    }

    /// Starts the server with a prepared store (e.g. other served versions).
    pub async fn start_with(store: Store) -> FakeApi {
        let store = Arc::new(Mutex::new(store));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(http::serve(listener, store.clone()));
        FakeApi { url, store, task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap()
    }

    /// Creates or replaces every object of a multi-document YAML text (like `kubectl apply`).
    pub fn apply(&self, yaml: &str) {
        for doc in sluice_model::yaml::parse_documents(yaml).unwrap() {
            if doc.value.is_object() {
                self.lock().put(doc.value);
            }
        }
    }

    /// Changes an object in place (like `kubectl patch`).
    pub fn patch(&self, kind: &str, ns: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let mut s = self.lock();
        let mut obj = s.get(kind, ns, name).expect("object to patch");
        f(&mut obj);
        s.put(obj);
    }

    /// Deletes an object.
    pub fn delete(&self, kind: &str, ns: &str, name: &str) {
        let mut s = self.lock();
        let obj = s.get(kind, ns, name).expect("object to delete");
        s.record(by_kind(kind), "DELETED", obj);
    }

    /// Deletes an object without telling open watches (as if it happened while they were down).
    pub fn delete_silently(&self, kind: &str, ns: &str, name: &str) {
        let mut s = self.lock();
        let c = by_kind(kind);
        s.rv += 1;
        s.objects
            .get_mut(c.plural)
            .and_then(|o| o.remove(&(ns.to_string(), name.to_string())));
    }

    /// Closes every open watch (an API server restart or a watch timeout).
    pub fn drop_watches(&self) {
        self.lock().kill.send_modify(|n| *n += 1);
    }

    /// Forgets all history up to now and closes every watch: resuming gets 410 Gone.
    pub fn expire(&self) {
        let mut s = self.lock();
        s.compacted = s.rv + 1;
        s.kill.send_modify(|n| *n += 1);
    }

    /// Forgets history before `rv` (watches resuming from older versions get 410 Gone).
    pub fn compact_to(&self, rv: u64) {
        self.lock().compacted = rv;
    }

    /// Sends a BOOKMARK at the current resourceVersion to every open watch.
    pub fn bookmark(&self) -> u64 {
        let s = self.lock();
        let _ = s.events.send(Msg::Bookmark(s.rv));
        s.rv
    }

    /// Moves the resourceVersion on without any object change.
    pub fn bump(&self, by: u64) -> u64 {
        let mut s = self.lock();
        s.rv += by;
        s.rv
    }

    /// How many times a collection was listed.
    pub fn lists(&self, plural: &str) -> usize {
        self.lock().lists.get(plural).copied().unwrap_or(0)
    }

    /// Total lists of all collections.
    pub fn total_lists(&self) -> usize {
        self.lock().lists.values().sum()
    }

    /// Request lines seen (`GET /path?query [accept]`).
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.lock().open_watches
    }

    /// Events POSTed by the client.
    pub fn posted_events(&self) -> Vec<Value> {
        self.lock().posted_events.clone()
    }
}

/// Polls `f` every 10 ms until it is true; returns how long it took, or panics after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = std::time::Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
