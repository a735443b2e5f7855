//! Replaced snapshots are freed on a thread of their own. A reload swaps the snapshot while
//! requests still hold the previous one; whichever of them finished last used to free it, on
//! a runtime worker: at 10,000 services that is 100 ms of freeing during which, with
//! `--workers 1`, no request and no admin call is served. The retirer keeps one reference to
//! each replaced value and drops it once it holds the only one.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often held values are checked for release.
const POLL: Duration = Duration::from_millis(20);

/// Frees replaced values off the caller's thread once nobody else holds them.
#[derive(Debug)]
pub struct Retirer<T: Send + Sync + 'static> {
    /// Started at the first retirement; `None` inside when the thread could not start.
    tx: Mutex<Option<Sender<Arc<T>>>>,
}

impl<T: Send + Sync + 'static> Default for Retirer<T> {
    fn default() -> Self {
        Retirer {
            tx: Mutex::new(None),
        }
    }
}

impl<T: Send + Sync + 'static> Retirer<T> {
    /// Hands `value` over: it is dropped on the retirer's thread once its last other holder
    /// lets go. Without that thread (it could not be started) it is dropped here.
    pub fn retire(&self, value: Arc<T>) {
        let Ok(mut tx) = self.tx.lock() else {
            return;
        };
        if tx.is_none() {
            let (sender, receiver) = mpsc::channel();
            let started = std::thread::Builder::new()
                .name("sluice-retire".into())
                .spawn(move || run(receiver));
            if started.is_err() {
                return;
            }
            *tx = Some(sender);
        }
        if let Some(sender) = tx.as_ref() {
            // Fails only when the thread is gone; the value is then dropped here.
            let _ = sender.send(value);
        }
    }
}

fn run<T>(receiver: Receiver<Arc<T>>) {
    let mut held: Vec<Arc<T>> = Vec::new();
    loop {
        let next = if held.is_empty() {
            receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            receiver.recv_timeout(POLL)
        };
        match next {
            Ok(v) => held.push(v),
            Err(RecvTimeoutError::Timeout) => {}
            // The owner is gone: free what is left as its holders finish.
            Err(RecvTimeoutError::Disconnected) if held.is_empty() => return,
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
        }
        held.retain(|v| Arc::strong_count(v) > 1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::thread::ThreadId;
    use std::time::Instant;

    use super::*;

    /// Records the thread that dropped it.
    struct Tracked(Arc<Mutex<Option<ThreadId>>>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(std::thread::current().id());
        }
    }

    fn dropped_by(cell: &Arc<Mutex<Option<ThreadId>>>) -> Option<ThreadId> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(id) = *cell.lock().unwrap() {
                return Some(id);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn the_last_holder_does_not_free_a_retired_value() {
        let retirer = Retirer::default();
        let cell = Arc::new(Mutex::new(None));
        let value = Arc::new(Tracked(cell.clone()));
        let request = Arc::clone(&value);
        retirer.retire(value);
        // Still held by the "request": nothing is freed.
        std::thread::sleep(POLL * 3);
        assert!(cell.lock().unwrap().is_none());
        // The request finishes on this thread; the value is freed on the retirer's.
        drop(request);
        let by = dropped_by(&cell).expect("freed after its last holder let go");
        assert_ne!(by, std::thread::current().id());
    }

    #[test]
    fn a_value_nobody_holds_is_freed_soon() {
        let retirer = Retirer::default();
        let cells: Vec<_> = (0..3).map(|_| Arc::new(Mutex::new(None))).collect();
        for c in &cells {
            retirer.retire(Arc::new(Tracked(c.clone())));
        }
        for c in &cells {
            assert!(dropped_by(c).is_some());
        }
    }
}
