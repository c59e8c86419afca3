//! The conformance suite on the in-memory store, and in-memory specifics
//! checked with paused time.

#[macro_use]
#[path = "conformance/suite.rs"]
mod suite;

use std::time::Duration;

use suite::Harness;
use ticketlock::{InMemoryLockStore, LockStore};

struct Memory(LockStore);

impl Harness for Memory {
    fn store(&self) -> LockStore {
        self.0.clone()
    }

    async fn peer(&self) -> LockStore {
        // One process: another handle is a clone.
        self.0.clone()
    }
}

async fn memory() -> Option<Memory> {
    Some(Memory(LockStore::in_memory()))
}

conformance_tests!(memory);

#[tokio::test(start_paused = true)]
async fn successor_enters_exactly_when_the_vanished_holder_expires() {
    let store = LockStore::in_memory();
    let g = store
        .lock("c")
        .lifetime(Duration::from_secs(10))
        .await
        .unwrap();
    std::mem::forget(g);
    let start = tokio::time::Instant::now();
    let next = store.lock("c").wait_time(suite::HOUR).await.unwrap();
    // Woken by the holder's expiry, not a poll: paused time jumps straight to it.
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(10) + Duration::from_millis(1)
    );
    next.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_waiter_looks_again_every_wait_time_at_most() {
    let store = LockStore::in_memory();
    let holder = store
        .lock("c")
        .lifetime(Duration::from_secs(600))
        .await
        .unwrap();
    let waiter = store
        .lock("c")
        .lifetime(Duration::from_secs(600))
        .wait_time(Duration::from_secs(2))
        .enqueue()
        .await
        .unwrap();
    let task = tokio::spawn(waiter.acquired());
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The waiter's keep-alive refreshed its ticket at 2 s and 4 s.
    let lock = store.get_lock("c").await.unwrap().unwrap();
    let tickets: Vec<_> = lock.tickets().copied().collect();
    assert_eq!(tickets.len(), 2);
    let refreshed = tickets[1].expires - tickets[0].expires;
    // Holder expires at t0+600; waiter at t4+600 (issued at t0, refreshed at t2, t4).
    assert!((refreshed - 4.0).abs() < 0.01, "{refreshed}");
    holder.release().await.unwrap();
    task.await.unwrap().unwrap().release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_freed_after_100_000_conversations() {
    let memory = InMemoryLockStore::new();
    let store = LockStore::from(memory.clone());
    for i in 0..100_000u32 {
        let id = format!("conversation-{i}");
        let g = store.lock(&id).await.unwrap();
        assert_eq!(memory.len(), 1);
        g.release().await.unwrap();
    }
    assert_eq!(memory.len(), 0);
    assert!(memory.is_empty());
    assert!(store.conversations().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_guards_and_futures_leave_no_entry() {
    let memory = InMemoryLockStore::new();
    let store = LockStore::from(memory.clone());
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("c{}", i % 10);
            let g = store.lock(&id).await.unwrap();
            tokio::task::yield_now().await;
            drop(g);
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        if i % 7 == 0 {
            t.abort();
        }
        let _ = t.await;
    }
    assert_eq!(
        memory.len(),
        0,
        "{:?}",
        store.conversations().await.unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn a_hostile_sender_cannot_grow_a_queue_past_the_default_bound() {
    let store = LockStore::in_memory();
    let limit = ticketlock::DEFAULT_MAX_QUEUE_LEN;
    for n in 0..limit as u64 {
        assert_eq!(store.issue_ticket("flood", None).await.unwrap(), n);
    }
    for _ in 0..3 {
        let err = store.issue_ticket("flood", None).await.unwrap_err();
        assert!(
            matches!(err, ticketlock::Error::QueueFull { limit: l, .. } if l == limit),
            "{err:?}"
        );
    }
    let record = store.get_lock("flood").await.unwrap().unwrap();
    assert_eq!(record.tickets().len(), limit);
    // The record stays bounded in bytes as well as in tickets.
    assert!(
        record.dumps().len() < 64 * limit,
        "{}",
        record.dumps().len()
    );
}

#[tokio::test]
async fn the_backend_refuses_oversized_ids_itself() {
    use ticketlock::Backend as _;
    let memory = InMemoryLockStore::new();
    let id = "x".repeat(ticketlock::MAX_ID_LEN + 1);
    let err = memory
        .issue(&id, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ticketlock::Error::InvalidId { .. }),
        "{err:?}"
    );
    assert!(memory.is_empty());
    let id = "x".repeat(ticketlock::MAX_ID_LEN);
    memory.issue(&id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(memory.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_silent_past_its_lifetime_loses_its_place() {
    // Redis drops every expired ticket; the in-memory store must agree for a
    // waiter whose owner stopped looking (a blocked runtime, say).
    let store = LockStore::in_memory();
    let holder = store
        .lock("c")
        .lifetime(Duration::from_secs(600))
        .await
        .unwrap();
    let stalled = store
        .lock("c")
        .lifetime(Duration::from_secs(1))
        .enqueue()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // nobody polls `stalled`
    let err = stalled.acquired().await.unwrap_err();
    assert!(matches!(err, ticketlock::Error::Expired { .. }), "{err}");
    assert_eq!(
        store.get_lock("c").await.unwrap().unwrap().tickets().len(),
        1
    );
    holder.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn release_after_the_lease_ran_out_reports_it_even_if_nobody_entered() {
    let store = LockStore::in_memory();
    let g = store
        .lock("c")
        .lifetime(Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let err = g.release().await.unwrap_err();
    assert!(matches!(err, ticketlock::Error::Expired { .. }), "{err}");
    assert_eq!(store.get_lock("c").await.unwrap(), None);
}
