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
