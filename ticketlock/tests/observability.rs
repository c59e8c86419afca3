//! Tracing: events for issue, wait, acquire, renew, release and expiry,
//! carrying the conversation and the ticket, and no line per look at the
//! queue, on both stores.

#[cfg(feature = "redis")]
#[path = "redis_store/server.rs"]
mod server;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ticketlock::LockStore;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Runs a contended scenario under a debug-level subscriber (set for this
/// thread: the tests run on a current-thread runtime) and returns what
/// was logged.
async fn scenario(store: LockStore) -> String {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let holder = store.lock("observed").await.unwrap();
    let waiter = store
        .lock("observed")
        .wait_time(Duration::from_millis(10))
        .enqueue()
        .await
        .unwrap();
    let ticket = waiter.ticket();
    let waiting = tokio::spawn(waiter.acquired());
    // About 40 looks at the queue while the holder holds.
    tokio::time::sleep(Duration::from_millis(400)).await;
    holder.renew().await.unwrap();
    holder.release().await.unwrap();
    let g = waiting.await.unwrap().unwrap();
    assert_eq!(g.ticket(), ticket);
    g.release().await.unwrap();
    let lost = store
        .lock("observed")
        .lifetime(Duration::from_millis(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(lost.renew().await.is_err());
    String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
}

fn check(log: &str) {
    for event in [
        "ticket issued",
        "waiting",
        "lock acquired",
        "lease renewed",
        "lock released",
        "lease expired before renewal",
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(event))
            .unwrap_or_else(|| panic!("no {event:?} event in:\n{log}"));
        assert!(
            line.contains("observed"),
            "{event:?} without the conversation: {line}"
        );
        assert!(
            line.contains("ticket"),
            "{event:?} without the ticket: {line}"
        );
    }
    let lines = log.lines().count();
    assert!(
        lines < 30,
        "{lines} lines: a line per look at the queue?\n{log}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn memory_store_events_carry_conversation_and_ticket() {
    check(&scenario(LockStore::in_memory()).await);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "current_thread")]
async fn redis_store_events_carry_conversation_and_ticket() {
    let Some((_server, store)) = server::redis_lock_store().await else {
        return;
    };
    check(&scenario(store).await);
}
