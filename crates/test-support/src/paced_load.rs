//! Users' traffic for canary tests: requests one after the other at a fixed pace, with the
//! answers counted by the version that served them (`x-version`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::TestClient;

/// Answers seen by users, by version (`failed` counts non-200 answers and errors).
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// 200 answers by their `x-version`.
    pub by_version: BTreeMap<String, u64>,
    /// Non-200 answers and errors.
    pub failed: u64,
    /// Requests sent.
    pub total: u64,
}

/// Requests to `addr` for `host` every `pace` until stopped (at most `max`); with `tester`,
/// one in five carries the tester's header (`canary: canary-tester`).
pub struct PacedLoad {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl PacedLoad {
    /// Starts sending.
    pub fn start(
        addr: SocketAddr,
        host: &'static str,
        pace: Duration,
        max: u64,
        tester: bool,
    ) -> PacedLoad {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let c = TestClient::new();
            let mut tick = tokio::time::interval(pace);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for i in 0..max {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                tick.tick().await;
                let headers: &[(&str, &str)] = if tester && i % 5 == 0 {
                    &[("canary", "canary-tester")]
                } else {
                    &[]
                };
                let r = c
                    .try_request("GET", addr, host, "/", headers, Bytes::new())
                    .await;
                let mut seen = s.lock().unwrap();
                seen.total += 1;
                match r {
                    Ok(r) if r.status == 200 => {
                        let v = r.header("x-version").unwrap_or("?").to_string();
                        *seen.by_version.entry(v).or_default() += 1;
                    }
                    _ => seen.failed += 1,
                }
            }
        });
        PacedLoad { seen, stop, task }
    }

    /// What was seen so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    /// Stops sending; what was seen in all.
    pub async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let seen = self.seen.lock().unwrap().clone();
        seen
    }
}
