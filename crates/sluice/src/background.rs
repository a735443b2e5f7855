//! Config work (parsing, compiling, publishing) on threads the scheduler serves after the ones
//! that carry traffic.
//!
//! A reload of a large config keeps a core busy for a tenth of a second or more. On a runtime
//! worker it would stall requests outright; on tokio's blocking pool it still competes with the
//! workers as an equal, and with `--workers 1` on a busy machine a request that arrives
//! meanwhile waits for the compile's time slice to end. A nicer thread loses that race: the
//! kernel lets a waking worker preempt it. Threads the work spawns (parsing, the analysis beside
//! the compile) inherit its niceness.

use tokio::sync::oneshot;

/// How much nicer than the proxy config work runs. Not 19: under a load that keeps every core
/// busy the compile still gets about a tenth of a core, so reloads finish in seconds, not
/// minutes.
const NICENESS: i32 = 10;

/// Config work ended without a result.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    /// The thread could not be started.
    #[error("cannot start a config thread: {0}")]
    Spawn(std::io::Error),
    /// The work panicked.
    #[error("the config thread panicked")]
    Panicked,
}

/// Runs `work` on a new, nicer thread and waits for its result without blocking the runtime.
pub async fn run<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, Failed> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("sluice-config".into())
        .spawn(move || {
            lower_priority();
            // A panic drops `tx`: the receiver reports it.
            let _ = tx.send(work());
        })
        .map_err(Failed::Spawn)?;
    rx.await.map_err(|_| Failed::Panicked)
}

/// Makes the calling thread (only it: Linux keeps niceness per thread) nicer by [`NICENESS`].
/// Failing leaves it as it was: slower requests during reloads, nothing worse.
fn lower_priority() {
    let me = Some(rustix::thread::gettid());
    if let Ok(now) = rustix::process::getpriority_process(me) {
        let _ = rustix::process::setpriority_process(me, (now + NICENESS).min(19));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_nicer_than_its_caller() {
        let caller = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        let inside = run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .map_err(|e| e.to_string());
        let (Ok(caller), Ok(Ok(inside))) = (caller, inside) else {
            panic!("niceness unreadable");
        };
        assert_eq!(inside, (caller + NICENESS).min(19));
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_a_hang() {
        let r = run(|| -> u8 { panic!("boom") }).await;
        assert!(matches!(r, Err(Failed::Panicked)));
    }
}
