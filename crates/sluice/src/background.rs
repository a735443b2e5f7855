//! Config work (parsing, compiling, publishing) on threads the scheduler serves after the ones
//! that carry traffic.
//!
//! A reload of a large config keeps a core busy for a tenth of a second or more. On a runtime
//! worker it would stall requests outright; on tokio's blocking pool it still competes with the
//! workers as an equal, and with `--workers 1` on a busy machine a request that arrives
//! meanwhile waits for the compile's time slice to end. A nicer thread loses that race: the
//! kernel lets a waking worker preempt it. Threads the work spawns (parsing, the analysis beside
//! the compile) inherit its niceness.

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

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

type Job = Box<dyn FnOnce() + Send>;

/// One long-lived, nicer thread that runs a proxy's config work in order. Long-lived because
/// the allocator keeps a heap per thread: a thread started per reload faults in fresh pages for
/// what a build allocates (the kernel zeroing them was up to a third of an edit's CPU at
/// 10,000 services).
pub struct ConfigThread {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
}

/// How long the config thread waits after a job before it hands the memory that job freed back
/// to the system: longer than the allocator keeps it for reuse (`sluice_alloc`), so a burst of
/// reloads reuses it and an idle proxy holds no more than its snapshot.
const IDLE_AFTER: Duration = Duration::from_secs(2);

/// Runs jobs until the proxy drops its `ConfigThread`, returning freed memory once idle.
fn serve(jobs: &std::sync::mpsc::Receiver<Job>) {
    loop {
        let job = match jobs.recv_timeout(IDLE_AFTER) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                sluice_alloc::release_freed_memory();
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        job();
    }
}

impl ConfigThread {
    /// Starts the thread; without one (it cannot be started), each job gets a thread of its
    /// own.
    pub fn start() -> ConfigThread {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("sluice-config".into())
            .spawn(move || {
                lower_priority();
                serve(&rx);
            });
        if let Err(e) = &started {
            tracing::warn!("cannot start the config thread ({e}): each reload starts one");
        }
        ConfigThread {
            jobs: started.ok().map(|_| tx),
        }
    }

    /// Runs `work` on the config thread and waits for its result without blocking the runtime.
    pub async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, Failed> {
        let (tx, rx) = oneshot::channel();
        // A panic drops `tx` (the receiver reports it) and leaves the thread serving.
        let job: Job = Box::new(move || {
            if let Ok(r) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
                let _ = tx.send(r);
            }
        });
        let unsent = match &self.jobs {
            Some(jobs) => jobs
                .send(job)
                .err()
                .map(|std::sync::mpsc::SendError(job)| job),
            None => Some(job),
        };
        if let Some(job) = unsent {
            spawn(job)?;
        }
        rx.await.map_err(|_| Failed::Panicked)
    }
}

/// Runs `job` on a new, nicer thread.
fn spawn(job: Job) -> Result<(), Failed> {
    std::thread::Builder::new()
        .name("sluice-config".into())
        .spawn(move || {
            lower_priority();
            job();
        })
        .map(drop)
        .map_err(Failed::Spawn)
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
    async fn the_config_thread_runs_jobs_on_one_nicer_thread_and_survives_a_panic() {
        let thread = ConfigThread::start();
        let caller = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        let first = thread.run(|| std::thread::current().id()).await.ok();
        let r = thread.run(|| -> u8 { panic!("boom") }).await;
        assert!(matches!(r, Err(Failed::Panicked)));
        let (second, nice) = thread
            .run(|| {
                let me = Some(rustix::thread::gettid());
                (
                    std::thread::current().id(),
                    rustix::process::getpriority_process(me),
                )
            })
            .await
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, Some(second));
        if let (Ok(caller), Ok(nice)) = (caller, nice) {
            assert_eq!(nice, (caller + NICENESS).min(19));
        }
    }
}
