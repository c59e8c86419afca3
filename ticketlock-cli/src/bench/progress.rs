//! The progress bar on stderr.
//!
//! The hot loops already count their work in an atomic (the counter they
//! claim messages from); a ticker task reads it ten times a second, so the
//! bar costs the measured code nothing. The bar shows only once the bench has
//! run for a second, and never when stderr is not a terminal or output is
//! JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TICK: Duration = Duration::from_millis(100);
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// Progress over all timed phases of a bench.
pub(crate) struct Progress {
    shared: Option<Arc<Shared>>,
    ticker: Option<JoinHandle<()>>,
}

struct Shared {
    bar: ProgressBar,
    /// Work units of the phases already finished.
    finished: AtomicU64,
    /// The counter of the phase running now and its total.
    current: Mutex<Option<(Arc<AtomicU64>, u64)>>,
}

/// A phase in progress; ends when dropped.
pub(crate) struct Phase<'a> {
    progress: &'a Progress,
    total: u64,
}

impl Progress {
    /// A progress bar over `total` work units, drawn on stderr when
    /// `visible`.
    pub(crate) fn new(visible: bool, total: u64) -> Self {
        if !visible {
            return Progress::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:40}] {percent:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let shared = Arc::new(Shared {
            bar,
            finished: AtomicU64::new(0),
            current: Mutex::new(None),
        });
        let ticker = tokio::spawn(tick(shared.clone()));
        Progress {
            shared: Some(shared),
            ticker: Some(ticker),
        }
    }

    /// No bar at all.
    pub(crate) fn hidden() -> Self {
        Progress {
            shared: None,
            ticker: None,
        }
    }

    /// Runs `f` with the bar out of the way (for printing on the terminal).
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.shared {
            Some(s) => s.bar.suspend(f),
            None => f(),
        }
    }

    /// Starts a phase of `total` units whose progress is `counter` (which
    /// may overshoot `total`: claim counters do).
    pub(crate) fn phase(&self, message: &str, counter: Arc<AtomicU64>, total: u64) -> Phase<'_> {
        if let Some(s) = &self.shared {
            s.bar.set_message(message.to_string());
            *lock(&s.current) = Some((counter, total));
        }
        Phase {
            progress: self,
            total,
        }
    }
}

impl Drop for Phase<'_> {
    fn drop(&mut self) {
        if let Some(s) = &self.progress.shared {
            *lock(&s.current) = None;
            s.finished.fetch_add(self.total, Ordering::Relaxed);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(s) = &self.shared {
            s.bar.finish_and_clear();
        }
    }
}

async fn tick(s: Arc<Shared>) {
    let started = Instant::now();
    let mut shown = false;
    loop {
        tokio::time::sleep(TICK).await;
        let current = lock(&s.current)
            .as_ref()
            .map_or(0, |(c, total)| c.load(Ordering::Relaxed).min(*total));
        s.bar
            .set_position(s.finished.load(Ordering::Relaxed) + current);
        if !shown && started.elapsed() >= SHOW_AFTER {
            s.bar.set_draw_target(ProgressDrawTarget::stderr());
            shown = true;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
