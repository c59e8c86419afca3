//! Counts a store's background round trips (releases from destructors,
//! issues whose caller left), so that a process about to exit can wait for
//! them ([`crate::Backend::flush`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Default, Clone)]
pub(crate) struct InFlight(Arc<State>);

#[derive(Default)]
struct State {
    count: AtomicUsize,
    idle: Notify,
}

/// One background round trip; finished when dropped.
pub(crate) struct InFlightTask(Arc<State>);

impl InFlight {
    pub(crate) fn start(&self) -> InFlightTask {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        InFlightTask(self.0.clone())
    }

    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so a last task finishing
            // in between is not missed.
            notified.as_mut().enable();
            if self.0.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightTask {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
