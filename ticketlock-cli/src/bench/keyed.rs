//! The in-memory baseline: a map of `tokio::sync::Mutex`es by key, the
//! obvious thing a Rust user writes for per-key locks in one process.
//!
//! Entries are removed when the last user releases, as the in-memory store
//! removes a conversation with its last ticket, so that both hold the same
//! number of entries and their memory compares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OwnedMutexGuard;

use super::locker::{Enqueue, Locker};

type Map = HashMap<String, Arc<tokio::sync::Mutex<()>>>;

/// Per-key `tokio::sync::Mutex`es in a `std::sync::Mutex<HashMap>`.
#[derive(Clone, Default)]
pub(crate) struct KeyedMutex {
    map: Arc<Mutex<Map>>,
}

impl KeyedMutex {
    fn map(&self) -> MutexGuard<'_, Map> {
        // The critical sections cannot panic half-way.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The mutex of `key`, created if absent.
    fn entry(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.map();
        match map.get(key) {
            Some(m) => m.clone(),
            None => map.entry(key.to_owned()).or_default().clone(),
        }
    }

    /// How many keys have an entry.
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}

impl Locker for KeyedMutex {
    type Guard = OwnedMutexGuard<()>;

    async fn lock(&self, id: &str) -> anyhow::Result<OwnedMutexGuard<()>> {
        Ok(self.entry(id).lock_owned().await)
    }

    async fn release(&self, id: &str, guard: OwnedMutexGuard<()>) -> anyhow::Result<()> {
        // Under the map lock, so that no one can fetch this mutex between
        // the check and the removal: only the map and this guard refer to
        // it when it is unused.
        let mut map = self.map();
        let unused = Arc::strong_count(OwnedMutexGuard::mutex(&guard)) == 2;
        drop(guard);
        if unused {
            map.remove(id);
        }
        Ok(())
    }
}

impl Enqueue for KeyedMutex {
    type Queued = Arc<tokio::sync::Mutex<()>>;

    async fn enqueue(&self, id: &str) -> anyhow::Result<Self::Queued> {
        let mutex = self.entry(id);
        anyhow::ensure!(
            mutex.try_lock().is_err(),
            "keyed mutex: {id} was free although the holder had not released"
        );
        Ok(mutex)
    }

    async fn acquired(&self, queued: Self::Queued) -> anyhow::Result<OwnedMutexGuard<()>> {
        Ok(queued.lock_owned().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn excludes_per_key_and_forgets_unused_keys() {
        let keyed = KeyedMutex::default();
        let a = keyed.lock("a").await.unwrap();
        let b = keyed.lock("b").await.unwrap();
        assert_eq!(keyed.len(), 2);
        let queued = keyed.enqueue("a").await.unwrap();
        let mut waiter = tokio_test_poll(keyed.acquired(queued));
        assert!(
            waiter.poll_pending().await,
            "a second holder of `a` entered"
        );
        keyed.release("a", a).await.unwrap();
        // The waiter still refers to `a`: the entry stays.
        assert_eq!(keyed.len(), 2);
        let a2 = waiter.finish().await.unwrap();
        keyed.release("a", a2).await.unwrap();
        keyed.release("b", b).await.unwrap();
        assert_eq!(keyed.len(), 0);
    }

    #[tokio::test]
    async fn enqueue_refuses_a_free_key() {
        let keyed = KeyedMutex::default();
        let err = keyed.enqueue("free").await.err().unwrap();
        assert!(err.to_string().contains("was free"), "{err}");
    }

    /// A boxed future polled by hand.
    struct Polled<F: std::future::Future>(std::pin::Pin<Box<F>>);

    fn tokio_test_poll<F: std::future::Future>(f: F) -> Polled<F> {
        Polled(Box::pin(f))
    }

    impl<F: std::future::Future> Polled<F> {
        async fn poll_pending(&mut self) -> bool {
            std::future::poll_fn(|cx| std::task::Poll::Ready(self.0.as_mut().poll(cx).is_pending()))
                .await
        }

        async fn finish(self) -> F::Output {
            self.0.await
        }
    }
}
