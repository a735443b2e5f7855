//! A one-line progress bar on stderr, shown only to humans.
//!
//! Scripts and CI capture stderr too, so the bar is drawn only when stderr is
//! a terminal; otherwise the run is silent apart from the final report.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// Redraw interval; fast enough to look live, slow enough to cost nothing.
const TICK: Duration = Duration::from_millis(100);
/// Width of the bar in characters.
const BAR_WIDTH: usize = 30;

/// Handle to the redraw task; dropping it erases the bar.
pub(super) struct Progress {
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing if stderr is a terminal, otherwise does nothing.
    pub(super) fn start(
        done: Arc<AtomicU64>,
        total: u64,
        started: Instant,
        deadline: Option<Instant>,
    ) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { task: None };
        }
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            loop {
                ticker.tick().await;
                let line = render(done.load(Ordering::Relaxed), total, started, deadline);
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{line}\x1b[K");
                let _ = err.flush();
            }
        });
        Self { task: Some(task) }
    }

    /// Stops drawing and erases the bar so the report starts on a clean line.
    pub(super) fn finish(self) {
        drop(self);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// Formats one progress line; with a deadline the bar tracks whichever limit is nearer.
fn render(done: u64, total: u64, started: Instant, deadline: Option<Instant>) -> String {
    let by_count = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let by_time = deadline.map_or(0.0, |d| {
        let span = d.saturating_duration_since(started).as_secs_f64();
        if span > 0.0 {
            started.elapsed().as_secs_f64() / span
        } else {
            1.0
        }
    });
    let fraction = by_count.max(by_time).clamp(0.0, 1.0);
    let filled = (fraction * BAR_WIDTH as f64).round() as usize;
    format!(
        "[{}{}] {done}/{total} {:.1}s",
        "=".repeat(filled),
        " ".repeat(BAR_WIDTH - filled.min(BAR_WIDTH)),
        started.elapsed().as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_tracks_count() {
        let now = Instant::now();
        let line = render(50, 100, now, None);
        assert!(line.starts_with(&format!("[{}{}] 50/100 ", "=".repeat(15), " ".repeat(15))));
        assert!(render(100, 100, now, None).starts_with(&format!("[{}]", "=".repeat(30))));
        assert!(render(0, 0, now, None).contains("0/0"));
    }

    #[test]
    fn bar_tracks_nearer_deadline() {
        let started = Instant::now() - Duration::from_secs(1);
        let line = render(0, 100, started, Some(started + Duration::from_secs(1)));
        assert!(line.starts_with(&format!("[{}]", "=".repeat(30))));
    }
}
