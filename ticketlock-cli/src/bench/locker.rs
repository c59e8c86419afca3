//! What a workload drives: something that locks and releases a key.
//!
//! The workloads are written once against [`Locker`], so ticketlock and its
//! baselines run exactly the same driver code; only the lock differs.

use std::future::Future;

use anyhow::Context as _;
use ticketlock::{LockGuard, LockStore, QueuedTicket};

/// A per-key lock, as a workload sees it.
pub(crate) trait Locker: Clone + Send + Sync + 'static {
    /// Proof of holding a key.
    type Guard: Send + 'static;

    /// Waits for the lock of `id`.
    fn lock(&self, id: &str) -> impl Future<Output = anyhow::Result<Self::Guard>> + Send;

    /// Releases the lock of `id` taken with `guard`.
    fn release(
        &self,
        id: &str,
        guard: Self::Guard,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A lock whose place in the queue can be taken before waiting for it
/// (the hand-off workload needs its waiter queued before each release).
pub(crate) trait Enqueue: Locker {
    /// A place in the queue of a key, not yet served.
    type Queued: Send + 'static;

    /// Takes a place in the queue of `id`; fails if it was served at once
    /// (the workload always has a holder at that point).
    fn enqueue(&self, id: &str) -> impl Future<Output = anyhow::Result<Self::Queued>> + Send;

    /// Waits until `queued` is served. After its first poll returns
    /// `Pending`, the waiter is parked and a release must wake it.
    fn acquired(
        &self,
        queued: Self::Queued,
    ) -> impl Future<Output = anyhow::Result<Self::Guard>> + Send;
}

impl Locker for LockStore {
    type Guard = LockGuard;

    async fn lock(&self, id: &str) -> anyhow::Result<LockGuard> {
        LockStore::lock(self, id)
            .await
            .with_context(|| format!("ticketlock: locking {id}"))
    }

    async fn release(&self, id: &str, guard: LockGuard) -> anyhow::Result<()> {
        guard
            .release()
            .await
            .with_context(|| format!("ticketlock: releasing {id}"))
    }
}

impl Enqueue for LockStore {
    type Queued = QueuedTicket;

    async fn enqueue(&self, id: &str) -> anyhow::Result<QueuedTicket> {
        let queued = LockStore::lock(self, id)
            .enqueue()
            .await
            .with_context(|| format!("ticketlock: enqueueing on {id}"))?;
        anyhow::ensure!(
            !queued.is_served(),
            "ticketlock: the waiter on {id} was served at once although the holder had not released; the store is not exclusive"
        );
        Ok(queued)
    }

    async fn acquired(&self, queued: QueuedTicket) -> anyhow::Result<LockGuard> {
        let id = queued.conversation_id().to_string();
        queued
            .acquired()
            .await
            .with_context(|| format!("ticketlock: waiting for {id}"))
    }
}

/// Checks that every lock of the bench has to pass, run on each.
#[cfg(test)]
pub(crate) mod checks {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::task::JoinSet;

    use super::super::cycles::{Cycles, run};
    use super::super::progress::Progress;
    use super::Locker;

    /// 8 tasks add 25 each to a counter under the lock of `id`, by reading
    /// it, yielding and sleeping, then writing it back: without exclusion,
    /// holders meet (a panic here) and increments are lost (the sum falls
    /// short of 200).
    pub(crate) async fn is_exclusive(lock: &impl Locker, id: &'static str) {
        let counter = Arc::new(AtomicU64::new(0));
        let inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..8 {
            let (lock, counter, inside) = (lock.clone(), counter.clone(), inside.clone());
            tasks.spawn(async move {
                for _ in 0..25 {
                    let held = lock.lock(id).await.unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    let seen = counter.load(Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    counter.store(seen + 1, Ordering::SeqCst);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    lock.release(id, held).await.unwrap();
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }
        assert_eq!(counter.load(Ordering::SeqCst), 200);
    }

    /// The `contended` workload on `lock`: 120 cycles by 6 tasks on one
    /// key, each hand-off timed.
    pub(crate) async fn runs_contended(lock: &impl Locker) {
        let plan = Cycles {
            messages: 120,
            concurrency: 6,
            conversations: Some(1),
            record_waits: true,
            record_handoffs: true,
            work: Duration::ZERO,
        };
        let side = run(lock, plan, 3, "checked", &Progress::hidden())
            .await
            .unwrap();
        assert_eq!(side.cycles, 120);
        let h = side.handoff.unwrap();
        assert!(h.p50 <= h.p99 && h.p99 <= h.max);
    }
}
