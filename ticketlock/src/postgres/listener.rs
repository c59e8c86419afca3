//! The wake-up connection: one per store, `LISTEN ticketlock`, owned by a
//! background task that hands each notification to the waiters it names.
//!
//! A notification's payload is `<epoch> <head>`: the conversation row's
//! epoch and the number of the ticket now first in its queue, or `*` when
//! everyone must look again (save, delete). A waiter registers its epoch
//! and number, so a release wakes the next waiter only, not the whole
//! queue. When the connection is lost, the task connects again (backing off
//! up to a second) and, once listening, wakes every waiter: a notification
//! sent meanwhile was missed, and each waiter re-checks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{Notify, oneshot, watch};
use tokio_postgres::AsyncMessage;

use super::connection::Connector;

/// Listens on the channel every operation notifies on.
const LISTEN: &str = "LISTEN ticketlock";

struct Entry {
    id: u64,
    number: u64,
    notify: Arc<Notify>,
}

#[derive(Default)]
struct Waiters {
    by_epoch: HashMap<u64, Vec<Entry>>,
}

struct Shared {
    waiters: Mutex<Waiters>,
    next_id: AtomicU64,
    listening: watch::Sender<bool>,
    /// The last probe received (`probe N`), see [`Listener::wait_probe`].
    probes: watch::Sender<u64>,
}

impl Shared {
    fn dispatch(&self, payload: &str) {
        if let Some(n) = payload.strip_prefix("probe ") {
            if let Ok(n) = n.parse() {
                self.probes.send_replace(n);
            }
            return;
        }
        let Some((epoch, head)) = payload.split_once(' ') else {
            return;
        };
        let Ok(epoch) = epoch.parse::<u64>() else {
            return;
        };
        let head = head.parse::<u64>().ok();
        let waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = waiters.by_epoch.get(&epoch) {
            for e in list {
                if head.is_none_or(|h| h == e.number) {
                    e.notify.notify_one();
                }
            }
        }
    }

    fn wake_all(&self) {
        let waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for e in waiters.by_epoch.values().flatten() {
            e.notify.notify_one();
        }
    }
}

/// The registration of one waiter; dropping it unregisters.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    epoch: u64,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut waiters = self
            .shared
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(list) = waiters.by_epoch.get_mut(&self.epoch) {
            list.retain(|e| e.id != self.id);
            if list.is_empty() {
                waiters.by_epoch.remove(&self.epoch);
            }
        }
    }
}

/// The handle of the wake-up task.
pub(crate) struct Listener {
    shared: Arc<Shared>,
}

impl Listener {
    /// Starts the task; it stops when `stop`'s sender is dropped.
    pub fn start(connector: Connector, stop: oneshot::Receiver<()>) -> Listener {
        let (listening, _) = watch::channel(false);
        let (probes, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            waiters: Mutex::new(Waiters::default()),
            next_id: AtomicU64::new(0),
            listening,
            probes,
        });
        tokio::spawn(run(shared.clone(), connector, stop));
        Listener { shared }
    }

    /// Registers a waiter of ticket `number` of incarnation `epoch`.
    pub fn register(&self, epoch: u64, number: u64, notify: Arc<Notify>) -> Registration {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut waiters = self
            .shared
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        waiters
            .by_epoch
            .entry(epoch)
            .or_default()
            .push(Entry { id, number, notify });
        Registration {
            shared: self.shared.clone(),
            epoch,
            id,
        }
    }

    /// Whether the connection is listening now.
    pub fn is_listening(&self) -> bool {
        *self.shared.listening.borrow()
    }

    /// Waits until the connection listens, at most `timeout`.
    pub async fn wait_listening(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.listening.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|l| *l))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until the notification `probe <n>` arrived, at most `timeout`.
    pub async fn wait_probe(&self, n: u64, timeout: Duration) -> bool {
        let mut rx = self.shared.probes.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|v| *v == n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// How many waiters are registered (for tests and inspection).
    pub fn waiters(&self) -> usize {
        let waiters = self
            .shared
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        waiters.by_epoch.values().map(Vec::len).sum()
    }
}

async fn run(shared: Arc<Shared>, connector: Connector, mut stop: oneshot::Receiver<()>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let session = session(&shared, &connector);
        tokio::select! {
            _ = &mut stop => return,
            ended = session => {
                shared.listening.send_replace(false);
                match ended {
                    Ok(()) => tracing::debug!(store = connector.describe, "postgres: wake-up connection closed"),
                    Err(e) => tracing::debug!(store = connector.describe, error = %e, "postgres: wake-up connection lost"),
                }
            }
        }
        // Waiters re-check at their holder's expiry meanwhile.
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// One connection's life: LISTEN, then hand out notifications until it ends.
async fn session(shared: &Shared, connector: &Connector) -> crate::Result<()> {
    let (client, mut connection) = connector.connect().await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let listen = client.batch_execute(LISTEN);
    tokio::pin!(listen);
    let mut listened = false;
    loop {
        tokio::select! {
            r = &mut listen, if !listened => {
                r.map_err(|e| connector.error(e))?;
                listened = true;
                shared.listening.send_replace(true);
                // Anything sent while we were not listening was missed.
                shared.wake_all();
            }
            m = messages.next() => match m {
                Some(Ok(AsyncMessage::Notification(n))) => shared.dispatch(n.payload()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(connector.error(e)),
                None => return Ok(()),
            }
        }
    }
}
