//! Reload work runs on a thread of its own at a lower CPU priority. A reload of a large config
//! is seconds of CPU; at normal priority it competes with the runtime workers for the cores,
//! and on a small machine requests waited for it (p99 during reloads 2-3x the quiet p99 on 2
//! cores). Niced, the kernel runs it in the time requests leave: a reload takes longer under
//! load, requests do not.

use std::panic::AssertUnwindSafe;

/// How much lower than the proxy's own priority reload work runs (`nice` increment).
const RELOAD_NICE: i32 = 10;

/// Why background work gave no result.
#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    /// The work panicked.
    #[error("panicked: {0}")]
    Panicked(String),
    /// No thread could be started for it.
    #[error("cannot start a thread: {0}")]
    NoThread(std::io::Error),
}

/// Runs `work` on a new thread at a lower priority (`with_nice`) or the normal one.
pub async fn run<T: Send + 'static>(
    with_nice: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BackgroundError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sluice-reload".into())
        .spawn(move || {
            if with_nice {
                lower_priority();
            }
            let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
        })
        .map_err(BackgroundError::NoThread)?;
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(panic)) => Err(BackgroundError::Panicked(panic_message(&*panic))),
        Err(_) => Err(BackgroundError::Panicked(
            "the thread ended without a result".into(),
        )),
    }
}

/// Lowers the calling thread's priority (Linux: the nice value is per thread). Best effort: a
/// reload at normal priority is still a reload.
fn lower_priority() {
    #[cfg(unix)]
    if let Err(e) = rustix::process::nice(RELOAD_NICE) {
        tracing::debug!("reload thread keeps its priority: {e}");
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The calling thread's nice value, from `/proc/thread-self/stat` (field 19).
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn reload_work_runs_niced_and_the_caller_keeps_its_priority() {
        let before = own_nice();
        let inside = run(true, own_nice).await.unwrap();
        assert_eq!(inside, (before + RELOAD_NICE).min(19));
        assert_eq!(own_nice(), before);
        assert_eq!(run(false, own_nice).await.unwrap(), before);
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_a_crash() {
        let r: Result<(), _> = run(true, || panic!("boom")).await;
        assert!(matches!(r, Err(BackgroundError::Panicked(m)) if m == "boom"));
    }
}
